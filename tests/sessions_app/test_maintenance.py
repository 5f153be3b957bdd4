"""The operations' store primitives against the real Redis: a re-encode swaps a value only
if it is still the one it read, so a write made meanwhile is never overwritten."""

import orjson
import pytest

from convstore import keys
from convstore.codec import LZ4_MAGIC
from convstore.protocol import Script
from sessions_app import maintenance, trimming
from sessions_app.services import trim_history
from tests.sessions_app.factories import make_turn, save_session, stored_bytes

NOTES = "a compressible note " * 2000


def store_uncompressed(store, cid, name, value):
    """A state key written as a store without the compressor would have: plain JSON."""
    raw = orjson.dumps(value)
    state_key = store.keys.state(cid)
    store.client.hset(state_key, keys.state_field(name), raw)
    store.client.hincrby(state_key, keys.BYTES, len(raw))
    store.client.zincrby(store.keys.index_bytes, len(raw), cid)


def push_uncompressed(store, cid, turns):
    """Turns appended as a store without the compressor would have: plain JSON items."""
    state_key = store.keys.state(cid)
    first = int(store.client.hget(state_key, keys.SEQ))
    items = [f"{first + i}|".encode() + orjson.dumps(turn) for i, turn in enumerate(turns)]
    store.client.rpush(store.keys.turns(cid), *items)
    store.client.hset(state_key, keys.SEQ, first + len(items))
    store.client.hincrby(state_key, keys.BYTES, sum(map(len, items)))
    store.client.zincrby(store.keys.index_bytes, sum(map(len, items)), cid)


def meanwhile(monkeypatch, store, write):
    """Run ``write`` once, after the re-encode has read what it swaps and before its script
    swaps it: another process writing in between."""
    real_send, pending = store.send, [write]

    def send(batch):
        if pending and any(isinstance(request, Script) for request in batch):
            pending.pop()()
        return real_send(batch)

    monkeypatch.setattr(store, "send", send)
    return pending


def assert_bytes_exact(store, cid):
    measured = stored_bytes(store.client, store, cid)
    assert int(store.client.hget(store.keys.state(cid), keys.BYTES)) == measured
    assert store.client.zscore(store.keys.index_bytes, cid) == measured


def test_a_state_re_encode_never_overwrites_a_write_made_meanwhile(store, monkeypatch):
    save_session(store, "c1", turns=3)
    store_uncompressed(store, "c1", "notes", NOTES)
    store_uncompressed(store, "c1", "tips", NOTES.upper())
    rev = store.load("c1")["_rev"]
    pending = meanwhile(
        monkeypatch,
        store,
        lambda: store.update_state("c1", {"notes": "the robot's own"}, expected_rev=rev),
    )

    saved = trimming.reencode_state(store, "c1")

    assert pending == [], "the robot's write ran between the read and the swap"
    loaded = store.load("c1")
    assert loaded["notes"] == "the robot's own"
    assert loaded["tips"] == NOTES.upper()
    tips = store.client.hget(store.keys.state("c1"), keys.state_field("tips"))
    assert tips.startswith(LZ4_MAGIC), "what nobody wrote meanwhile is still re-encoded"
    assert saved > 0
    assert_bytes_exact(store, "c1")


@pytest.mark.django_db
def test_a_turn_re_encode_never_brings_back_a_turn_trimmed_meanwhile(store, monkeypatch):
    history = save_session(store, "c1", turns=3)
    long_turns = [{**make_turn(seq), "content": f"turn {seq}" + " long" * 1500} for seq in (3, 4)]
    push_uncompressed(store, "c1", long_turns)
    pending = meanwhile(monkeypatch, store, lambda: trim_history("c1", keep=1))

    saved = trimming.reencode_turns(store, "c1")

    assert pending == []
    items = store.client.lrange(store.keys.turns("c1"), 0, -1)
    assert len(items) == 1
    assert items[0].startswith(b"4|" + LZ4_MAGIC)
    assert saved > 0
    full = store.load("c1", window=None)["history"]
    assert [turn["seq"] for turn in full] == list(range(5))
    assert [{k: v for k, v in t.items() if k != "seq"} for t in full] == history + long_turns
    assert_bytes_exact(store, "c1")


def test_a_re_encode_swaps_a_sub_key_of_a_split_record_and_leaves_its_marker(store):
    save_session(store, "c1", turns=3)
    state_key, field = store.keys.state("c1"), keys.split_field("record", "notes")
    raw = orjson.dumps(NOTES)
    store.client.hset(state_key, field, raw)
    store.client.hincrby(state_key, keys.BYTES, len(raw))
    store.client.zincrby(store.keys.index_bytes, len(raw), "c1")

    assert trimming.reencode_state(store, "c1") > 0

    assert store.client.hget(state_key, field).startswith(LZ4_MAGIC)
    assert store.client.hget(state_key, keys.state_field("record")) == keys.SPLIT_MARKER
    assert store.load("c1")["record"]["notes"] == NOTES
    assert_bytes_exact(store, "c1")


def test_a_snapshot_restored_keeps_record_split_with_its_bytes(store):
    save_session(store, "c1", turns=5)
    before = store.load("c1", window=None)
    snap = maintenance.snapshot(store, "c1")
    assert snap.session["record"] == before["record"]
    store.delete("c1")

    maintenance.restore(
        store,
        snap.session,
        incarnation=snap.incarnation,
        rev=snap.rev,
        next_seq=snap.next_seq,
        turns=snap.session["history"],
    )

    state = store.client.hgetall(store.keys.state("c1"))
    assert state[keys.state_field("record").encode()] == keys.SPLIT_MARKER
    assert int(state[keys.LAYOUT.encode()]) == keys.LAYOUT_VERSION
    assert store.load("c1", window=None) == before
    assert_bytes_exact(store, "c1")
