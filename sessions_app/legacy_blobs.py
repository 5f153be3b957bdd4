"""The robot's legacy blobs and the first release's one-doc states, as the operations find,
measure and move them (the store reads both transparently: convstore.legacy)."""

from convstore import keys as fields
from convstore import legacy
from convstore.protocol import Command
from sessions_app import indexes
from sessions_app.maintenance import conversation_keys, scan_keys


def scan_legacy(store, cursor=0, *, batch=500):
    """One SCAN step over the legacy blobs: (next cursor, 0 at the end; their ids)."""
    ((cursor, found),) = store.ask([Command("scan", (cursor, store.keys.legacy_pattern, batch))])
    return cursor, [store.keys.cid_from_legacy(key.decode()) for key in found]


def legacy_size(store, conversation_id):
    """Bytes of the legacy blob a migration would move: 0 when there is none to move."""
    state_key, _ = conversation_keys(store, conversation_id)
    legacy_key = store.keys.legacy(conversation_id)
    size, split = store.ask(
        [Command("strlen", (legacy_key,), legacy_key), Command("exists", (state_key,))]
    )
    return 0 if split else size


def legacy_totals(store, *, batch=500):
    """(blobs, bytes, keys of another type) of the legacy blobs still in Redis, found by SCAN:
    a key of another type is no blob, but `load` of its id is a CorruptSession."""
    blobs, size, wrong_type = 0, 0, []
    for legacy_keys in scan_keys(store, store.keys.legacy_pattern, batch=batch):
        replies = store.send([Command("strlen", (key,)) for key in legacy_keys])
        for key, reply in zip(legacy_keys, replies, strict=True):
            if isinstance(reply, int):
                blobs, size = blobs + 1, size + reply
            else:
                wrong_type.append(indexes.shown(key))
    return blobs, size, wrong_type


def migrate_legacy(store, conversation_id):
    """Move a legacy blob to the split layout; the bytes of the blob moved (0: none)."""
    fields.check_cid(conversation_id)
    return store.run(legacy.migrate(store.core, conversation_id))


def split_docs(store, conversation_ids, *, dry_run=False):
    """Store each first-release state (one doc) among these as one field per key; how many."""
    keys = [store.keys.state(cid) for cid in conversation_ids]
    found = store.ask([Command("hexists", (key, fields.DOC), key) for key in keys])
    stored_as_doc = [cid for cid, doc in zip(conversation_ids, found, strict=True) if doc]
    if not dry_run:
        for cid in stored_as_doc:
            store.run(legacy.split_doc(store.core, cid))
    return len(stored_as_doc)
