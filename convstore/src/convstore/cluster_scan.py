"""A SCAN over every primary of a Redis Cluster, as the store's SCAN requests ask for it.

The cursor the caller sees is ``node cursor * SHARDS + primary``: the primaries are taken in the
order of the slots they serve, which a failover keeps (the replica that takes over serves the
same slots), and 0 still means both the start and the end.
"""

from typing import Any

from convstore.protocol import Batch, Command

SHARDS = 16384
"""There are never more primaries than slots."""


def primaries_in_slot_order(nodes: Any) -> list[Any]:
    """The primaries, in the order of the slots they serve: a SCAN's order, kept by a
    failover (the replica that takes over serves the same slots)."""
    order: dict[str, Any] = {}
    for slot in range(SHARDS):
        serving = nodes.slots_cache.get(slot)
        if serving and serving[0].name not in order:
            order[serving[0].name] = serving[0]
    return list(order.values())


def scan_request(batch: Batch) -> tuple[int, Any, Any] | None:
    """(cursor, match, count) when ``batch`` is one SCAN; None otherwise."""
    if len(batch) == 1 and isinstance(batch[0], Command) and batch[0].name == "scan":
        cursor, match, count = batch[0].args
        return int(cursor), match, count
    return None


def scan_reply(cursor: int, node_cursor: int, found: list[Any], shards: int) -> list[Any]:
    """The reply to a SCAN over every primary: the next composite cursor, 0 at the end."""
    shard = cursor % SHARDS
    if node_cursor:
        return [(node_cursor * SHARDS + shard, found)]
    return [(0 if shard + 1 >= shards else shard + 1, found)]
