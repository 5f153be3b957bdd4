"""Where a conversation's bytes are: each state field, the history, the shared bot_config, read
from Redis sizes (HSTRLEN, STRLEN) without decoding a value. A generator of the core's
protocol, taking the core (core.py).
"""

from convstore import keys as fields
from convstore import legacy
from convstore.protocol import (
    Batch,
    Command,
    Core,
    Operation,
    Script,
    SizeBreakdown,
    ask,
    int_field,
)
from convstore.state_fields import key_sizes


def size_breakdown(core: Core, cid: str) -> Operation[SizeBreakdown]:
    fields.check_cid(cid)
    keys = [core.keys.state(cid), core.keys.turns(cid)]
    batch: Batch = [Script("field_sizes", keys, [])]
    (sizes,) = yield from ask(batch)
    if not sizes:
        return (yield from legacy.legacy_breakdown(core, cid))
    turns, ttl = sizes[-2:]
    pairs = zip(sizes[:-2:2], sizes[1:-2:2], strict=True)
    parts = {name.decode(): size for name, size in pairs}
    meta = yield from _meta(core, keys[0])
    state, split = key_sizes({name.encode(): size for name, size in parts.items()})
    state_bytes = sum(state.values()) + parts.get(fields.DOC, 0)
    return {
        "layout": "split",
        "state": state_bytes,
        "fields": state,
        "split": split,
        "record": state.get("record", 0),
        "history": meta[fields.BYTES] - state_bytes,
        "bot_config": meta["bot_config"],
        "turns": turns,
        "total_turns": meta[fields.SEQ],
        "archived": meta[fields.ARCHIVED],
        "ttl": ttl,
    }


def _meta(core: Core, state_key: str) -> Operation[dict[str, int]]:
    names = (fields.BYTES, fields.SEQ, fields.ARCHIVED, fields.CFG)
    batch: Batch = [Command("hmget", (state_key, *names), state_key)]
    ((size, seq, archived, digest),) = yield from ask(batch)
    meta = {
        fields.BYTES: int_field(state_key, fields.BYTES, size),
        fields.SEQ: int_field(state_key, fields.SEQ, seq),
        fields.ARCHIVED: int_field(state_key, fields.ARCHIVED, archived or 0),
        "bot_config": 0,
    }
    if digest is not None:
        key = core.keys.bot_config(digest.decode())
        batch = [Command("strlen", (key,), key)]
        (meta["bot_config"],) = yield from ask(batch)
    return meta
