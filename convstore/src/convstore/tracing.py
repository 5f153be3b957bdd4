"""OpenTelemetry spans for store calls: one parent named like the robot's, phases as children.

Phases tile their parent: one clock reading ends a phase and starts the next, so the time spent
in tracing itself is attributed to a phase instead of showing up as unexplained gaps.
"""

from __future__ import annotations

import contextvars
import itertools
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from convstore import observe
from convstore.observe import CallRecord

try:  # optional: without opentelemetry-api installed, no span is ever made
    from opentelemetry import trace
except ImportError:  # pragma: no cover - an install without the otel extra
    trace = None  # type: ignore[assignment]  # the module, or None without the otel extra

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

tracer: Tracer | None = trace.get_tracer("convstore") if trace is not None else None

type Marks = list[tuple[str | None, int]]
"""``(phase, perf_counter_ns)`` of one call, in order; the last one ``(None, end)``."""
type Calls = list[tuple[str, Marks]]
"""``(span name, marks)`` of each call recorded."""
# Set only inside `recording_phases()` (the admin's load profile): elsewhere it is None, and a
# store call pays one ContextVar lookup (~20 ns) for it.
_recorder: contextvars.ContextVar[Calls | None] = contextvars.ContextVar(
    "robotperf_phase_recorder", default=None
)


class Phase(Protocol):
    """What a traced block is given: call it with a phase's name to start that phase."""

    def __call__(self, name: str) -> None: ...

    def end(self) -> None: ...


class Phases:
    """The phases of one call as child spans of its span."""

    __slots__ = ("_context", "_current", "_tracer")

    def __init__(self, parent: Span, tracer: Tracer) -> None:
        self._context = trace.set_span_in_context(parent)
        self._current: Span | None = None
        self._tracer = tracer

    def __call__(self, name: str) -> None:
        """End the running phase, if any, and start the phase ``name`` at the same instant."""
        now = time.time_ns()
        if self._current is not None:
            self._current.end(end_time=now)
        self._current = self._tracer.start_span(name, context=self._context, start_time=now)

    def end(self) -> None:
        if self._current is not None:
            self._current.end()
            self._current = None


class NoPhases:
    """Phases when no OpenTelemetry SDK is installed: spans would be thrown away, unmade."""

    __slots__ = ()

    def __call__(self, name: str) -> None:
        pass

    def end(self) -> None:
        pass


NO_PHASES = NoPhases()


class RecordingPhases:
    """Phases (spans or none) that also note when each one starts and when the last one ends."""

    __slots__ = ("_inner", "marks")

    def __init__(self, inner: Phase, name: str, calls: Calls) -> None:
        self._inner = inner
        self.marks: Marks = []
        calls.append((name, self.marks))

    def __call__(self, name: str) -> None:
        self.marks.append((name, time.perf_counter_ns()))
        self._inner(name)

    def end(self) -> None:
        self._inner.end()
        self.marks.append((None, time.perf_counter_ns()))


def _sdk_installed() -> bool:
    # Without an SDK the API hands out no-op spans, which still cost ~17 µs a call in context
    # bookkeeping: a store call skips them. Checked per call, as an SDK may be set up later.
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class traced:
    """A span ``name`` around the block; the block marks its phases by calling what it is given.

    When observers listen (observe.py), the call's phases are also timed and handed to them as
    a CallRecord once the block ends, with ``window`` and ``size`` (the raw ``bytes`` field of
    the state, set by the block once it has read it: parsed only when someone observes).
    """

    __slots__ = ("_cid", "_name", "_observed", "_phases", "_span", "_started", "size", "window")

    def __init__(self, name: str, conversation_id: str, window: int | None = None) -> None:
        self._name, self._cid, self.window = name, conversation_id, window
        self.size: bytes | None = None

    def __enter__(self) -> Phase:
        calls = _recorder.get()
        self._span: AbstractContextManager[Span] | None
        phases: Phase
        if tracer is not None and _sdk_installed():
            self._span = tracer.start_as_current_span(self._name)
            phases = Phases(self._span.__enter__(), tracer)
        else:
            self._span, phases = None, NO_PHASES
        self._phases = phases if calls is None else RecordingPhases(phases, self._name, calls)
        self._observed: Calls | None = None
        if observe.observing():
            self._observed = []
            self._phases = RecordingPhases(self._phases, self._name, self._observed)
            self._started = time.perf_counter_ns()
        return self._phases

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._phases.end()
        # The span ends first: the observers' time is theirs, not an unexplained part of it.
        handled = None if self._span is None else self._span.__exit__(exc_type, exc, traceback)
        if self._observed is not None:
            self._notify(None if exc_type is None else exc_type.__name__)
        return handled

    def _notify(self, error: str | None) -> None:
        # Marks are (phase, start) in order, then (None, end): each phase lasts until the next.
        ((_, marks),) = self._observed or []
        phases = tuple(
            (name, (after - at) / 1e9)
            for (name, at), (_, after) in itertools.pairwise(marks)
            if name is not None
        )
        seconds = (marks[-1][1] - self._started) / 1e9
        size = int(self.size) if self.size is not None and self.size.isdigit() else None
        record = CallRecord(self._name, self._cid, seconds, error, phases, self.window, size)
        observe.notify(record)


@contextmanager
def recording_phases() -> Iterator[Calls]:
    """Record the phases of the store calls made in this context (thread, task) in the block.

    Yields a list that fills with one ``(span name, marks)`` per call; marks are
    ``(phase, perf_counter_ns)`` in order, the last ``(None, end)``. Uses the same phase calls
    as the spans, with or without an OpenTelemetry SDK installed.
    """
    calls: Calls = []
    token = _recorder.set(calls)
    try:
        yield calls
    finally:
        _recorder.reset(token)
