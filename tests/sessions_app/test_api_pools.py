"""The session API under a threaded WSGI server (runserver's, as gunicorn's gthread workers):
each request runs the async view on an event loop of its own, and must not leave a Redis pool
behind. Connections are counted in Redis (CLIENT LIST) and matched to this process's sockets."""

import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

from sessions_app import services
from sessions_app.store import get_store
from tests.sessions_app.factories import save_session

TOKEN = "robot-token"
REQUESTS = 250


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def threaded_server(settings):
    settings.ROBOTPERF_API = {"TOKEN": TOKEN}
    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def own_tcp_ports():
    """Local ports of this process's TCP sockets (its fds matched to /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def own_redis_connections(redis_client):
    """This process's connections to the tests' Redis, as Redis lists its clients."""
    ports = own_tcp_ports()
    return [
        client
        for client in redis_client.client_list()
        if int(client["addr"].rsplit(":", 1)[1]) in ports
    ]


def test_a_threaded_wsgi_server_keeps_one_bounded_pool(threaded_server, redis_client):
    save_session(get_store(), "c1", turns=30)
    http = urllib3.PoolManager(maxsize=8, retries=False)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def get(_):
        response = http.request("GET", f"{threaded_server}/api/sessions/c1", headers=headers)
        return response.status, response.headers["Server-Timing"]

    get(0)
    # Earlier tests of this process may have left connections in the shared pool.
    connections_before = len(own_redis_connections(redis_client))
    fds_before = len(os.listdir("/proc/self/fd"))
    # Nothing may rely on the garbage collector to close what a request opened.
    gc.disable()
    try:
        with ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(get, range(REQUESTS)))
        connections = own_redis_connections(redis_client)
        fds_after = len(os.listdir("/proc/self/fd"))
    finally:
        gc.enable()
        http.clear()

    assert {status for status, _ in answers} == {200}
    assert all("redis;dur=" in timing for _, timing in answers)
    # The server's 8 threads share the process's pool: at most 8 more connections.
    assert len(connections) - connections_before <= 8, (connections_before, len(connections))
    # Besides those, this process holds both ends of the 8 HTTP keep-alive connections.
    assert fds_after - fds_before <= 8 + 1 + 2 * 8, (fds_before, fds_after)


@pytest.mark.django_db(transaction=True)
def test_under_wsgi_every_turn_includes_the_archived_ones(client, settings):
    settings.ROBOTPERF_API = {"TOKEN": TOKEN}
    save_session(get_store(), "c1", turns=30)
    services.trim_history("c1", keep=10)
    response = client.get(
        "/api/sessions/c1", {"window": "all"}, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    assert [turn["seq"] for turn in response.json()["history"]] == list(range(30))
    assert "archive;dur=" in response["Server-Timing"]
