"""The two-tier phoneme cache: a bounded in-process LRU, then PhonemeCacheEntry rows.

Concurrent misses for one text make one request (threads and asyncio tasks alike); hits are
counted in memory and written to the database at most once per touch interval: by the lookup
that finds the interval over, else by a background thread within a second of it, and at the
process's exit (and a Celery worker process's shutdown), so the admin shows what was counted.
"""

import asyncio
import atexit
import functools
import logging
import os
import sys
import threading
import time
import weakref
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import batched

import orjson
from asgiref.sync import sync_to_async
from celery.signals import worker_process_shutdown
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from phonemes import metrics
from phonemes.client import get_client
from phonemes.lru import BoundedLRU
from phonemes.models import PhonemeCacheCounter, PhonemeCacheEntry, entry_digest
from phonemes.text import check_lang, normalize_text

log = logging.getLogger(__name__)

# Tier-1 keys are "<lang><SEP><normalized text>": one string hashes faster and weighs less than
# a tuple, and the separator cannot survive normalization of a text (it is whitespace).
SEP = "\x1f"
# Flush early when this many distinct texts wait for a hit-count write.
MAX_PENDING_TOUCHES = 10_000
# How often the background thread looks for counts whose interval is over.
FLUSHER_TICK = 1.0
_live_caches = weakref.WeakSet()
_flusher_lock = threading.Lock()
_flusher_pid = None


class PhonemeCache:
    """Phonemes of texts from tier 1, else tier 2, else the service; one request per text."""

    def __init__(
        self,
        client,
        *,
        tier1,
        version,
        touch_interval,
        max_text_length,
        timer=time.monotonic,
        background_flush=False,
    ):
        self.client = client
        self.tier1 = tier1
        self.version = version
        self.touch_interval = touch_interval
        self.max_text_length = max_text_length
        self._timer = timer
        self.background_flush = background_flush
        # Counts are written to the database they were counted against (a test run swaps it).
        self._database = connection.settings_dict["NAME"]
        self._reset()
        _live_caches.add(self)

    def _reset(self):
        self._lock = threading.Lock()
        self._flights = {}
        self._async_flights = weakref.WeakKeyDictionary()
        self._pending = defaultdict(int)
        self._counts = dict.fromkeys(PhonemeCacheCounter.NAMES, 0)
        self._last_flush = self._timer()
        self._executor = None

    def key(self, text, lang):
        """The tier-1 key of a text; ValueError when it cannot be looked up."""
        if not isinstance(text, str) or not isinstance(lang, str):
            raise ValueError("texts and lang must be strings")
        normalized = normalize_text(text)
        if not normalized:
            raise ValueError("text is empty")
        if len(normalized) > self.max_text_length:
            raise ValueError(f"text is longer than {self.max_text_length} characters")
        return lang + SEP + normalized

    def forget(self, *, text, lang):
        """Drop a normalized text from this process's tier 1 (its row was evicted)."""
        self.tier1.discard(lang + SEP + text)
        metrics.tier1_resized(self.tier1)

    # --- sync -------------------------------------------------------------------------

    def get_pair(self, text_1, text_2, lang):
        """``(phonemes_1, phonemes_2, cached)``; cached is False when a request was made."""
        key_1, key_2 = self.key(text_1, lang), self.key(text_2, lang)
        phonemes_1, phonemes_2 = self.tier1.get(key_1), self.tier1.get(key_2)
        if phonemes_1 is not None and phonemes_2 is not None:
            if self._record(PhonemeCacheCounter.TIER1_HITS, (key_1, key_2)):
                self.flush()
            return phonemes_1, phonemes_2, True
        pairs = ((key_1, phonemes_1), (key_2, phonemes_2))
        self._record(PhonemeCacheCounter.TIER1_HITS, [k for k, p in pairs if p is not None])
        found, fetched = self._resolve({k for k, p in pairs if p is None}, lang)
        return found.get(key_1, phonemes_1), found.get(key_2, phonemes_2), not fetched

    def _resolve(self, keys, lang):
        """Tier-1 misses: this thread loads the keys no other thread is loading, joins the rest."""
        check_lang(lang)
        own, joined = {}, {}
        with self._lock:
            for key in keys:
                flight = self._flights.get(key)
                if flight is None:
                    own[key] = self._flights[key] = Future()
                else:
                    joined[key] = flight
        found, fetched = {}, bool(joined)
        try:
            if own:
                found, fetched_own = self._load(list(own), lang)
                fetched = fetched or fetched_own
        except BaseException as e:
            for flight in own.values():
                flight.set_exception(e)
            raise
        finally:
            with self._lock:
                for key in own:
                    del self._flights[key]
        for key, flight in own.items():
            flight.set_result(found[key])
        for key, flight in joined.items():
            found[key] = flight.result()
        self._record(PhonemeCacheCounter.TIER1_HITS, list(joined))
        return found, fetched

    def _load(self, keys, lang):
        found = self._read_tier2(keys, lang)
        self._record(PhonemeCacheCounter.TIER2_HITS, list(found))
        missing = [key for key in keys if key not in found]
        if missing:
            fetched = self._fetch_all(missing, lang)
            self._write_tier2(fetched, lang)
            self._record(PhonemeCacheCounter.MISSES, missing)
            found.update(fetched)
        for key, phonemes in found.items():
            self.tier1.put(key, phonemes)
        metrics.tier1_resized(self.tier1)
        return found, bool(missing)

    def _fetch_all(self, keys, lang):
        """Fetch texts concurrently: all but the first on worker threads, the first here; all
        wait for a pooled connection until one deadline, the request's."""
        first, *rest = keys
        fetch = metrics.timed_upstream(
            functools.partial(self.client.phonemes, deadline=self.client.deadline())
        )
        futures = [(k, self._fetcher().submit(fetch, text_of(k), lang)) for k in rest]
        fetched = {first: freeze(fetch(text_of(first), lang))}
        for key, future in futures:
            fetched[key] = freeze(future.result())
        return fetched

    def _fetcher(self):
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.client.config.pool_size, thread_name_prefix="phonemes"
                )
            return self._executor

    # --- async ------------------------------------------------------------------------

    async def aget_pair(self, text_1, text_2, lang):
        """The async twin of ``get_pair``; both misses are fetched at once."""
        key_1, key_2 = self.key(text_1, lang), self.key(text_2, lang)
        phonemes_1, phonemes_2 = self.tier1.get(key_1), self.tier1.get(key_2)
        if phonemes_1 is not None and phonemes_2 is not None:
            if self._record(PhonemeCacheCounter.TIER1_HITS, (key_1, key_2)):
                await sync_to_async(self.flush)()
            return phonemes_1, phonemes_2, True
        pairs = ((key_1, phonemes_1), (key_2, phonemes_2))
        self._record(PhonemeCacheCounter.TIER1_HITS, [k for k, p in pairs if p is not None])
        missing = list({k for k, p in pairs if p is None})
        results = await asyncio.gather(*(self._aresolve(key, lang) for key in missing))
        found = {key: phonemes for key, (phonemes, _) in zip(missing, results, strict=True)}
        fetched = any(fetched for _, fetched in results)
        return found.get(key_1, phonemes_1), found.get(key_2, phonemes_2), not fetched

    async def _aresolve(self, key, lang):
        check_lang(lang)
        loop = asyncio.get_running_loop()
        flights = self._async_flights.setdefault(loop, {})
        flight = flights.get(key)
        if flight is not None:
            phonemes = await asyncio.shield(flight)
            self._record(PhonemeCacheCounter.TIER1_HITS, [key])
            return phonemes, True
        flight = flights[key] = loop.create_future()
        try:
            phonemes, fetched = await self._aload(key, lang)
        except asyncio.CancelledError:
            flight.cancel()
            raise
        except BaseException as e:
            flight.set_exception(e)
            flight.exception()  # retrieved: tasks that joined get it, no "never retrieved" noise
            raise
        finally:
            del flights[key]
        flight.set_result(phonemes)
        return phonemes, fetched

    async def _aload(self, key, lang):
        found = await sync_to_async(self._read_tier2)([key], lang)
        if found:
            phonemes = found[key]
            self._record(PhonemeCacheCounter.TIER2_HITS, [key])
        else:
            phonemes = freeze(
                await metrics.timed_upstream(self.client.aphonemes)(text_of(key), lang)
            )
            await sync_to_async(self._write_tier2)({key: phonemes}, lang)
            self._record(PhonemeCacheCounter.MISSES, [key])
        self.tier1.put(key, phonemes)
        metrics.tier1_resized(self.tier1)
        return phonemes, not found

    # --- tier 2 and hit counts ----------------------------------------------------------

    def _digest(self, key):
        lang, _, text = key.partition(SEP)
        return entry_digest(text=text, lang=lang, version=self.version)

    def _read_tier2(self, keys, lang):
        digests = {self._digest(key): key for key in keys}
        rows = PhonemeCacheEntry.objects.filter(digest__in=digests)
        return {digests[d]: freeze(p) for d, p in rows.values_list("digest", "phonemes")}

    def _write_tier2(self, fetched, lang):
        now = timezone.now()
        entries = [
            PhonemeCacheEntry(
                digest=self._digest(key),
                text=text_of(key),
                lang=lang,
                service_version=self.version,
                phonemes=list(phonemes),
                last_used_at=now,
                size_bytes=len(text_of(key).encode()) + len(orjson.dumps(phonemes)),
            )
            for key, phonemes in fetched.items()
        ]
        # Another process may have stored the same text meanwhile; its row is as good as ours.
        PhonemeCacheEntry.objects.bulk_create(entries, ignore_conflicts=True)

    def _record(self, name, keys):
        """Count lookups of one kind, and hits for a later write; True when a flush is due."""
        metrics.count_lookups(name, len(keys))
        with self._lock:
            self._counts[name] += len(keys)
            if name != PhonemeCacheCounter.MISSES:
                for key in keys:
                    self._pending[key] += 1
            due = (
                len(self._pending) >= MAX_PENDING_TOUCHES
                or self._timer() - self._last_flush >= self.touch_interval
            )
        if self.background_flush:
            _start_flusher()
        return due

    def flush_due(self):
        """Whether counts wait and their touch interval is over (the background flush)."""
        if not (self.background_flush and self.has_counts()):
            return False
        with self._lock:
            return self._timer() - self._last_flush >= self.touch_interval

    def has_counts(self):
        """Whether counts wait to be written to the database they were counted against."""
        if connection.settings_dict["NAME"] != self._database:
            return False
        with self._lock:
            return bool(self._pending) or any(self._counts.values())

    def flush(self):
        """Write the hits counted since the last flush: rows' hits and last use, and counters."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(int)
            counts, self._counts = self._counts, dict.fromkeys(PhonemeCacheCounter.NAMES, 0)
            self._last_flush = self._timer()
        # One UPDATE per distinct hit count, not one per row.
        by_hits = defaultdict(list)
        for key, hits in pending.items():
            by_hits[hits].append(self._digest(key))
        now = timezone.now()
        try:
            with transaction.atomic():
                for hits, digests in by_hits.items():
                    for chunk in batched(digests, 500):
                        PhonemeCacheEntry.objects.filter(digest__in=chunk).update(
                            hits=F("hits") + hits, last_used_at=now
                        )
                for name, value in counts.items():
                    if value:
                        PhonemeCacheCounter.objects.get_or_create(name=name)
                        PhonemeCacheCounter.objects.filter(name=name).update(
                            value=F("value") + value
                        )
        except DatabaseError:
            # Hit counts only order eviction; losing one interval's worth must not fail a lookup.
            log.warning("phoneme cache: %d hit counts not written", len(pending), exc_info=True)

    def _after_fork(self):
        # The parent writes the hits it counted; the child starts counting from zero.
        self._reset()
        self.tier1._after_fork()


def text_of(key):
    return key.partition(SEP)[2]


def freeze(phonemes):
    """An immutable phoneme sequence whose tokens are shared by every entry that uses them."""
    return tuple(map(sys.intern, phonemes))


def _after_fork_in_child():
    for cache in list(_live_caches):
        cache._after_fork()


def _start_flusher():
    """Start this process's background flush thread, once (again in a forked child, which
    inherits no thread)."""
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    with _flusher_lock:
        if _flusher_pid != os.getpid():
            flusher = threading.Thread(target=_flush_when_due, name="phoneme-flush", daemon=True)
            flusher.start()
            _flusher_pid = os.getpid()


def _flush_when_due():
    # Counts of a process that served one burst of lookups and then none would otherwise wait
    # for the next lookup (or the exit) to be written.
    while True:
        time.sleep(FLUSHER_TICK)
        due = [cache for cache in list(_live_caches) if cache.flush_due()]
        for cache in due:
            cache.flush()
        if due:
            connection.close()  # this thread's own connection: not kept open between flushes


def _flush_at_exit(**kwargs):
    """Write the counts not yet flushed when the process (or a Celery worker process) ends."""
    for cache in list(_live_caches):
        try:
            if cache.has_counts():
                cache.flush()
        except Exception:  # at exit the database may be gone: say so, end anyway
            log.warning("phoneme cache: counts not written at exit", exc_info=True)


atexit.register(_flush_at_exit)
worker_process_shutdown.connect(_flush_at_exit, weak=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.cache
def get_cache():
    """The process's PhonemeCache, configured from settings."""
    options = settings.ROBOTPERF_PHONEMES
    return PhonemeCache(
        get_client(),
        tier1=BoundedLRU(
            max_entries=options["TIER1_MAX_ENTRIES"], max_bytes=options["TIER1_MAX_BYTES"]
        ),
        version=options["SERVICE_VERSION"],
        touch_interval=options["TOUCH_INTERVAL"],
        max_text_length=options["MAX_TEXT_LENGTH"],
        background_flush=True,
    )


@receiver(setting_changed)
def _settings_changed(*, setting, **kwargs):
    if setting in {"PHONEME_URL", "ROBOTPERF_PHONEMES"}:
        get_cache.cache_clear()
