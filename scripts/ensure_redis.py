"""Make sure a Redis answers at a URL; start a throwaway local one when none does, and stop it.

Standard library only: it runs before the virtualenv exists. A server it starts is recorded under
VAR_DIR/redis/<port>/ with the id of who asked (`--owner`, `make` passes its pid); `--stop` stops
only the servers recorded for that owner, so a Redis this script did not start is never touched.

Usage: ensure_redis.py [--owner ID] URL VAR_DIR
       ensure_redis.py --stop [--owner ID] VAR_DIR     (no --owner: every recorded server)
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

OWNER_FILE = "started-by"


def ping(host, port, password=None):
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def started_by(data_dir, owner):
    """Whether the server recorded in ``data_dir`` was started for ``owner``."""
    try:
        return (data_dir / OWNER_FILE).read_text().strip() == str(owner)
    except OSError:
        return False


def url_without_password(url):
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"


def redis_server_binary():
    found = shutil.which("redis-server")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    print("redis-server not found: installing the Debian package", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )
    return shutil.which("redis-server")


def start(url, var_dir, owner):
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    data_dir = (Path(var_dir) / "redis" / str(port)).resolve()
    if ping(host, port, parts.password):
        if not started_by(data_dir, owner):  # one this make started a moment ago is no news
            print(
                f"using the Redis already running at {host}:{port} ({url_without_password(url)});"
                " it is left running afterwards",
                file=sys.stderr,
            )
        return 0
    if host not in {"127.0.0.1", "localhost", "::1"}:
        print(f"no Redis answers at {host}:{port}; start it or set REDIS_URL", file=sys.stderr)
        return 1
    binary = redis_server_binary()
    if binary is None:
        print(
            "no redis-server: install it with: sudo apt-get install redis-server", file=sys.stderr
        )
        return 1
    # Absolute paths: the server changes into --dir before it opens the others.
    data_dir.mkdir(parents=True, exist_ok=True)
    log, pidfile = data_dir / "redis.log", data_dir / "redis.pid"
    command = [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]
    command += ["--daemonize", "yes", "--dir", str(data_dir), "--logfile", str(log)]
    command += ["--pidfile", str(pidfile)]
    if parts.password:
        command += ["--requirepass", parts.password]
    subprocess.run(command, check=True)
    # Recorded before it answers, so a --stop after a slow start still finds it.
    (data_dir / OWNER_FILE).write_text(f"{owner}\n")
    for _ in range(50):
        if ping(host, port, parts.password) and pidfile.exists():
            print(f"started redis-server on {host}:{port} (data in {data_dir})", file=sys.stderr)
            return 0
        time.sleep(0.1)
    print(f"redis-server did not answer on {host}:{port}; see {log}", file=sys.stderr)
    return 1


def stop(var_dir, owner):
    """Stop the servers recorded under var_dir for ``owner`` (None: all); 1 if one stays up."""
    status = 0
    for record in sorted(Path(var_dir).glob(f"redis/*/{OWNER_FILE}")):
        if owner is not None and record.read_text().strip() != owner:
            continue
        data_dir, port = record.parent, record.parent.name
        pid = read_pid(data_dir / "redis.pid")
        if pid is not None and is_redis_server(pid, port):
            os.kill(pid, signal.SIGTERM)
            if not wait_until_gone(pid):
                print(f"redis-server {pid} on port {port} did not stop", file=sys.stderr)
                status = 1
                continue
            print(f"stopped the redis-server started on port {port}", file=sys.stderr)
        record.unlink()
    return status


def read_pid(pidfile):
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def is_redis_server(pid, port):
    """Whether ``pid`` is still the redis-server we started on ``port`` (pids are reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    words = argv.replace("\0", " ").split()
    return "redis-server" in argv and any(w == port or w.endswith(f":{port}") for w in words)


def wait_until_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true", help="stop what --owner started")
    parser.add_argument("--owner", help="who starts or stops (default: the parent process)")
    parser.add_argument("args", nargs="+", metavar="URL VAR_DIR")
    options = parser.parse_args(argv)
    if options.stop:
        if len(options.args) != 1:
            parser.error("--stop takes VAR_DIR only")
        return stop(options.args[0], options.owner)
    if len(options.args) != 2:
        parser.error("expected URL VAR_DIR")
    return start(*options.args, options.owner or str(os.getppid()))


if __name__ == "__main__":
    sys.exit(main())
