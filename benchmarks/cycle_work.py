"""The robot's message cycle, the store's way and the old way, sync and async; its sessions.

One message, the store's way: `load(window=20)`, then `update_state` merging the changed
`record.LOOP_COUNT` into `record` (a split key: only that sub-key is encoded and written) with
the user's and the bot's turns appended in the same write (`append=`), checked against the
loaded `_rev` (loaded again and retried once on StaleRevision). The old way: GET the
blob, `json.loads`, change the record and append both turns, `json.dumps`, SET. Sessions come
from the demo generator, one template per size copied under as many ids as a run needs: their
content never changes what a message costs.
"""

import json
import time
from dataclasses import dataclass

from convstore.codec import bot_config_digest
from sessions_app.demo import make_session, make_turn
from sessions_app.seeding import save_many
from sessions_app.store import (
    AsyncConversationStore,
    ConversationStore,
    StaleRevision,
    get_async_store,
    get_store,
)

WINDOW = 20
PREFIX = "bench-cycle-"
SEED_BATCH = 8
"""Sessions per seeding round trip: a few megabytes each."""


@dataclass(frozen=True)
class Size:
    label: str
    slug: str
    steps: int
    turns: int

    def cid(self, i):
        return f"{PREFIX}{self.slug}-{i:04d}"

    def legacy_cid(self, i):
        return f"{PREFIX}old-{self.slug}-{i:04d}"

    @property
    def step(self):
        """The loop count a message changes: the last step reached."""
        return f"step_{self.steps - 1:04d}"

    def user_turn(self):
        return make_turn(0, self.turns, step=self.steps - 1)

    def bot_turn(self):
        return make_turn(0, self.turns + 1, step=self.steps - 1)


def _nothing():
    pass


def _bump(record, step):
    record["LOOP_COUNT"][step]["count"] += 1


def _loop_counts(session):
    """update_state's ``merge`` of a message: the one sub-key of `record` it changed."""
    return {"record": {"LOOP_COUNT": session["record"]["LOOP_COUNT"]}}


async def store_message(store, cid, size, turns, mark=_nothing):
    """One message on the async store: the load, then `record` and both turns in one write;
    ``mark`` is called after each of the two calls."""
    session = await store.load(cid, window=WINDOW)
    mark()
    for retry in (False, True):
        _bump(session["record"], size.step)
        try:
            await store.update_state(
                cid, {}, session["_rev"], append=turns, merge=_loop_counts(session)
            )
            break
        except StaleRevision:
            if retry:
                raise
            session = await store.load(cid, window=0)
    mark()


async def four_calls_message(store, cid, size, turns, mark=_nothing):
    """The same message as four calls, each turn appended on its own (the cycle before
    `append=`); ``mark`` after each call."""
    session = await store.load(cid, window=WINDOW)
    mark()
    await store.append_turns(cid, [turns[0]])
    mark()
    _bump(session["record"], size.step)
    await store.update_state(cid, {}, session["_rev"], merge=_loop_counts(session))
    mark()
    await store.append_turns(cid, [turns[1]])
    mark()


def sync_store_message(store, cid, size, turns, mark=_nothing):
    """`store_message` on the sync store."""
    session = store.load(cid, window=WINDOW)
    mark()
    for retry in (False, True):
        _bump(session["record"], size.step)
        try:
            store.update_state(cid, {}, session["_rev"], append=turns, merge=_loop_counts(session))
            break
        except StaleRevision:
            if retry:
                raise
            session = store.load(cid, window=0)
    mark()


async def old_message(client, key, size, turns, mark=_nothing):
    """One message the old way on redis.asyncio; ``mark`` after the GET, the work and the SET."""
    raw = await client.get(key)
    mark()
    session = json.loads(raw)
    session["history"].append(turns[0])
    _bump(session["record"], size.step)
    session["history"].append(turns[1])
    raw = json.dumps(session)
    del session
    mark()
    await client.set(key, raw)
    mark()


def sync_old_message(client, key, size, turns):
    """`old_message` on redis-py."""
    session = json.loads(client.get(key))
    session["history"].append(turns[0])
    _bump(session["record"], size.step)
    session["history"].append(turns[1])
    client.set(key, json.dumps(session))


def sync_store(connections):
    """The project's sync store (`get_store`) on a client of its own, ``connections`` strong.

    redis-py's pool refuses a connection beyond its size rather than wait for one.
    """
    base, options = get_store(), get_async_store()._client_options
    return ConversationStore.from_url(
        get_async_store()._url,
        base.codec,
        client_options={**options, "max_connections": connections},
        keys=base.keys,
        ttl=base.ttl,
        legacy_reads=base.core.legacy_reads,
        archive=base.archive,
        split_keys=tuple(base.core.split_keys),
    )


def async_store(connections):
    """The project's async store (`get_async_store`) on a pool of ``connections`` at least.

    With its pool of 50, 128 conversations in one loop had messages fail after waiting the
    pool's 5 s for a connection (reported as Redis unreachable): a connection per conversation
    measures throughput, as the old way's client has.
    """
    base = get_async_store()
    options = base._client_options
    size = max(connections, options.get("max_connections") or 0)
    return AsyncConversationStore(
        base._url,
        base.codec,
        client_options={**options, "max_connections": size},
        keys=base.keys,
        ttl=base.ttl,
        legacy_reads=base.core.legacy_reads,
        archive=base.archive,
        split_keys=tuple(base.core.split_keys),
    )


class Sessions:
    """Copies of one demo session per size, in the store's layout and as legacy blobs."""

    def __init__(self, store):
        self.store = store
        self.blobs, self.written, self.digests = {}, [], set()

    def seed(self, size, count):
        """``count`` copies of ``size``'s demo session, both ways; seconds it took."""
        started = time.perf_counter()
        template = make_session(0, steps=size.steps, turns=size.turns, prefix=PREFIX)
        self.digests.add(bot_config_digest(template["bot_config"]))
        cids = [size.cid(i) for i in range(count)]
        legacy = [self.store.keys.legacy(size.legacy_cid(i)) for i in range(count)]
        self.written.append((cids, legacy))
        copies = ({**template, "conversation_id": cid} for cid in cids)
        save_many(self.store, copies, batch=SEED_BATCH)
        self.blobs[size] = json.dumps(template).encode()
        self.reset(size, count)
        return time.perf_counter() - started

    def reset(self, size, count):
        """Put the first ``count`` legacy blobs of ``size`` back to the demo session's size: the
        old way's blob grows by two turns a message."""
        keys = [self.store.keys.legacy(size.legacy_cid(i)) for i in range(count)]
        for start in range(0, count, SEED_BATCH):
            pipe = self.store.client.pipeline(transaction=False)
            for key in keys[start : start + SEED_BATCH]:
                pipe.set(key, self.blobs[size])
            pipe.execute()

    def used_memory(self):
        """Bytes Redis holds for every key seeded: ``MEMORY USAGE`` of a sample, scaled."""
        total = 0
        for cids, legacy in self.written:
            sample = [self.store.keys.state(cids[0]), self.store.keys.turns(cids[0]), legacy[0]]
            total += len(cids) * sum(self.store.client.memory_usage(k, samples=0) for k in sample)
        return total

    def clean(self):
        """Delete every key seeded, and the shared bot_configs."""
        for cids, legacy in self.written:
            for cid in cids:
                self.store.delete(cid)
            for start in range(0, len(legacy), 500):
                self.store.client.delete(*legacy[start : start + 500])
        for digest in self.digests:
            self.store.client.delete(self.store.keys.bot_config(digest))
        self.written.clear()
