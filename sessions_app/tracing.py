"""OpenTelemetry spans for store calls: one parent named like the robot's, phases as children.

Phases tile their parent: one clock reading ends a phase and starts the next, so the time spent
in tracing itself is attributed to a phase instead of showing up as unexplained gaps.
"""

import contextvars
import time
from contextlib import contextmanager

from opentelemetry import trace

tracer = trace.get_tracer("robotperf.sessions")
# Set only inside `recording_phases()` (the admin's load profile): elsewhere it is None, and a
# store call pays one ContextVar lookup (~20 ns) for it.
_recorder = contextvars.ContextVar("robotperf_phase_recorder", default=None)


class Phases:
    __slots__ = ("_context", "_current")

    def __init__(self, parent):
        self._context = trace.set_span_in_context(parent)
        self._current = None

    def __call__(self, name):
        """End the running phase, if any, and start the phase ``name`` at the same instant."""
        now = time.time_ns()
        if self._current is not None:
            self._current.end(end_time=now)
        self._current = tracer.start_span(name, context=self._context, start_time=now)

    def end(self):
        if self._current is not None:
            self._current.end()
            self._current = None


@contextmanager
def traced(name):
    """A span ``name`` around the block; the block marks its phases by calling what it is given."""
    with tracer.start_as_current_span(name) as parent:
        calls = _recorder.get()
        phases = Phases(parent) if calls is None else RecordingPhases(parent, name, calls)
        try:
            yield phases
        finally:
            phases.end()


class RecordingPhases(Phases):
    """Phases that also note when each one starts and when the last one ends."""

    __slots__ = ("marks",)

    def __init__(self, parent, name, calls):
        super().__init__(parent)
        self.marks = []
        calls.append((name, self.marks))

    def __call__(self, name):
        self.marks.append((name, time.perf_counter_ns()))
        super().__call__(name)

    def end(self):
        super().end()
        self.marks.append((None, time.perf_counter_ns()))


@contextmanager
def recording_phases():
    """Record the phases of the store calls made in this context (thread, task) in the block.

    Yields a list that fills with one ``(span name, marks)`` per call; marks are
    ``(phase, perf_counter_ns)`` in order, the last ``(None, end)``. Uses the same phase calls
    as the spans, with or without an OpenTelemetry SDK installed.
    """
    calls = []
    token = _recorder.set(calls)
    try:
        yield calls
    finally:
        _recorder.reset(token)
