"""Store calls are traced with spans named like the robot's, and the children explain the parent."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@pytest.fixture(scope="module")
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    # A batch processor, as in production: ending a span queues it, exporting happens elsewhere.
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    exporter.flush = provider.force_flush
    return exporter


def one_megabyte_session():
    steps = [
        {"prompt": f"Bước {i}: hãy đọc câu này", "expected": f"answer {i}"} for i in range(300)
    ]
    return {
        "conversation_id": "big",
        "bot_id": 1,
        "user_id": "u",
        "input_slots": {},
        "bot_config": {"scenario": steps, "system_prompt": "Tutor."},
        "record": {
            "LOOP_COUNT": [{"count": i % 3, "done": False} for i in range(300)],
            "HISTORY_QUESTION": [{"q": f"question {i} " * 8, "a": "x" * 60} for i in range(300)],
        },
        "history": [
            {"role": "user", "content": f"Tôi đang học tiếng Anh {i} " * 20} for i in range(1000)
        ],
    }


def children_of(spans, parent):
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_load_is_explained_by_its_children(store, exporter):
    store.save(one_megabyte_session())
    store.load("big")  # the bot_config is now cached in-process, as on the robot's hot path
    for _ in range(5):
        exporter.flush()
        exporter.clear()
        store.load("big", window=20)
        exporter.flush()
        spans = exporter.get_finished_spans()
        (parent,) = [s for s in spans if s.name == "robot-v2.load-conversation"]
        children = children_of(spans, parent)
        assert [s.name for s in children] == ["redis", "decode", "assemble"]
        covered = sum(s.end_time - s.start_time for s in children)
        if covered >= 0.95 * (parent.end_time - parent.start_time):
            return
    pytest.fail(f"children cover {covered / (parent.end_time - parent.start_time):.1%} of the load")


def test_writes_are_traced(store, exporter):
    store.save(one_megabyte_session())
    exporter.flush()
    exporter.clear()
    store.append_turns("big", [{"role": "user", "content": "hi"}])
    store.update_state("big", {"user_id": "v"}, expected_rev=1)
    exporter.flush()
    names = [s.name for s in exporter.get_finished_spans()]
    assert "robot-v2.append-turns" in names
    assert "robot-v2.update-state" in names
    (append,) = [s for s in exporter.get_finished_spans() if s.name == "robot-v2.append-turns"]
    assert [s.name for s in children_of(exporter.get_finished_spans(), append)] == [
        "encode",
        "redis",
    ]


def test_a_call_that_fails_half_way_still_ends_its_spans(exporter, settings, caplog):
    from sessions_app.store import StoreUnavailable, get_store

    settings.CACHES = {
        **settings.CACHES,
        "sessions": {
            **settings.CACHES["sessions"],
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {**settings.CACHES["sessions"]["OPTIONS"], "SOCKET_CONNECT_TIMEOUT": 0.5},
        },
    }
    exporter.flush()
    exporter.clear()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        get_store().load("c1")
    exporter.flush()
    names = [span.name for span in exporter.get_finished_spans()]
    assert names.count("robot-v2.load-conversation") == 1
    assert "redis" in names
    assert "Failed to detach context" not in caplog.text
