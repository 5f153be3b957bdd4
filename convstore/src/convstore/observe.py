"""Observers of store calls: the one hook that metrics and a slow-call log hang on, so that the
library depends on neither.

Each finished call (load, save, append_turns, update_state) is handed to every observer as a
`CallRecord`: its name, conversation, duration, error kind and the durations of its phases (the
same phases its spans show), and for a load its window and the conversation's size. With no
observer added, a call pays one check of an empty list.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished store call."""

    call: str
    """The span's name: robot-v2.load-conversation, robot-v2.append-turns, ..."""
    conversation_id: str
    seconds: float
    error: str | None
    """The class name of the error it raised; None when it succeeded."""
    phases: tuple[tuple[str, float], ...]
    """(phase, seconds) in order: redis, decode, archive, assemble; encode, redis."""
    window: int | None = None
    """The turns a load asked for (None: every turn, or a call that is no load)."""
    size: int | None = None
    """Bytes of the conversation in Redis (its state's ``bytes`` field), when the call read it
    anyway (a load of a conversation in the split layout); None otherwise."""


Observer = Callable[[CallRecord], None]
_observers: list[Observer] = []
_lock = threading.Lock()


def add_observer(observer: Observer) -> None:
    """Hand every store call of this process to ``observer`` once it has ended. It runs in the
    caller's thread (or event loop): keep it short, and never let it block on I/O that can stall.
    """
    with _lock:
        _observers.append(observer)


def remove_observer(observer: Observer) -> None:
    with _lock:
        if observer in _observers:
            _observers.remove(observer)


def observing() -> bool:
    """Whether any observer is listening (what a call checks before it times its phases)."""
    return bool(_observers)


def notify(record: CallRecord) -> None:
    """Hand ``record`` to each observer; an observer that fails is logged, never the call's
    failure."""
    for observer in list(_observers):
        try:
            observer(record)
        except Exception:
            log.exception("store call observer %r failed", observer)
