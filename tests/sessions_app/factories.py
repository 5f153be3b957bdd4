"""Small conversations for the operations' tests, written through the store's public API.

Each turn's content names its seq, so a test can tell which turn went where.
"""

from convstore.state_fields import is_state_field

BOT_CONFIG = {"scenario": {"id": "family-3", "steps": [1, 2, 3]}, "system_prompt": "Be kind."}


def make_turn(seq, *, size=0):
    role = "system" if seq == 0 else ("assistant" if seq % 2 else "user")
    return {
        "role": role,
        "content": f"turn {seq}" + " lorem" * size,
        "created_at": f"2025-03-03T08:{seq // 60 % 60:02d}:{seq % 60:02d}+00:00",
    }


def save_session(store, cid, *, turns, bot_id="bot-a", size=0):
    """Save a conversation of ``turns`` turns (each padded by ``size`` words); its history."""
    history = [make_turn(seq, size=size) for seq in range(turns)]
    store.save(
        {
            "conversation_id": cid,
            "bot_id": bot_id,
            "user_id": "user-1",
            "record": {"LOOP_COUNT": {"step_0001": 2}, "HISTORY_QUESTION": []},
            "bot_config": {**BOT_CONFIG, "bot": bot_id},
            "history": history,
        }
    )
    return history


def stored_bytes(client, store, cid):
    """What a conversation holds in Redis, measured: its state fields plus its turn items (what
    its ``bytes`` field and the bytes index must say)."""
    state_key = store.keys.state(cid)
    names = [n for n in client.hkeys(state_key) if is_state_field(n)]
    state = sum(client.hstrlen(state_key, name) for name in names)
    return state + sum(map(len, client.lrange(store.keys.turns(cid), 0, -1)))


def redis_contents(client, match="*"):
    """Every key matching ``match`` with its contents, read by type (DUMP bytes of a hash depend
    on its rehash state), for "nothing changed" checks."""
    read = {
        b"hash": client.hgetall,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"string": client.get,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
    }
    return {key: read[client.type(key)](key) for key in client.scan_iter(match)}
