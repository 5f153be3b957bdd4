"""The slow-call log, like Redis's SLOWLOG: every store call slower than a threshold, written to
a capped Redis stream by a thread of its own, beside each minute's latency histogram.

A call only hands its record over (an observer, observe.py): a slow one is queued (a bounded
queue; when it is full the entry is dropped and counted), every one is counted in the process's
histogram (latency.py). A daemon thread writes both to Redis, on a client of its own, so a slow
or unreachable Redis never blocks or fails a call, in a thread or an event loop.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import queue
import socket
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import cast

import orjson
import redis
from redis.typing import EncodableT, FieldT

from convstore import observe
from convstore.exceptions import StoreError
from convstore.keys import KeyLayout
from convstore.latency import Histograms
from convstore.observe import CallRecord

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
"""Slow calls waiting for the writer; past it they are dropped (and counted)."""
BATCH = 100
"""Entries written in one round trip."""
WARN_EVERY = 60.0
"""Seconds between two warnings that the log cannot be written."""

type Entry = dict[FieldT, EncodableT]
type Item = Entry | threading.Event | None
"""What the writer is queued: a slow call's entry, a flush to signal when done, or stop."""


def process_label() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class SlowCallLog:
    """An observer of store calls that logs the slow ones and counts every one's latency.

    ``client`` is used by the writer thread only; give it short timeouts (`enable_slow_log`
    makes one so). ``threshold``: seconds from which a call is slow (0 logs every call).
    ``maxlen``: the stream's cap (approximate, as XADD MAXLEN ~ trims). ``name``: what this
    process is (web, worker, robot), beside its host:pid. ``flush_interval``: seconds between
    two writes of the latency histogram.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        threshold: float = 0.05,
        maxlen: int = 10_000,
        name: str = "",
        keys: KeyLayout | None = None,
        flush_interval: float = 5.0,
    ) -> None:
        if not threshold >= 0:  # also refuses NaN
            raise ValueError(f"threshold must be seconds >= 0, got {threshold!r}")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"maxlen must be an integer >= 1, got {maxlen!r}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be seconds > 0, got {flush_interval!r}")
        self.client, self.threshold, self.maxlen = client, threshold, maxlen
        self.name = name or os.path.basename(sys.argv[0])
        self.keys = keys or KeyLayout()
        self.flush_interval = flush_interval
        self.written = 0
        self.dropped = 0
        """Slow calls not logged: the queue was full, or Redis refused or did not answer."""
        self._closed = False
        self._start()
        # A forked child (Celery prefork, gunicorn) inherits no thread: it starts a writer of
        # its own, with nothing counted yet.
        os.register_at_fork(after_in_child=functools.partial(_start_in_child, weakref.ref(self)))

    def _start(self) -> None:
        self.process = process_label()
        self.histograms = Histograms()
        self._queue: queue.Queue[Item] = queue.Queue(QUEUE_SIZE)
        self._warned = 0.0
        self._thread = threading.Thread(target=self._write_forever, name="convstore-slowlog")
        self._thread.daemon = True
        if not self._closed:
            self._thread.start()

    def __call__(self, record: CallRecord) -> None:
        now = time.time()
        self.histograms.add(record.call, record.seconds, now)
        if record.seconds < self.threshold:
            return
        try:
            self._queue.put_nowait(self._entry(record, now))
        except queue.Full:
            self.dropped += 1

    def _entry(self, record: CallRecord, now: float) -> Entry:
        phases = [[name, round(seconds * 1000, 3)] for name, seconds in record.phases]
        return {
            "call": record.call,
            "cid": record.conversation_id,
            "ms": round(record.seconds * 1000, 3),
            "window": "" if record.window is None else record.window,
            "bytes": "" if record.size is None else record.size,
            "phases": orjson.dumps(phases),
            "error": record.error or "",
            "process": self.process,
            "name": self.name,
            "at": f"{now:.6f}",
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is queued now and the histograms; False if not done within ``timeout``."""
        if self._closed:
            return False
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        """Stop observing; write what is left, then stop the writer."""
        observe.remove_observer(self)
        if self._closed:
            return
        self._closed = True
        while True:  # a writer stalled on Redis must not hold the caller: drop what waits
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                self._discard_one()
        self._thread.join(timeout=10)

    def _discard_one(self) -> None:
        try:
            if isinstance(self._queue.get_nowait(), dict):
                self.dropped += 1
        except queue.Empty:
            pass

    def _write_forever(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        stop = False
        while not stop:
            items = self._take(next_flush - time.monotonic())
            stop = None in items
            flushed = [item for item in items if isinstance(item, threading.Event)]
            batch = [item for item in items if isinstance(item, dict)]
            histograms = stop or bool(flushed) or time.monotonic() >= next_flush
            if histograms:
                next_flush = time.monotonic() + self.flush_interval
            self._write(batch, histograms=histograms)
            for done in flushed:
                done.set()

    def _take(self, wait: float) -> list[Item]:
        """What is queued, up to BATCH entries, after waiting up to ``wait`` for the first."""
        try:
            items = [self._queue.get(timeout=max(wait, 0))]
        except queue.Empty:
            return []
        while len(items) < BATCH and items[-1] is not None:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _write(self, batch: list[Entry], *, histograms: bool) -> None:
        pipe = self.client.pipeline(transaction=False)
        for entry in batch:
            pipe.xadd(self.keys.slow_log, entry, maxlen=self.maxlen, approximate=True)
        queued = len(batch) + (self.histograms.queue_flush(pipe, self.keys) if histograms else 0)
        if not queued:
            return
        try:
            replies = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as e:
            replies = [e] * queued
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        lost = sum(isinstance(reply, Exception) for reply in replies[: len(batch)])
        self.dropped += lost
        self.written += len(batch) - lost
        if failed and time.monotonic() - self._warned >= WARN_EVERY:
            self._warned = time.monotonic()
            log.warning(
                "slow-call log: %d of %d writes to %s failed (%s); %d slow calls dropped so far",
                len(failed),
                queued,
                self.keys.slow_log,
                failed[0],
                self.dropped,
            )


def _start_in_child(ref: weakref.ref[SlowCallLog]) -> None:
    slow_log = ref()
    if slow_log is not None:
        slow_log._start()


_enabled: SlowCallLog | None = None
_enabled_lock = threading.Lock()


def enable_slow_log(
    url_or_client: str | redis.Redis,
    *,
    threshold: float = 0.05,
    maxlen: int = 10_000,
    name: str = "",
    keys: KeyLayout | None = None,
    flush_interval: float = 5.0,
) -> SlowCallLog:
    """Log this process's store calls slower than ``threshold`` seconds to the stream
    ``keys.slow_log`` of the Redis at ``url_or_client``, and count every call's latency there.

    A URL gets a client of its own (two connections, 1 s timeouts). Enabling again replaces
    the log enabled before. Returns the log (`SlowCallLog.close()` stops it).
    """
    global _enabled
    if isinstance(url_or_client, str):
        client = redis.Redis.from_url(
            url_or_client, socket_timeout=1, socket_connect_timeout=1, max_connections=2
        )
    else:
        client = url_or_client
    slow_log = SlowCallLog(
        client,
        threshold=threshold,
        maxlen=maxlen,
        name=name,
        keys=keys,
        flush_interval=flush_interval,
    )
    with _enabled_lock:
        previous, _enabled = _enabled, slow_log
    if previous is not None:
        previous.close()
    observe.add_observer(slow_log)
    return slow_log


def disable_slow_log() -> None:
    """Stop the log `enable_slow_log` started, writing what it still holds."""
    global _enabled
    with _enabled_lock:
        previous, _enabled = _enabled, None
    if previous is not None:
        previous.close()


@dataclass(frozen=True, slots=True)
class SlowCall:
    """One entry of the slow-call log."""

    id: str
    """The stream entry's id (its milliseconds are when it was written)."""
    at: float | None
    """Unix time the call ended."""
    call: str
    conversation_id: str
    seconds: float | None
    window: int | None
    size: int | None
    """Bytes of the conversation in Redis, when the call knew it."""
    phases: tuple[tuple[str, float], ...]
    """(phase, seconds) in order."""
    error: str
    process: str
    """host:pid."""
    name: str


PAGE = 500
type Page = list[tuple[bytes, dict[bytes, bytes]]]
"""What XREVRANGE returns on a client without decode_responses."""
SCANNED = 20_000
"""Entries a filtered read looks through at most (the stream is capped at ``maxlen``)."""


def read_slow_calls(
    client: redis.Redis,
    count: int = 100,
    *,
    call: str | None = None,
    conversation_id: str | None = None,
    keys: KeyLayout | None = None,
) -> list[SlowCall]:
    """The last ``count`` slow calls, newest first, of ``call`` and ``conversation_id`` when
    given. Raises StoreError when the stream's key holds another type."""
    key = (keys or KeyLayout()).slow_log
    found: list[SlowCall] = []
    start, scanned = "+", 0
    while len(found) < count and scanned < SCANNED:
        try:
            page = cast(Page, client.xrevrange(key, max=start, min="-", count=PAGE))
        except redis.ResponseError as e:
            raise StoreError(f"{key} cannot be read as the slow-call log: {e}") from e
        for entry_id, fields in page:
            slow = _slow_call(entry_id, fields)
            if (call is None or slow.call == call) and (
                conversation_id is None or slow.conversation_id == conversation_id
            ):
                found.append(slow)
        scanned += len(page)
        if len(page) < PAGE:
            break
        start = "(" + page[-1][0].decode()
    return found[:count]


def _slow_call(entry_id: bytes, fields: dict[bytes, bytes]) -> SlowCall:
    """An entry as written by SlowCallLog; what another writer left odd is shown as empty."""

    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    def number(name: str) -> float | None:
        try:
            value = float(text(name))
        except ValueError:
            return None
        return value if _seconds(value) else None

    def whole(name: str) -> int | None:
        value = text(name)
        return int(value) if value.isdigit() else None

    ms = number("ms")
    return SlowCall(
        id=entry_id.decode(),
        at=number("at"),
        call=text("call"),
        conversation_id=text("cid"),
        seconds=None if ms is None else ms / 1000,
        window=whole("window"),
        size=whole("bytes"),
        phases=_phases(fields.get(b"phases", b"")),
        error=text("error"),
        process=text("process"),
        name=text("name"),
    )


def _phases(raw: bytes) -> tuple[tuple[str, float], ...]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(
        (str(item[0]), float(item[1]) / 1000)
        for item in value
        if isinstance(item, list) and len(item) == 2 and _seconds(item[1])
    )


def _seconds(value: object) -> bool:
    """Whether ``value`` can be a duration or a time: a finite number >= 0 (not "nan", "-5")."""
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0
