"""How a batch is queued on a redis-py pipeline (one Redis, or one node of a cluster): scripts
by EVALSHA, and a WAIT after each write script when the store waits for replicas.

A write's WAIT goes in the same pipeline, to the same node, right after its script: it costs
no round trip more, only the time the replicas take to acknowledge.
"""

import hashlib
from typing import Any

from convstore import scripts
from convstore.exceptions import NotReplicated
from convstore.protocol import Batch, Command, Script, writes

SHAS = {name: hashlib.sha1(scripts.source(name).encode()).hexdigest() for name in scripts.NAMES}

type Wait = tuple[int, int] | None
"""WAIT's arguments, (replicas, timeout in ms), or None when the store waits for none."""


def queue(pipe: Any, request: Command | Script) -> None:
    """Queue ``request`` on ``pipe`` (a pipeline, or anything with redis-py's commands)."""
    if isinstance(request, Script):
        args = (*request.keys, *request.args)
        pipe.evalsha(SHAS[request.name], len(request.keys), *args)
    else:
        getattr(pipe, request.name)(*request.args)


def waits_for(request: Command | Script, wait: Wait) -> bool:
    """Whether a WAIT follows ``request``: a write script, when replicas are awaited."""
    return bool(wait) and isinstance(request, Script) and writes([request])


def queue_all(pipe: Any, batch: Batch, wait: Wait) -> list[int]:
    """Queue ``batch`` on a redis-py pipeline; the positions of its WAITs among the replies."""
    waits = []
    for request in batch:
        queue(pipe, request)
        if wait and waits_for(request, wait):
            pipe.execute_command("WAIT", *wait)
            waits.append(len(pipe) - 1)
    return waits


def without_waits(replies: list[Any], waits: list[int]) -> tuple[list[Any], int | None]:
    """The replies without those of the WAITs at ``waits``, and the fewest replicas a WAIT
    counted (0 for a WAIT that failed); None when there was no WAIT."""
    if not waits:
        return replies, None
    skip = set(waits)
    counts = [replies[at] if isinstance(replies[at], int) else 0 for at in waits]
    return [reply for i, reply in enumerate(replies) if i not in skip], min(counts)


def fewest(a: int | None, b: int | None) -> int | None:
    """The fewer of two replica counts, either of them None when no WAIT was sent."""
    return b if a is None else a if b is None else min(a, b)


def replicated[T](result: T, acked: int | None, replicas: int, timeout: float) -> T:
    """``result``, or NotReplicated carrying it when fewer than ``replicas`` acknowledged the
    call's writes within ``timeout`` seconds."""
    if acked is not None and acked < replicas:
        raise NotReplicated(result, acked, replicas, timeout)
    return result
