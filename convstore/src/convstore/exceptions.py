"""Every error of the conversation store and its codec, in one place.

Library errors (redis-py, orjson, zstd) are mapped to these at one boundary, ``raise ... from e``.
"""


class CodecError(ValueError):
    """A value the codec cannot encode or decode."""


class StoreError(Exception):
    """Base class of the conversation store's errors."""


class SessionNotFound(StoreError):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id!r} does not exist")
        self.conversation_id = conversation_id


class StaleRevision(StoreError):
    """A state write carried a revision that another writer has moved on from."""

    def __init__(self, conversation_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"conversation {conversation_id!r} is at revision {actual}, not {expected}: "
            "load it again and reapply the change"
        )
        self.conversation_id = conversation_id
        self.expected = expected
        self.actual = actual


class CorruptSession(StoreError):
    """A stored value cannot be decoded; it is left in place for an operator to inspect."""

    def __init__(self, key: str, reason: object) -> None:
        super().__init__(f"corrupt value at Redis key {key!r}: {reason}")
        self.key = key


class StoreUnavailable(StoreError):
    """Redis did not answer, or cannot serve now."""

    maybe_written: bool = False
    """True when a write was sent and its answer lost: it may have happened."""


class StoreOverloaded(StoreUnavailable):
    """Every pooled connection stayed busy past the pool's wait: nothing was sent."""


class NotReplicated(StoreError):
    """The write was applied on the primary, but fewer replicas than the store waits for
    (``wait_replicas``) acknowledged it within ``wait_timeout``: a failover now could lose it.

    ``applied`` is always True; ``result`` is what the call returned (its new rev, its seqs).
    """

    applied = True

    def __init__(self, result: object, acked: int, wanted: int, timeout: float) -> None:
        super().__init__(
            f"the write was applied, but only {acked} of {wanted} replicas acknowledged it "
            f"within {timeout} s: it is not yet safe from a failover (do not repeat it)"
        )
        self.result, self.acked, self.wanted = result, acked, wanted


class StoreFull(StoreUnavailable):
    """Redis is out of memory (``maxmemory`` with ``noeviction``) and refused the write."""


class SessionExists(StoreError):
    """The conversation is live in Redis, where an operation needs it absent."""

    def __init__(self, conversation_id: str, reason: str) -> None:
        super().__init__(f"conversation {conversation_id!r} {reason}")
        self.conversation_id = conversation_id


class ArchiveConflict(StoreError):
    """The archive already holds other turns under these seqs: nothing was archived, and the
    turns stay in Redis."""

    def __init__(self, conversation_id: str, incarnation: str, seqs: list[int]) -> None:
        shown = ", ".join(map(str, seqs[:10])) + (" ..." if len(seqs) > 10 else "")
        super().__init__(
            f"conversation {conversation_id!r} (incarnation {incarnation!r}): the archive holds "
            f"other turns under seq {shown}; they stay in Redis"
        )
        self.conversation_id = conversation_id
        self.seqs = seqs


class SessionBusy(StoreError):
    """Another operation holds the conversation, or wrote it while an operation read it."""

    def __init__(
        self, conversation_id: str, reason: str = "was written while it was archived"
    ) -> None:
        super().__init__(f"conversation {conversation_id!r} {reason}")
        self.conversation_id = conversation_id
