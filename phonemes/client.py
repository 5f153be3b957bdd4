"""The phoneme service's HTTP client: one pooled keep-alive client per process and per event loop.

Clients are created lazily, dropped in a forked child, re-created after ``close()``, and closed at
interpreter exit and Celery worker-process shutdown.
"""

import asyncio
import atexit
import functools
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import orjson
import urllib3
from celery.signals import worker_process_shutdown
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_live_clients = weakref.WeakSet()


class PhonemeServiceError(Exception):
    """The phoneme service could not answer; ``status`` is its HTTP status when it did answer."""

    def __init__(self, url, cause, *, status=None):
        super().__init__(f"phoneme service at {url} failed: {cause}")
        self.url = url
        self.cause = cause
        self.status = status


class PhonemeServiceBusy(PhonemeServiceError):
    """Every pooled connection stayed busy for the lookup's whole queue time: try again after
    ``retry_after`` seconds (the API answers 503 with Retry-After)."""

    def __init__(self, url, cause, *, retry_after):
        super().__init__(url, cause, status=503)
        self.retry_after = retry_after


class ServerFailure(Exception):
    """A 5xx answer, kept as the cause of the PhonemeServiceError raised after the last retry."""

    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    url: str
    """Base URL of the phoneme service; texts are posted to ``<url>/phonemes``."""
    connect_timeout: float = 1.0
    """Seconds to wait for a TCP connection to the service."""
    read_timeout: float = 5.0
    """Seconds to wait for an answer once the request is sent; a slow answer is not retried."""
    retries: int = 2
    """Further attempts after a connection error or a 5xx answer."""
    backoff: float = 0.05
    """Seconds before the first retry; each further retry waits twice as long."""
    pool_size: int = 10
    """Connections kept to the service: per process (sync) and per event loop (async)."""
    keepalive: float = 30.0
    """Seconds an idle connection stays open for reuse."""
    queue_timeout: float = 10.0
    """Seconds a lookup may wait, in all, for a free pooled connection (lookups queue when all
    are busy); past it, PhonemeServiceBusy."""

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ImproperlyConfigured(f"PHONEME_URL must be an http(s) URL, got {self.url!r}")
        for name in ("connect_timeout", "read_timeout", "keepalive", "queue_timeout"):
            # Written so that NaN fails too; infinity is no timeout.
            if not 0 < getattr(self, name) < math.inf:
                raise ImproperlyConfigured(f"phoneme client {name} must be > 0 and finite")
        if not (self.retries >= 0 and 0 <= self.backoff < math.inf and self.pool_size >= 1):
            raise ImproperlyConfigured("phoneme client retries/backoff >= 0 and pool_size >= 1")

    @classmethod
    def from_settings(cls):
        options = settings.ROBOTPERF_PHONEMES
        return cls(
            url=settings.PHONEME_URL,
            connect_timeout=options["CONNECT_TIMEOUT"],
            read_timeout=options["READ_TIMEOUT"],
            retries=options["RETRIES"],
            backoff=options["BACKOFF"],
            pool_size=options["POOL_SIZE"],
            keepalive=options["KEEPALIVE"],
            queue_timeout=options["QUEUE_TIMEOUT"],
        )


class PhonemeClient:
    """Fetches the phonemes of a text; sync callers share a pool, async ones a session per loop."""

    def __init__(self, config):
        self.config = config
        self.endpoint = config.url.rstrip("/") + "/phonemes"
        self._path = urlsplit(self.endpoint).path
        self._timeout = urllib3.Timeout(connect=config.connect_timeout, read=config.read_timeout)
        self._async_timeout = functools.partial(
            aiohttp.ClientTimeout,
            total=None,
            sock_connect=config.connect_timeout,
            sock_read=config.read_timeout,
        )
        self._reset()
        _live_clients.add(self)

    def _reset(self):
        self._lock = threading.Lock()
        self._pool = None
        self._sessions = {}

    # --- sync -------------------------------------------------------------------------

    def phonemes(self, text, lang, *, deadline=None):
        """The phoneme tokens of ``text`` in ``lang``, as a list of strings.

        Waits for a free pooled connection until ``deadline`` (time.monotonic(); by default
        queue_timeout from now), which lookups made for one request share.
        """
        pool = self._pool or self._open_pool()
        deadline = self.deadline() if deadline is None else deadline
        body = orjson.dumps({"text": text, "lang": lang})
        failure = None
        for delay in self._delays():
            if delay:
                time.sleep(delay)
            queue_time = deadline - time.monotonic()
            if queue_time <= 0:
                raise self._busy()
            try:
                response = pool.urlopen(
                    "POST", self._path, body=body, headers=JSON_HEADERS,
                    timeout=self._timeout, pool_timeout=queue_time,
                    retries=False, redirect=False,
                )  # fmt: skip
            except urllib3.exceptions.EmptyPoolError as e:
                raise self._busy() from e
            except urllib3.exceptions.ReadTimeoutError as e:
                raise PhonemeServiceError(self.endpoint, e) from e
            except urllib3.exceptions.HTTPError as e:
                failure = e
                continue
            if response.status >= 500:
                failure = ServerFailure(response.status)
                continue
            return self._parse(response.status, response.data)
        raise self._gave_up(failure)

    def _open_pool(self):
        with self._lock:
            if self._pool is None:
                # block=True makes pool_size a limit: a caller waits for a free connection.
                self._pool = urllib3.connection_from_url(
                    self.endpoint, maxsize=self.config.pool_size, block=True, retries=False
                )
            return self._pool

    # --- async ------------------------------------------------------------------------

    async def aphonemes(self, text, lang, *, deadline=None):
        """The async twin of ``phonemes``, on this event loop's shared session."""
        session = self._session()
        deadline = self.deadline() if deadline is None else deadline
        body = orjson.dumps({"text": text, "lang": lang})
        failure = None
        for delay in self._delays():
            if delay:
                await asyncio.sleep(delay)
            queue_time = deadline - time.monotonic()
            if queue_time <= 0:
                raise self._busy()
            # aiohttp's connect timeout covers the wait for a pooled connection and the TCP
            # connect: the queue time bounds the first, sock_connect the second.
            timeout = self._async_timeout(connect=queue_time)
            try:
                async with session.post(
                    self.endpoint, data=body, headers=JSON_HEADERS, timeout=timeout
                ) as r:
                    status, data = r.status, await r.read()
            except aiohttp.ConnectionTimeoutError as e:
                if time.monotonic() >= deadline:
                    raise self._busy() from e
                failure = e
                continue
            except TimeoutError as e:
                raise PhonemeServiceError(self.endpoint, "no answer within the read timeout") from e
            except aiohttp.ClientConnectionError as e:
                failure = e
                continue
            if status >= 500:
                failure = ServerFailure(status)
                continue
            return self._parse(status, data)
        raise self._gave_up(failure)

    def _session(self):
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            self._drop_sessions_of_closed_loops()
            config = self.config
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=config.pool_size, keepalive_timeout=config.keepalive
                ),
                timeout=self._async_timeout(connect=config.queue_timeout),
                raise_for_status=False,
            )
            self._sessions[loop] = session
        return session

    def _drop_sessions_of_closed_loops(self):
        for loop in [loop for loop in list(self._sessions) if loop.is_closed()]:
            session = self._sessions.pop(loop, None)
            if session is not None:
                # Its sockets went with the loop; detaching marks the session closed quietly.
                session.detach()

    # --- lifecycle --------------------------------------------------------------------

    async def aclose(self):
        """Close this event loop's session (an ASGI lifespan or service shutdown calls this)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    def close(self):
        """Close the sync pool and every session whose loop is not running; reopened on use."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        for loop, session in list(self._sessions.items()):
            if loop.is_running():
                continue
            del self._sessions[loop]
            if loop.is_closed():
                session.detach()
            else:
                loop.run_until_complete(session.close())

    def _forget_after_fork(self):
        # The child shares the parent's sockets: closing them here would cut the parent's
        # connections, so the child drops its references and opens its own on first use.
        _inherited.append((self._pool, self._sessions))
        self._reset()

    # --- shared -----------------------------------------------------------------------

    def deadline(self):
        """Until when a lookup starting now may wait for a pooled connection."""
        return time.monotonic() + self.config.queue_timeout

    def _busy(self):
        # A busy connection comes free within one read timeout at the latest.
        return PhonemeServiceBusy(
            self.endpoint,
            f"all {self.config.pool_size} connections stayed busy for the lookup's "
            f"{self.config.queue_timeout:g} s queue time",
            retry_after=math.ceil(self.config.read_timeout),
        )

    def _delays(self):
        """Seconds to sleep before each attempt: none first, then exponential backoff."""
        yield 0
        for n in range(self.config.retries):
            yield self.config.backoff * 2**n

    def _gave_up(self, failure):
        error = PhonemeServiceError(
            self.endpoint,
            f"{failure} (after {self.config.retries + 1} attempts)",
            status=getattr(failure, "status", None),
        )
        error.__cause__ = failure
        return error

    def _parse(self, status, data):
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise PhonemeServiceError(
                self.endpoint, f"HTTP {status}, not JSON", status=status
            ) from e
        if status != 200:
            error = decoded.get("error") if isinstance(decoded, dict) else decoded
            raise PhonemeServiceError(self.endpoint, f"HTTP {status}: {error}", status=status)
        phonemes = decoded.get("phonemes") if isinstance(decoded, dict) else None
        if not isinstance(phonemes, list) or not all(isinstance(p, str) for p in phonemes):
            raise PhonemeServiceError(
                self.endpoint, "answer has no list of phonemes", status=status
            )
        return phonemes


# Objects a forked child inherited; kept referenced so their finalizers never run in the child.
_inherited = []


def _after_fork_in_child():
    for client in list(_live_clients):
        client._forget_after_fork()


def _close_all(**kwargs):
    for client in list(_live_clients):
        client.close()


async def aclose_all():
    """Close every client's session on the running loop (an ASGI server's lifespan shutdown)."""
    for client in list(_live_clients):
        await client.aclose()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
worker_process_shutdown.connect(_close_all, weak=False)


@functools.cache
def get_client():
    """The process's PhonemeClient, configured from settings."""
    # Two threads racing here may build two clients; harmless, as pools open on first use.
    return PhonemeClient(ClientConfig.from_settings())


@receiver(setting_changed)
def _settings_changed(*, setting, **kwargs):
    if setting in {"PHONEME_URL", "ROBOTPERF_PHONEMES"}:
        get_client.cache_clear()
