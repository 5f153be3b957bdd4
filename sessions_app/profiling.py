"""The load profile of one session: where the time of N real loads goes, phase by phase, beside
what the old robot's GET + json.loads of the same session as one blob costs, in the same request.

The phases are the store's own tracing phases (`tracing.recording_phases`); the blob is written to
a scratch key for the measurement and deleted afterwards.
"""

import itertools
import json
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import orjson
import redis

from convstore.keys import BYTES, REV
from convstore.protocol import Command, int_field
from convstore.tracing import recording_phases
from sessions_app import inspection
from sessions_app.store import SessionNotFound, StoreError, get_store

MAX_RUNS = 100
BYTE_BUDGET = 256 * 1024 * 1024
"""Bytes one profile may decode per kind of load: a 25 MB session gets 10 runs, not 100."""
MAX_BYTES = 64 * 1024 * 1024
"""Sessions larger than this are not profiled: one click must not hog the server."""
UNATTRIBUTED = "unattributed"
"""The part of a load outside every phase: span start and end, the call itself."""
SCRATCH_TTL = 300
"""The scratch blob expires even if the process dies before deleting it."""


class ProfileRefused(StoreError):
    """The session is too large to profile from a web request."""


@dataclass(frozen=True)
class Timing:
    median: float
    p95: float
    """Seconds."""

    @classmethod
    def of(cls, samples):
        ordered = sorted(samples)
        return cls(statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))])


@dataclass(frozen=True, kw_only=True)
class LoadProfile:
    conversation_id: str
    window: int | None
    runs: int
    asked_runs: int
    session_bytes: int
    blob_bytes: int
    load: Timing
    """`store.load` as the caller sees it."""
    phases: list[tuple[str, Timing]]
    """The store's phases in their order, then the unattributed rest."""
    legacy_json: Timing
    legacy_orjson: Timing | None
    """None when orjson refuses the blob (stdlib json wrote NaN or Infinity into it)."""
    scratch_key: str
    setup_seconds: float
    """Time of the request outside the timed loads: sizes, building the blob, writing it."""
    timed_seconds: float
    """Time of every timed call, the loads and the legacy GETs (a request's cost beyond setup)."""

    @property
    def capped(self):
        return self.runs < self.asked_runs

    @property
    def speedup(self):
        return self.legacy_json.median / self.load.median if self.load.median else None


def runs_for(size, asked):
    """How many loads of a session of ``size`` bytes one profile may time."""
    return max(1, min(asked, MAX_RUNS, BYTE_BUDGET // max(size, 1)))


def profile_load(conversation_id: str, *, runs: int = 20, window: int | None = 20) -> LoadProfile:
    """Time ``runs`` loads of the session and ``runs`` legacy GET + loads of it as one blob.

    Raises SessionNotFound, ProfileRefused above MAX_BYTES, CorruptSession if undecodable.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    started = time.perf_counter()
    store = get_store()
    size = _size(store, conversation_id)
    if size > MAX_BYTES:
        raise ProfileRefused(
            f"conversation {conversation_id!r} holds {size} bytes, more than the {MAX_BYTES} "
            "a profile from the admin may load"
        )
    blob = inspection.legacy_blob(store, conversation_id)
    count = runs_for(max(size, len(blob)), runs)
    key = inspection.scratch_key(store)
    setup = time.perf_counter() - started
    load, phases, timed = _time_loads(store, conversation_id, count, window)
    try:
        started = time.perf_counter()
        try:
            store.client.set(key, blob, ex=SCRATCH_TTL)
        except redis.exceptions.OutOfMemoryError as e:
            raise ProfileRefused(f"Redis is full: the legacy blob cannot be written ({e})") from e
        setup += time.perf_counter() - started
        legacy_json, seconds = _time(lambda: json.loads(store.client.get(key)), count)
        timed += seconds
        try:
            legacy_orjson, seconds = _time(lambda: orjson.loads(store.client.get(key)), count)
            timed += seconds
        except orjson.JSONDecodeError:
            legacy_orjson = None
    finally:
        store.client.delete(key)
    return LoadProfile(
        conversation_id=conversation_id,
        window=window,
        runs=count,
        asked_runs=runs,
        session_bytes=size,
        blob_bytes=len(blob),
        load=load,
        phases=phases,
        legacy_json=legacy_json,
        legacy_orjson=legacy_orjson,
        scratch_key=key,
        setup_seconds=setup,
        timed_seconds=timed,
    )


def _size(store, conversation_id):
    """Bytes of the session in Redis, as its state hash (or its legacy blob) counts them;
    CorruptSession when a key holds another type or the count is no count."""
    state_key, legacy_key = store.keys.state(conversation_id), store.keys.legacy(conversation_id)
    (size, rev), legacy = store.ask(
        [
            Command("hmget", (state_key, BYTES, REV), state_key),
            Command("strlen", (legacy_key,), legacy_key),
        ]
    )
    if size is not None or rev is not None:
        return int_field(state_key, BYTES, size)
    if not legacy:
        raise SessionNotFound(conversation_id)
    return legacy


def _time_loads(store, conversation_id, runs, window):
    # One load first: the robot's hot path has its bot_config cached in-process.
    if store.load(conversation_id, window=window) is None:
        raise SessionNotFound(conversation_id)
    walls, kept = [], []
    clock = time.perf_counter_ns
    with recording_phases() as calls:
        for _ in range(runs):
            start = clock()
            # Kept, as the robot keeps what it loads: freeing the last result would be timed
            # as part of the next load.
            kept.append(store.load(conversation_id, window=window))
            walls.append(clock() - start)
    loads = [marks for name, marks in calls if name == "robot-v2.load-conversation"]
    samples = defaultdict(lambda: [0] * runs)  # phase -> nanoseconds in each run
    for run, (marks, wall) in enumerate(zip(loads, walls, strict=True)):
        for (phase, begin), (_, end) in itertools.pairwise(marks):
            samples[phase][run] += end - begin
        samples[UNATTRIBUTED][run] = wall - (marks[-1][1] - marks[0][1])
    samples[UNATTRIBUTED] = samples.pop(UNATTRIBUTED)  # last, whatever phases some runs had
    phases = [(name, Timing.of(n / 1e9 for n in values)) for name, values in samples.items()]
    return Timing.of(n / 1e9 for n in walls), phases, sum(walls) / 1e9


def _time(fn, runs):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing.of(samples), sum(samples)
