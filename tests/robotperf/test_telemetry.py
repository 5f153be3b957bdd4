"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, a process's store calls arrive as spans
at a real OTLP/HTTP receiver on loopback; unset, no SDK provider is made (as before)."""

import os
import subprocess
import sys

from robotperf.telemetry import configure_tracing
from tests.robotperf.otlp import Receiver
from tests.robotperf.production import ROOT

STORE_CALLS = """
import django
django.setup()
from opentelemetry import trace
from sessions_app.store import get_store
store = get_store()
store.save({"conversation_id": "otel-1", "history": [{"role": "user", "content": "hi"}]})
store.load("otel-1", window=5)
store.delete("otel-1")
print(type(trace.get_tracer_provider()).__name__)
"""


def run_store_calls(**env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    environment.update(DJANGO_SETTINGS_MODULE="tests.settings", **env)
    done = subprocess.run(
        [sys.executable, "-c", STORE_CALLS],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_store_calls_are_exported_over_otlp_http_when_an_endpoint_is_set():
    with Receiver() as otlp:
        provider = run_store_calls(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url)
        # The process flushed its batch at exit: the spans are there once it has ended.
        spans = otlp.wait_for("robot-v2.load-conversation")

    assert provider == "TracerProvider"
    assert {path for path, _, _ in otlp.requests} == {"/v1/traces"}
    assert {kind for _, kind, _ in otlp.requests} == {"application/x-protobuf"}
    assert ("robotperf", "robot-v2.save-conversation", None) in spans
    load_phases = [name for _, name, parent in spans if parent == "robot-v2.load-conversation"]
    assert load_phases == ["redis", "decode", "assemble"]


def test_the_service_name_comes_from_the_environment_when_set():
    with Receiver() as otlp:
        run_store_calls(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url, OTEL_SERVICE_NAME="robot-web-7")
        spans = otlp.wait_for("robot-v2.load-conversation")
    assert {service for service, _, _ in spans} == {"robot-web-7"}


def test_nothing_is_made_without_an_endpoint():
    assert run_store_calls() == "ProxyTracerProvider"
    assert configure_tracing({}) is None
    assert configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is None
