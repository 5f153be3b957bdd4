"""The floor of each hot-path call of the store, and how many round trips each call takes.

A call's floor is what no store code can avoid: one round trip (a redis-py PING) plus decoding
what it returns (a load: orjson.loads of each state field as it is stored, but uncompressed,
and of the window's turn payloads) or encoding what it writes (`codec.encode` of the turn, or
of the changed state key's value). The benchmarks time each call and its floor in alternation.

Round trips are counted at redis-py's socket layer: every request written to a connection
(one command, or a whole pipeline) goes through `send_packed_command` once, and its replies
are read before the next one. Redis's own counters (INFO `total_commands_processed`,
`commandstats`) are server-wide, so other clients of the same server would move them.
"""

import copy
import itertools
from contextlib import contextmanager

import orjson
import redis.asyncio.connection
import redis.connection

from convstore import keys as fields
from convstore import scripts
from convstore.codec import split_turn_item
from convstore.state_fields import is_state_field
from sessions_app.store import ConversationStore

CALLS_COUNTED = 200


def raw_state(store, cid):
    """Each state field of ``cid`` as stored, decompressed: what orjson must read at least
    (a split key's sub-key fields, not its empty marker)."""
    state = store.client.hgetall(store.keys.state(cid))
    decompress = store.codec.compressor.decompress
    return {
        name: decompress(raw)
        for name, raw in state.items()
        if is_state_field(name) and raw != fields.SPLIT_MARKER
    }


def window_payloads(store, cid, window):
    items = store.client.lrange(store.keys.turns(cid), -window, -1)
    return [split_turn_item(item)[1] for item in items]


def load_floor(store, cid, window):
    """A PING, then orjson.loads of the raw state fields and of the window's turns."""
    ping, loads = store.client.ping, orjson.loads
    parts = [*raw_state(store, cid).values(), *window_payloads(store, cid, window)]

    def floor():
        ping()
        for part in parts:
            loads(part)

    return floor


class Updates:
    """update_state calls on one session, each changing one key, and their floors (a PING +
    encoding the new value). The rev each call returns is the next call's expected rev."""

    def __init__(self, store, cid):
        self.store, self.cid = store, cid
        self.rev = store.load(cid, window=0)["_rev"]

    def of(self, name, values):
        """(call, floor) that set ``name`` to each of ``values`` in turn."""
        turn = [0]

        def call():
            turn[0] = (turn[0] + 1) % len(values)
            self.rev = self.store.update_state(self.cid, {name: values[turn[0]]}, self.rev)

        def floor():
            self.store.client.ping()
            self.store.codec.encode(values[turn[0]])

        return call, floor

    def records(self):
        """The record, and a copy with one loop count changed, as a turn changes it."""
        record = self.store.load(self.cid, window=0)["record"]
        changed = copy.deepcopy(record)
        next(iter(changed["LOOP_COUNT"].values()))["count"] += 1
        return [record, changed]


# Of two sizes: the bytes index moves with each change.
STATUSES = ["active", "waiting"]


def write_calls(store, cid, turn, fast):
    """The timed write calls of one session and their floors, for `measure_rounds`."""
    client, encode = store.client, store.codec.encode
    updates = Updates(store, cid)
    record, record_floor = updates.of("record", updates.records())
    status, status_floor = updates.of("status", STATUSES)

    def append_floor():
        client.ping()
        encode(turn)

    return {
        "append": (lambda: store.append_turns(cid, [turn]), fast),
        "append_floor": (append_floor, fast),
        "append_script": (append_script(store, cid, turn), fast),
        "update_record": (record, fast),
        "update_record_floor": (record_floor, fast),
        "update_status": (status, fast),
        "update_status_floor": (status_floor, fast),
    }


def append_script(store, cid, turn):
    """The store's append script alone, run by redis-py (no index update, no store code):
    what an append costs in Redis beyond a PING."""
    client = store.client
    sha = client.script_load(scripts.source("append"))
    keys = (store.keys.state(cid), store.keys.turns(cid))
    args = (*keys, store.ttl, store.codec.encode(turn))
    if client.evalsha(sha, len(keys), *args)[0] != 0:
        raise RuntimeError("the append script's reply is not what floors.py expects")
    return lambda: client.evalsha(sha, len(keys), *args)


@contextmanager
def counting():
    """Counts of requests written (round trips) and of commands, by every redis-py client."""
    counts = {"round_trips": 0, "commands": 0}
    patched = []

    def patch(cls, name, wrapper):
        original = cls.__dict__[name]
        patched.append((cls, name, original))
        setattr(cls, name, wrapper(original))

    def sent(original):
        def send_packed_command(self, *args, **kwargs):
            counts["round_trips"] += 1
            return original(self, *args, **kwargs)

        return send_packed_command

    def packed_many(original):
        def pack_commands(self, commands):
            commands = list(commands)
            counts["commands"] += len(commands)
            return original(self, commands)

        return pack_commands

    def sent_one(original):
        def send_command(self, *args, **kwargs):
            counts["commands"] += 1
            return original(self, *args, **kwargs)

        return send_command

    for module in (redis.connection, redis.asyncio.connection):
        cls = module.AbstractConnection
        patch(cls, "send_packed_command", sent)
        patch(cls, "pack_commands", packed_many)
        patch(cls, "send_command", sent_one)
    try:
        yield counts
    finally:
        for cls, name, original in reversed(patched):
            setattr(cls, name, original)


def round_trips(store, cid, turn):
    """Round trips and commands per call of each hot-path operation, over many calls each.

    The last row is an update_state by a process that has not loaded the session (a new store
    each call), with a value of another size: it cannot predict how the bytes index moves.
    """
    updates = Updates(store, cid)
    record, _ = updates.of("record", updates.records())
    status, _ = updates.of("status", STATUSES)
    statuses = itertools.cycle(STATUSES)

    def cold_status():
        cold = ConversationStore(store.client, store.codec, keys=store.keys)
        updates.rev = cold.update_state(cid, {"status": next(statuses)}, updates.rev)

    operations = (
        ("`load(window=20)`", lambda: store.load(cid, window=20)),
        ("`append_turns`, one turn", lambda: store.append_turns(cid, [turn])),
        ("`update_state`, `record`", record),
        ("`update_state`, `status`", status),
        ("`update_state`, `status`, by a process that has not loaded it", cold_status),
    )
    rows = []
    for title, fn in operations:
        fn()
        with counting() as counts:
            for _ in range(CALLS_COUNTED):
                fn()
        trips, commands = counts["round_trips"], counts["commands"]
        rows.append((title, trips / CALLS_COUNTED, commands / CALLS_COUNTED))
    return rows
