"""The reference phoneme service: espeak-ng grapheme-to-phoneme conversion over HTTP/1.1.

``POST /phonemes {text, lang}`` answers ``{phonemes: [...]}``; ``GET /health``; ``GET /stats``
counts requests and accepted TCP connections, so tests can see pooling and single flight.
"""

import asyncio
import re
import shutil
import threading
from collections import OrderedDict

import orjson
from aiohttp import web

from phonemes.text import check_lang

# The service's own limit on a request, wider than the cache's configured one.
MAX_TEXT_LENGTH = 2000
# espeak-ng marks stress and, for foreign words, a switch of language like "(en)": neither is
# a phoneme, and keeping them would make the same word score differently by context.
STRESS_MARKS = str.maketrans("", "", "ˈˌ")
LANGUAGE_SWITCH = re.compile(r"\([a-z-]+\)")
SEPARATORS = re.compile(r"[_\s]+")


class G2PError(Exception):
    """espeak-ng could not convert a text; ``status`` is the HTTP status to answer with."""

    def __init__(self, message, *, status):
        super().__init__(message)
        self.status = status


def split_phonemes(ipa):
    """espeak-ng's ``--ipa --sep=_`` output as a list of phoneme tokens."""
    cleaned = LANGUAGE_SWITCH.sub(" ", ipa).translate(STRESS_MARKS)
    return [token for token in SEPARATORS.split(cleaned) if token]


def json_response(data, *, status=200):
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class PhonemeService:
    """The service's state: counters, the G2P cache, and the test knobs (latency, failures)."""

    def __init__(self, *, latency_ms=0, fail_first=0, cache_size=10_000, espeak="espeak-ng"):
        self.espeak = shutil.which(espeak)
        if self.espeak is None:
            raise G2PError(
                f"{espeak} is not installed (scripts/ensure-system-packages)", status=500
            )
        self.latency = latency_ms / 1000
        self.fail_remaining = fail_first
        self.requests = 0
        self.phoneme_requests = 0
        self.connections = 0
        self.espeak_runs = 0
        self._cache = OrderedDict()
        self._cache_size = cache_size

    def stats(self):
        return {
            "requests": self.requests,
            "phoneme_requests": self.phoneme_requests,
            "connections": self.connections,
            "espeak_runs": self.espeak_runs,
        }

    def app(self):
        app = web.Application(middlewares=[self._count], client_max_size=64 * 1024)
        app.router.add_post("/phonemes", self.handle_phonemes)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/stats", self.handle_stats)
        return app

    def accept(self, make_protocol):
        """Wrap the server's protocol factory so every accepted connection is counted."""

        def factory():
            self.connections += 1
            return make_protocol()

        return factory

    @web.middleware
    async def _count(self, request, handler):
        self.requests += 1
        return await handler(request)

    async def handle_health(self, request):
        return json_response({"status": "ok"})

    async def handle_stats(self, request):
        return json_response(self.stats())

    async def handle_phonemes(self, request):
        self.phoneme_requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail_remaining > 0:
            self.fail_remaining -= 1
            return json_response({"error": "failing on purpose"}, status=503)
        try:
            text, lang = parse_request(await request.read())
            phonemes = await self.g2p(text, lang)
        except G2PError as e:
            return json_response({"error": str(e)}, status=e.status)
        return json_response({"phonemes": phonemes})

    async def g2p(self, text, lang):
        key = (text, lang)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        phonemes = await self._run_espeak(text, lang)
        self._cache[key] = phonemes
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return phonemes

    async def _run_espeak(self, text, lang):
        self.espeak_runs += 1
        # The text goes on stdin so that a text starting with "-" is never read as an option.
        process = await asyncio.create_subprocess_exec(
            self.espeak, "-q", "--ipa", "--sep=_", "-v", lang,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate(text.encode())
        if process.returncode != 0:
            if b"voice does not exist" in err:
                raise G2PError(f"unknown language {lang!r}", status=400)
            raise G2PError(f"espeak-ng failed: {err.decode(errors='replace').strip()}", status=500)
        return split_phonemes(out.decode())


def parse_request(body):
    """The ``(text, lang)`` of a request body; G2PError(400) saying what is wrong otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise G2PError(f"body is not JSON: {e}", status=400) from e
    if not isinstance(data, dict):
        raise G2PError("body must be a JSON object {text, lang}", status=400)
    text, lang = data.get("text"), data.get("lang", "en")
    if not isinstance(text, str) or not text.strip():
        raise G2PError("text must be a non-empty string", status=400)
    if len(text) > MAX_TEXT_LENGTH:
        raise G2PError(f"text is longer than {MAX_TEXT_LENGTH} characters", status=400)
    try:
        check_lang(lang)
    except ValueError as e:
        raise G2PError(str(e), status=400) from e
    return text, lang


async def start(service, *, host, port):
    """Start serving ``service``; returns (runner, asyncio server, bound port)."""
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(service.accept(runner.server), host, port, reuse_address=True)
    return runner, server, server.sockets[0].getsockname()[1]


async def stop(runner, server):
    server.close()
    await runner.cleanup()


def serve(service, *, host, port, on_ready):
    """Serve until interrupted; ``on_ready(url)`` is called once the socket is listening."""

    async def main():
        runner, server, bound = await start(service, host=host, port=port)
        on_ready(f"http://{host}:{bound}")
        try:
            await asyncio.Event().wait()
        finally:
            await stop(runner, server)

    asyncio.run(main())


class ServerThread:
    """The service on a loopback port in a background thread, for tests and benchmarks."""

    def __init__(self, service, *, host="127.0.0.1", port=0):
        self.service = service
        self._host, self._port = host, port
        self._ready = threading.Event()
        self._loop = None
        self._thread = threading.Thread(target=self._run, name="phoneme-server", daemon=True)
        self.url = None

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the phoneme server did not start within 10 s")
        return self

    def __exit__(self, *exc_info):
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def _run(self):
        async def main():
            self._loop = asyncio.get_running_loop()
            self._stopping = asyncio.Event()
            runner, server, bound = await start(self.service, host=self._host, port=self._port)
            self.url = f"http://{self._host}:{bound}"
            self._ready.set()
            await self._stopping.wait()
            await stop(runner, server)

        asyncio.run(main())
