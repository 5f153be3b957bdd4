"""Tier 1 of the phoneme cache: a least-recently-used map bounded by entries and by bytes."""

import sys
import threading
from collections import OrderedDict

# Bytes an entry costs beyond its key and value objects: the OrderedDict's hash slot and
# linked-list node. Measured by the tier-1 memory benchmark (benchmarks/phonemes.py).
ENTRY_OVERHEAD = 192


def entry_size(key, value):
    """Approximate bytes of one tier-1 entry; phoneme strings are interned, so shared."""
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD


class BoundedLRU:
    """A least-recently-used map bounded by entry count and by bytes; safe across threads."""

    def __init__(self, *, max_entries, max_bytes):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a tier-1 cache needs max_entries >= 1 and max_bytes >= 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._data)

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value):
        size = entry_size(key, value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= entry_size(key, old)
            self._data[key] = value
            self.bytes += size
            while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
                old_key, old_value = self._data.popitem(last=False)
                self.bytes -= entry_size(old_key, old_value)

    def discard(self, key):
        with self._lock:
            value = self._data.pop(key, None)
            if value is not None:
                self.bytes -= entry_size(key, value)

    def _after_fork(self):
        self._lock = threading.Lock()
