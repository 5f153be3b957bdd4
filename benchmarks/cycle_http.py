"""The message cycle through the example robot (examples/robot/robot.py) over HTTP: the robot
runs as a process of its own, one event loop, on the library alone; messages arrive at a Poisson
rate (the open loop of cycle_open.py) as `POST /conversations/<id>/messages` from an aiohttp
client in this process, each timed from its arrival to its answer."""

import asyncio
import gc
import subprocess
import sys
from pathlib import Path

import aiohttp

from benchmarks.cycle_closed import forked, url
from benchmarks.cycle_open import IN_FLIGHT, SECONDS, _open_loop
from scripts.served_stack import free_port

RATE = 300
ROBOT = Path(__file__).resolve().parent.parent / "examples" / "robot" / "robot.py"


def start_robot():
    """The example robot on a free loopback port, on the benchmark's Redis; (process, base)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROBOT), "--redis-url", url(), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return process, f"http://127.0.0.1:{port}"


async def _wait_up(base, process):
    async with aiohttp.ClientSession(base) as http:
        for _ in range(200):
            if process.poll() is not None:
                raise RuntimeError(f"the example robot exited: {process.stderr.read().decode()}")
            try:
                async with http.get(f"{base}/conversations/none"):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the example robot did not answer")


async def _run(base, size, names, rate, seconds):
    limits = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(base, connector=limits) as http:
        body = {"text": size.user_turn()["content"], "step": size.step}

        async def message(name):
            async with http.post(f"/conversations/{name}/messages", json=body) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"HTTP {answer.status}: {(await answer.text())[:200]}")
                await answer.read()

        # Warm-up: the robot's connections to Redis and the client's to the robot.
        await asyncio.gather(*(message(name) for name in names[:64]))
        return await _open_loop(message, names, rate, seconds, rate)


def _client(base, size, names, rate, seconds):
    """The users' side (forked): set up like the robot (`gc.freeze()`), so that its own
    collections of what the benchmark's process holds are not counted against the robot."""
    gc.freeze()
    return asyncio.run(_run(base, size, names, rate, seconds))


def measure(size, conversations, rate=RATE, seconds=SECONDS):
    """The open-loop run at ``rate`` through the robot over HTTP, on the first ``conversations``
    store-layout copies of ``size`` (a cycle_open.Run)."""
    names = [size.cid(i) for i in range(conversations)]
    process, base = start_robot()
    try:
        asyncio.run(_wait_up(base, process))
        (run,) = forked(_client, [(base, size, names, rate, seconds)])
        return run
    finally:
        process.terminate()
        process.wait(timeout=10)
