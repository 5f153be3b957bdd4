"""OpenTelemetry spans for store calls: one parent named like the robot's, phases as children.

Phases tile their parent: one clock reading ends a phase and starts the next, so the time spent
in tracing itself is attributed to a phase instead of showing up as unexplained gaps.
"""

import time
from contextlib import contextmanager

from opentelemetry import trace

tracer = trace.get_tracer("robotperf.sessions")


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
        phases = Phases(parent)
        try:
            yield phases
        finally:
            phases.end()
