"""A local Redis Cluster on loopback: 3 primaries and 3 replicas (Redis 7), for trying
``REDIS_CLUSTER_URL`` and for the tests that run on a cluster.

Standard library only (it runs before the virtualenv exists). Each node is a ``redis-server
--cluster-enabled yes`` of its own under DIR/<port>/, recorded by its pid; ``stop`` stops those
pids and nothing else.

Usage: redis_cluster.py start DIR [--port 7101]   prints the seed URL (redis://127.0.0.1:7101)
       redis_cluster.py start DIR --port 0        on ports nothing else uses
       redis_cluster.py stop DIR
"""

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NODES = 6  # 3 primaries, each with one replica


class LocalCluster:
    """Six cluster nodes on ``port`` .. ``port + 5``, their files under ``directory``."""

    def __init__(self, directory, port=7101, *, extra_args=()):
        self.directory = Path(directory)
        self.ports = [port + i for i in range(NODES)]
        self.extra_args = tuple(extra_args)
        self.processes = {}

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node_dir(self, port):
        return self.directory / str(port)

    def start_node(self, port):
        """Start (or restart, with its cluster config kept) the node on ``port``."""
        data = self.node_dir(port)
        data.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", "1000", "--dir", str(data)),
                *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
        )
        (data / "pid").write_text(str(process.pid))
        self.processes[port] = process
        _wait(lambda: _cli(port, "PING") == "PONG", f"node {port} did not start")

    def start(self):
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (scripts/ensure-system-packages)")
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.wait_ok()
        return self

    def wait_ok(self, timeout=30):
        """Until every running node says the cluster is ok and every replica is in sync."""

        def ready():
            for port, process in self.processes.items():
                if process.poll() is not None:
                    continue
                if "cluster_state:ok" not in _cli(port, "CLUSTER", "INFO"):
                    return False
                info = _cli(port, "INFO", "replication")
                if "role:slave" in info and "master_link_status:up" not in info:
                    return False
            return True

        _wait(ready, "the cluster did not become ok", timeout)

    def primaries(self):
        """Ports of the running primaries."""
        return [
            port
            for port, process in self.processes.items()
            if process.poll() is None and "role:master" in _cli(port, "INFO", "replication")
        ]

    def replica_of(self, primary):
        """Port of a running replica of the primary on ``primary``."""
        for port, process in self.processes.items():
            if process.poll() is None and port != primary:
                info = _cli(port, "INFO", "replication")
                if f"master_port:{primary}" in info:
                    return port
        raise LookupError(f"no replica of {primary}")

    def kill_node(self, port):
        """SIGKILL the node on ``port``: what it held and had not replicated is gone."""
        process = self.processes[port]
        process.kill()
        process.wait()

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes.clear()


def free_port(nodes=NODES):
    """A port from which ``nodes`` loopback ports, and their cluster bus ports (+10000), are
    free: a cluster for a test or a benchmark beside any other on the machine."""
    for _ in range(200):
        base = random.randrange(20000, 30000)
        if all(_free(port) and _free(port + 10000) for port in range(base, base + nodes)):
            return base
    raise RuntimeError("no free range of loopback ports for a cluster")


def _free(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cli(port, *command):
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=5
    )
    return result.stdout.strip()


def _wait(condition, message, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (subprocess.TimeoutExpired, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(message)


def stop_recorded(directory):
    """Stop every node recorded under ``directory`` (by its pid file), and forget its files."""
    for pid_file in Path(directory).glob("*/pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        shutil.rmtree(pid_file.parent, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory")
    parser.add_argument("--port", type=int, default=7101)
    options = parser.parse_args(argv)
    stop_recorded(options.directory)
    if options.action == "start":
        port = options.port or free_port()
        cluster = LocalCluster(options.directory, port).start()
        print(cluster.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
