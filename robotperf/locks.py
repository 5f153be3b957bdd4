"""Redis locks that keep two runs of one job from overlapping.

A lock carries a random token and an expiry; releasing checks the token atomically, so a run
never releases a lock that another run took after its own expired.
"""

import logging
from contextlib import contextmanager

from redis.exceptions import LockError

from sessions_app.store import get_store

log = logging.getLogger(__name__)


@contextmanager
def exclusive(name, *, timeout):
    """Hold the lock ``name`` for up to ``timeout`` seconds; yields False if another run has it."""
    store = get_store()
    lock = store.client.lock(store.keys.lock(name), timeout=timeout, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except LockError:
                log.warning("lock %s expired before the run ended; another run may overlap", name)
