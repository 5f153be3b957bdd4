"""Make sure a Redis answers at a URL; start a throwaway local one when none does.

Standard library only: it runs before the virtualenv exists. Usage: ensure_redis.py URL VAR_DIR
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit


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


def main(url, var_dir):
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if ping(host, port, parts.password):
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
    data_dir = os.path.join(var_dir, "redis")
    os.makedirs(data_dir, exist_ok=True)
    command = [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]
    command += ["--daemonize", "yes", "--dir", data_dir, "--logfile", "redis.log"]
    command += ["--pidfile", os.path.join(data_dir, "redis.pid")]
    if parts.password:
        command += ["--requirepass", parts.password]
    subprocess.run(command, check=True)
    for _ in range(50):
        if ping(host, port, parts.password):
            print(f"started redis-server on {host}:{port} (data in {data_dir})", file=sys.stderr)
            return 0
        time.sleep(0.1)
    log = os.path.join(data_dir, "redis.log")
    print(f"redis-server did not answer on {host}:{port}; see {log}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
