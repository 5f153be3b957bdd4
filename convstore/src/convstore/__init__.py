"""convstore: a tutoring robot's conversations in Redis, fast to load at any history length.

A state hash, a turn list and a shared bot_config per conversation, written by Lua scripts;
`ConversationStore` (redis-py) and `AsyncConversationStore` (redis.asyncio) drive one sans-IO
core. See README.md.
"""

from convstore.codec import Codec, JsonSerializer, Lz4Compressor
from convstore.exceptions import (
    ArchiveConflict,
    CodecError,
    CorruptSession,
    NotReplicated,
    SessionBusy,
    SessionExists,
    SessionNotFound,
    StaleRevision,
    StoreError,
    StoreFull,
    StoreOverloaded,
    StoreUnavailable,
)
from convstore.keys import LAYOUT_VERSION, KeyLayout
from convstore.latency import MinuteLatency, read_latency
from convstore.observe import CallRecord, add_observer, remove_observer
from convstore.slowlog import (
    SlowCall,
    SlowCallLog,
    disable_slow_log,
    enable_slow_log,
    read_slow_calls,
)
from convstore.store import AsyncConversationStore, ConversationStore

__version__ = "1.1.0"

__all__ = [
    "LAYOUT_VERSION",
    "ArchiveConflict",
    "AsyncConversationStore",
    "CallRecord",
    "Codec",
    "CodecError",
    "ConversationStore",
    "CorruptSession",
    "JsonSerializer",
    "KeyLayout",
    "Lz4Compressor",
    "MinuteLatency",
    "NotReplicated",
    "SessionBusy",
    "SessionExists",
    "SessionNotFound",
    "SlowCall",
    "SlowCallLog",
    "StaleRevision",
    "StoreError",
    "StoreFull",
    "StoreOverloaded",
    "StoreUnavailable",
    "__version__",
    "add_observer",
    "disable_slow_log",
    "enable_slow_log",
    "read_latency",
    "read_slow_calls",
    "remove_observer",
]
