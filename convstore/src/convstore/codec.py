"""The store's value codec: JSON through orjson, lz4 above a minimum length, the one format of
a stored turn (``<seq>|payload``), and the digest that names a bot_config.

Nothing here pickles. The Django project wraps the serializer and compressor as django-redis
classes (sessions_app/codec.py), so a cache alias and the store encode alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any, Protocol

import lz4.frame
import orjson

from convstore.exceptions import CodecError

try:  # the first release compressed with zstd: read, never written
    import pyzstd
except ImportError:  # pragma: no cover - an install without the zstd extra
    pyzstd = None  # type: ignore[assignment]  # the module, or None without the zstd extra

LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _encode_other(value: object) -> str:
    # orjson handles datetimes and UUIDs itself; Decimals go out as strings, as
    # DjangoJSONEncoder writes them, so nothing is rounded through a float.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode a value of type {type(value).__qualname__}")


def _dumps(value: Any, option: int) -> bytes:
    try:
        encoded = orjson.dumps(value, default=_encode_other, option=option)
    except orjson.JSONEncodeError as e:
        raise CodecError(f"cannot encode session value: {e}") from e
    # orjson writes NaN and Infinity as null, which would change the value silently; only a
    # document with a null in it can hold one, so only those are walked.
    if b"null" in encoded and _has_non_finite(value):
        raise CodecError("cannot encode session value: NaN and Infinity are not JSON")
    return encoded


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    return False


def canonical_json(value: Any) -> bytes:
    """Sorted-key JSON: equal values give equal bytes, so a digest can name the content."""
    return _dumps(value, orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)


def bot_config_digest(bot_config: dict[str, Any]) -> str:
    """The name of a bot_config's content: sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(bot_config)).hexdigest()


def without_non_finite(value: Any) -> Any:
    """``value`` with NaN and Infinity replaced by None: how a legacy blob's floats move on."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: without_non_finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_non_finite(item) for item in value]
    return value


class JsonSerializer:
    """JSON through orjson; non-str dict keys become strings, as the stdlib did."""

    def dumps(self, value: Any) -> bytes:
        return _dumps(value, orjson.OPT_NON_STR_KEYS)

    def loads(self, value: bytes) -> Any:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
        # Legacy blobs written by the stdlib may hold NaN/Infinity, which orjson refuses.
        try:
            return json.loads(value)
        except (ValueError, TypeError) as e:
            raise CodecError(f"cannot decode stored value: {e}") from e
        except RecursionError as e:
            raise CodecError("cannot decode stored value: nested too deeply") from e


class Lz4Compressor:
    """lz4 frames above a minimum length, kept only when they save a minimum fraction.

    lz4 decompresses about five times faster than zstd at nearly its ratio on session states;
    values the first release compressed with zstd still decompress.
    """

    def __init__(self, *, min_length: int = 4096, min_gain: float = 0.2, level: int = 0) -> None:
        if min_length < 0 or not 0 <= min_gain < 1 or not 0 <= level <= 16:
            raise ValueError(
                "min_length must be >= 0, min_gain in [0, 1) and level in [0, 16], got "
                f"{min_length}, {min_gain}, {level}"
            )
        self.min_length, self.min_gain, self.level = min_length, min_gain, level

    def compress(self, value: bytes) -> bytes:
        if len(value) < self.min_length:
            return value
        packed: bytes = lz4.frame.compress(value, compression_level=self.level)
        if len(packed) > len(value) * (1 - self.min_gain):
            return value
        return packed

    def decompress(self, value: bytes) -> bytes:
        # JSON never starts with either magic: anything else is stored as it is.
        try:
            if value.startswith(LZ4_MAGIC):
                return bytes(lz4.frame.decompress(value))
            if value.startswith(ZSTD_MAGIC):
                if pyzstd is None:
                    raise CodecError("a zstd value: install convstore[zstd] to read it")
                return bytes(pyzstd.decompress(value))
        except RuntimeError as e:
            raise CodecError(f"corrupt compressed frame: {e}") from e
        except Exception as e:
            if pyzstd is not None and isinstance(e, pyzstd.ZstdError):
                raise CodecError(f"corrupt compressed frame: {e}") from e
            raise
        return value


class Serializer(Protocol):
    def dumps(self, value: Any) -> bytes: ...
    def loads(self, value: bytes) -> Any: ...


class Compressor(Protocol):
    min_length: int

    def compress(self, value: bytes) -> bytes: ...
    def decompress(self, value: bytes) -> bytes: ...


class Codec:
    """A serializer and a compressor applied to whole values (by default JSON and lz4)."""

    def __init__(
        self, serializer: Serializer | None = None, compressor: Compressor | None = None
    ) -> None:
        self.serializer = serializer or JsonSerializer()
        self.compressor = compressor or Lz4Compressor()

    def encode(self, value: Any) -> bytes:
        return self.compressor.compress(self.serializer.dumps(value))

    def decode(self, raw: bytes) -> Any:
        return self.serializer.loads(self.compressor.decompress(raw))

    def may_change(self, raw: bytes) -> bool:
        """Whether encoding ``raw``'s value again could give other bytes: it is compressed, or
        long enough to be (the serializer writes a value it wrote the same way again)."""
        return raw.startswith((LZ4_MAGIC, ZSTD_MAGIC)) or len(raw) >= self.compressor.min_length


# A turn is stored as its seq in decimal, a bar, and its codec bytes. The write scripts build
# the same item (lua/prelude.lua push_turns) and trim_remove.lua reads its seq back.
def turn_item(seq: int, payload: bytes) -> bytes:
    return b"%d|%s" % (seq, payload)


def split_turn_item(item: bytes) -> tuple[int, bytes]:
    """(seq, payload) of a stored turn; CodecError when it has no seq."""
    seq, sep, payload = item.partition(b"|")
    if not sep or not seq.isdigit():
        raise CodecError("a turn is missing its sequence number")
    return int(seq), payload
