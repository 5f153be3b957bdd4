"""`manage.py seed_sessions` and the seed_sessions service, against the tests' real Redis."""

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from sessions_app.demo import make_session
from sessions_app.services import CompactionPolicy


def seed(**options):
    out = StringIO()
    call_command("seed_sessions", stdout=out, **options)
    return out.getvalue()


def without_store_fields(session):
    """A loaded session as it was generated: no seq on turns, no _rev/_turns."""
    history = [{k: v for k, v in t.items() if k != "seq"} for t in session["history"]]
    plain = {k: v for k, v in session.items() if k not in ("_rev", "_turns")}
    return {**plain, "history": history}


class TestSplitLayout:
    def test_sessions_are_written_through_the_store(self, store, redis_client):
        out = seed(count=3, steps=5, turns=12)
        assert out.strip() == (
            "Seeded 3 sessions (demo-000000 .. demo-000002) of 5 steps and 12 turns "
            "in the split layout."
        )
        assert redis_client.zcard(store.keys.index_bytes) == 3
        for index in range(3):
            loaded = store.load(f"demo-{index:06d}", window=None)
            assert loaded["_turns"] == 12
            assert without_store_fields(loaded) == make_session(index, steps=5, turns=12)
        assert not list(redis_client.scan_iter(match=store.keys.legacy_pattern))

    def test_prefix_and_start_number_the_sessions(self, store, redis_client):
        seed(count=2, steps=3, turns=4, prefix="robot-a-", start=5)
        assert sorted(redis_client.zrange(store.keys.index_bytes, 0, -1)) == [
            b"robot-a-000005",
            b"robot-a-000006",
        ]
        loaded = store.load("robot-a-000006", window=None)
        expected = make_session(6, steps=3, turns=4, prefix="robot-a-")
        assert without_store_fields(loaded) == expected

    def test_seeding_twice_replaces_and_stays_the_same(self, store):
        seed(count=1, steps=3, turns=6)
        first = store.load("demo-000000", window=None)
        seed(count=1, steps=3, turns=6)
        again = store.load("demo-000000", window=None)
        assert without_store_fields(again) == without_store_fields(first)

    def test_zero_sessions(self, redis_client):
        assert seed(count=0, steps=3, turns=6).startswith("Seeded 0 sessions of")
        assert redis_client.dbsize() == 0


class TestLegacy:
    def test_blobs_are_stdlib_json_at_the_legacy_key_and_load_reads_them(self, store, redis_client):
        out = seed(count=2, steps=4, turns=9, legacy=True)
        assert "in legacy JSON blobs" in out
        raw = redis_client.get(store.keys.legacy("demo-000001"))
        assert json.loads(raw) == make_session(1, steps=4, turns=9)
        assert raw.isascii()  # written with the stdlib's default ensure_ascii, as the robot did
        assert redis_client.zcard(store.keys.index_bytes) == 0
        assert redis_client.exists(store.keys.state("demo-000001")) == 0
        loaded = store.load("demo-000001", window=None)
        assert loaded["_rev"] == 0
        assert without_store_fields(loaded) == make_session(1, steps=4, turns=9)

    def test_blobs_carry_the_store_ttl(self, store, redis_client):
        seed(count=1, steps=2, turns=2, legacy=True)
        ttl = redis_client.ttl(store.keys.legacy("demo-000000"))
        assert 0 < ttl <= settings.ROBOTPERF_STORE["TTL"]

    def test_a_seeded_legacy_session_migrates_on_its_first_append(self, store, redis_client):
        seed(count=1, steps=3, turns=5, legacy=True)
        assert store.append_turns("demo-000000", [{"role": "user", "content": "Xin chào"}]) == [5]
        assert redis_client.exists(store.keys.legacy("demo-000000")) == 0
        assert store.load("demo-000000", window=None)["_turns"] == 6


class TestIfEmpty:
    def test_an_empty_store_is_seeded(self, store, redis_client):
        seed(count=2, steps=3, turns=4, if_empty=True)
        assert redis_client.zcard(store.keys.index_bytes) == 2

    def test_a_store_with_sessions_is_left_alone(self, store, redis_client):
        seed(count=1, steps=3, turns=4)
        before = store.load("demo-000000", window=None)
        out = seed(count=5, steps=7, turns=9, if_empty=True)
        assert out.strip() == "The store already holds sessions: nothing seeded."
        assert redis_client.zcard(store.keys.index_bytes) == 1
        assert store.load("demo-000000", window=None) == before

    def test_legacy_sessions_count_as_sessions(self, store, redis_client):
        seed(count=1, steps=3, turns=4, legacy=True)
        assert "nothing seeded" in seed(count=5, steps=3, turns=4, if_empty=True)
        assert redis_client.zcard(store.keys.index_bytes) == 0
        assert redis_client.dbsize() == 1


class TestBadInput:
    @pytest.mark.parametrize(
        "options",
        [
            {"count": -1},
            {"steps": 0},
            {"steps": -3},
            {"turns": -1},
            {"start": -2},
        ],
    )
    def test_negative_numbers_are_a_command_error(self, options, redis_client):
        arguments = {"count": 2, "steps": 3, "turns": 4, **options}
        with pytest.raises(CommandError, match=r"must be >= 0 and steps >= 1 \(got count=") as e:
            seed(**arguments)
        assert "\n" not in str(e.value)
        assert redis_client.dbsize() == 0

    @pytest.mark.parametrize("prefix", ["", "a{b}-"])
    def test_a_bad_prefix_is_a_command_error(self, prefix, redis_client):
        with pytest.raises(CommandError, match="prefix must be non-empty and without braces"):
            seed(count=1, steps=2, turns=2, prefix=prefix)
        assert redis_client.dbsize() == 0

    def test_a_non_number_on_the_command_line_is_a_command_error(self):
        with pytest.raises(CommandError, match="invalid int value"):
            call_command("seed_sessions", "--count", "many")

    @pytest.mark.parametrize("legacy", [False, True])
    @pytest.mark.parametrize("if_empty", [False, True])
    def test_unreachable_redis_is_a_command_error_naming_it(self, legacy, if_empty, settings):
        caches = {**settings.CACHES}
        caches["sessions"] = {
            **caches["sessions"],
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {**caches["sessions"]["OPTIONS"], "SOCKET_CONNECT_TIMEOUT": 0.5},
        }
        settings.CACHES = caches
        with pytest.raises(CommandError, match=r"Redis at redis://127\.0\.0\.1:1/0 is unreachable"):
            seed(count=1, steps=2, turns=2, legacy=legacy, if_empty=if_empty)


class TestSeedDemo:
    def test_seeds_everyday_oversized_and_legacy_sessions_into_an_empty_store(self, store):
        out = StringIO()
        call_command("seed_demo", stdout=out)
        assert "Seeded 240 demo sessions" in out.getvalue()
        policy = CompactionPolicy.from_settings()
        assert store.size_breakdown("demo-000000")["layout"] == "split"
        assert store.size_breakdown("demo-legacy-000000")["layout"] == "legacy"
        long_turns = store.size_breakdown("demo-long-000000")["turns"]
        assert long_turns > policy.max_turns, "the scheduled compaction has work to do"

    def test_a_store_with_sessions_is_left_alone(self, store):
        store.save(make_session(0, steps=2, turns=1, prefix="mine-"))
        out = StringIO()
        call_command("seed_demo", stdout=out)
        assert "Demo seeding skipped: the store at redis://127.0.0.1:" in out.getvalue()
        assert "already holds sessions (nothing seeded)" in out.getvalue()
        assert store.load("demo-000000") is None
