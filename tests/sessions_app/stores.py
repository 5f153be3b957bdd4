"""Both stores behind one face, so that the store's tests run against each.

The async store is driven from test threads by one event loop of its own, in a thread: calls
from several test threads are concurrent tasks on that loop, as in the asyncio robot.
"""

import asyncio
import threading
from contextlib import contextmanager

from sessions_app.store import get_async_store, get_store

CALLS = ("load", "save", "append_turns", "update_state", "delete", "size_breakdown")


class AsyncStoreFromThreads:
    """The async store's calls made blocking; everything else read from the sync store."""

    def __init__(self):
        self.store = get_async_store()
        self.sync = get_store()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def __getattr__(self, name):
        if name not in CALLS:
            return getattr(self.sync, name)
        call = getattr(self.store, name)

        def blocking(*args, **kwargs):
            future = asyncio.run_coroutine_threadsafe(call(*args, **kwargs), self.loop)
            return future.result(timeout=60)

        return blocking

    def close(self):
        asyncio.run_coroutine_threadsafe(self.store.aclose(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@contextmanager
def store_of_kind(kind):
    """The sync store, or the async one driven from threads ("sync" or "async"): a store
    fixture parametrized by kind yields from this."""
    if kind == "sync":
        yield get_store()
        return
    both = AsyncStoreFromThreads()
    try:
        yield both
    finally:
        both.close()
