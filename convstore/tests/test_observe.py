"""The hook that metrics and a slow-call log hang on: each finished call, its phases and its
error kind, handed to every observer; an observer's failure is never the call's."""

import pytest

from convstore import SessionNotFound
from convstore.observe import add_observer, remove_observer


def test_each_call_is_handed_over_with_its_phases(store, records):
    store.save({"conversation_id": "c1", "history": [{"role": "user"}]})
    store.load("c1", window=5)
    store.append_turns("c1", [{"role": "bot"}])
    store.update_state("c1", {"x": 1}, 1)

    calls = [(r.call, r.conversation_id, r.error) for r in records]
    assert calls == [
        ("robot-v2.save-conversation", "c1", None),
        ("robot-v2.load-conversation", "c1", None),
        ("robot-v2.append-turns", "c1", None),
        ("robot-v2.update-state", "c1", None),
    ]
    load = records[1]
    assert [name for name, _ in load.phases] == ["redis", "decode", "assemble"]
    assert all(seconds >= 0 for _, seconds in load.phases)
    assert 0 < sum(seconds for _, seconds in load.phases) <= load.seconds


def test_a_failed_call_carries_its_error_kind(store, records):
    with pytest.raises(SessionNotFound, match="does not exist"):
        store.append_turns("nobody", [{"role": "user"}])

    assert [(r.call, r.error) for r in records] == [("robot-v2.append-turns", "SessionNotFound")]


def test_an_observer_that_fails_never_fails_the_call(store, records):
    def broken(record):
        raise RuntimeError("metrics backend down")

    add_observer(broken)
    try:
        assert store.save({"conversation_id": "c1", "history": []}) == 1
    finally:
        remove_observer(broken)
    assert len(records) == 1


def test_nothing_is_handed_over_once_removed(store):
    seen = []
    add_observer(seen.append)
    remove_observer(seen.append)

    store.save({"conversation_id": "c1", "history": []})

    assert seen == []
