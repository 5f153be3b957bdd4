"""OpenTelemetry spans for store calls: one parent named like the robot's, phases as children.

Phases tile their parent: one clock reading ends a phase and starts the next, so the time spent
in tracing itself is attributed to a phase instead of showing up as unexplained gaps.
"""

import contextvars
import time
from contextlib import contextmanager

try:  # optional: without opentelemetry-api installed, no span is ever made
    from opentelemetry import trace
except ImportError:  # pragma: no cover - an install without the otel extra
    trace = None

tracer = trace.get_tracer("convstore") if trace is not None else None
# Set only inside `recording_phases()` (the admin's load profile): elsewhere it is None, and a
# store call pays one ContextVar lookup (~20 ns) for it.
_recorder = contextvars.ContextVar("robotperf_phase_recorder", default=None)


class Phases:
    """The phases of one call as child spans of its span."""

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


class NoPhases:
    """Phases when no OpenTelemetry SDK is installed: spans would be thrown away, unmade."""

    __slots__ = ()

    def __call__(self, name):
        pass

    def end(self):
        pass


NO_PHASES = NoPhases()


class RecordingPhases:
    """Phases (spans or none) that also note when each one starts and when the last one ends."""

    __slots__ = ("_inner", "marks")

    def __init__(self, inner, name, calls):
        self._inner = inner
        self.marks = []
        calls.append((name, self.marks))

    def __call__(self, name):
        self.marks.append((name, time.perf_counter_ns()))
        self._inner(name)

    def end(self):
        self._inner.end()
        self.marks.append((None, time.perf_counter_ns()))


def _sdk_installed():
    # Without an SDK the API hands out no-op spans, which still cost ~17 µs a call in context
    # bookkeeping: a store call skips them. Checked per call, as an SDK may be set up later.
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class traced:
    """A span ``name`` around the block; the block marks its phases by calling what it is given."""

    __slots__ = ("_name", "_phases", "_span")

    def __init__(self, name):
        self._name = name

    def __enter__(self):
        calls = _recorder.get()
        if _sdk_installed():
            self._span = tracer.start_as_current_span(self._name)
            phases = Phases(self._span.__enter__())
        else:
            self._span, phases = None, NO_PHASES
        self._phases = phases if calls is None else RecordingPhases(phases, self._name, calls)
        return self._phases

    def __exit__(self, *exc_info):
        self._phases.end()
        if self._span is not None:
            return self._span.__exit__(*exc_info)
        return None


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
