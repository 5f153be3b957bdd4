"""Private redis-server processes for the tests that need Redis in another shape: one to kill,
to restart empty, or to fill up (``maxmemory``). Each runs on a free loopback port and is
stopped by its own pid, never by a command sent to a shared server."""

import signal
import subprocess
import time

import redis

from scripts.served_stack import free_port


class RedisServer:
    """A redis-server of a test's own, started with ``args`` (e.g. ``--maxmemory 2mb``)."""

    def __init__(self, directory, *args):
        self.directory, self.args = directory, args
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
            raise RuntimeError(f"redis-server on port {self.port} did not start")
        finally:
            client.close()

    def kill(self):
        """Stop it at once (SIGKILL): whatever it held is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart_empty(self):
        """Kill it and start it again on the same port with nothing in it."""
        self.kill()
        return self.start()

    def client(self):
        return redis.Redis.from_url(self.url)

    def pause(self):
        """Stop it answering (SIGSTOP) without closing its connections, as a stalled server."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        """Let a paused server answer again (a no-op on one that is not running)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
