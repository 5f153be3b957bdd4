"""The conversation store's codec: an orjson serializer and an lz4 compressor for django-redis,
the one format of a stored turn (``<seq>|payload``), and the digest that names a bot_config.

The serializers and compressor plug into a cache alias's ``OPTIONS`` by dotted path; none
ever uses pickle. Nothing here needs Django's settings.
"""

import hashlib
import json
import math
from decimal import Decimal

import lz4.frame
import orjson
import pyzstd
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django_redis.compressors.base import BaseCompressor
from django_redis.exceptions import CompressorError
from django_redis.serializers.base import BaseSerializer

from sessions_app.exceptions import CodecError

LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _encode_other(value):
    # orjson handles datetimes and UUIDs itself; Decimals go out as strings, as
    # DjangoJSONEncoder writes them, so nothing is rounded through a float.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode a value of type {type(value).__qualname__}")


def _dumps(value, option):
    try:
        encoded = orjson.dumps(value, default=_encode_other, option=option)
    except orjson.JSONEncodeError as e:
        raise CodecError(f"cannot encode session value: {e}") from e
    # orjson writes NaN and Infinity as null, which would change the value silently; only a
    # document with a null in it can hold one, so only those are walked.
    if b"null" in encoded and _has_non_finite(value):
        raise CodecError("cannot encode session value: NaN and Infinity are not JSON")
    return encoded


def _has_non_finite(value):
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(item) for item in value)
    return False


def canonical_json(value):
    """Sorted-key JSON: equal values give equal bytes, so a digest can name the content."""
    return _dumps(value, orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)


def bot_config_digest(bot_config):
    """The name of a bot_config's content: sha256 of its canonical JSON."""
    return hashlib.sha256(canonical_json(bot_config)).hexdigest()


def without_non_finite(value):
    """``value`` with NaN and Infinity replaced by None: how a legacy blob's floats move on."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: without_non_finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_non_finite(item) for item in value]
    return value


class OrjsonSerializer(BaseSerializer):
    """JSON through orjson; non-str dict keys become strings, as the stdlib did."""

    def dumps(self, value):
        return _dumps(value, orjson.OPT_NON_STR_KEYS)

    def loads(self, value):
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


class DjangoJSONSerializer(OrjsonSerializer):
    """Django's JSON contract, for its login sessions: what JSON cannot hold (a datetime,
    Decimal, UUID...) raises TypeError naming its type, as Django's own session serializer does,
    instead of coming back as a string. Values read as OrjsonSerializer reads them."""

    def dumps(self, value):
        return signing.JSONSerializer().dumps(value)


class Lz4Compressor(BaseCompressor):
    """lz4 frames above a minimum length, kept only when they save a minimum fraction.

    lz4 decompresses about five times faster than zstd at nearly its ratio on session states
    (docs/PERFORMANCE.md); values the first release compressed with zstd still decompress.
    """

    def __init__(self, options):
        super().__init__(options)
        try:
            self.min_length = int(options.get("COMPRESS_MIN_LENGTH", 4096))
            self.min_gain = float(options.get("COMPRESS_MIN_GAIN", 0.2))
            self.level = int(options.get("COMPRESS_LEVEL", 0))
        except (TypeError, ValueError) as e:
            raise ImproperlyConfigured(f"bad lz4 compressor option: {e}") from e
        if self.min_length < 0 or not 0 <= self.min_gain < 1 or not 0 <= self.level <= 16:
            raise ImproperlyConfigured(
                "COMPRESS_MIN_LENGTH must be >= 0, COMPRESS_MIN_GAIN in [0, 1) "
                "and COMPRESS_LEVEL in [0, 16]"
            )

    def compress(self, value):
        if len(value) < self.min_length:
            return value
        packed = lz4.frame.compress(value, compression_level=self.level)
        if len(packed) > len(value) * (1 - self.min_gain):
            return value
        return packed

    def decompress(self, value):
        # JSON never starts with either magic: anything else is stored as it is.
        try:
            if value.startswith(LZ4_MAGIC):
                return lz4.frame.decompress(value)
            if value.startswith(ZSTD_MAGIC):
                return pyzstd.decompress(value)
        except (RuntimeError, pyzstd.ZstdError) as e:
            raise CompressorError(f"corrupt compressed frame: {e}") from e
        return value


class Codec:
    """The serializer and compressor of a cache alias's OPTIONS, applied to whole values.

    django-redis's client.decode() first tries int() on every value, which raises for each
    JSON document; the store decodes many per load, so it uses this directly.
    """

    def __init__(self, options):
        self.serializer = import_string(options["SERIALIZER"])(options=options)
        self.compressor = import_string(options["COMPRESSOR"])(options=options)

    def encode(self, value):
        return self.compressor.compress(self.serializer.dumps(value))

    def decode(self, raw):
        try:
            return self.serializer.loads(self.compressor.decompress(raw))
        except CompressorError as e:
            raise CodecError(str(e)) from e

    def may_change(self, raw):
        """Whether encoding ``raw``'s value again could give other bytes: it is compressed, or
        long enough to be (the serializer writes a value it wrote the same way again)."""
        return raw.startswith((LZ4_MAGIC, ZSTD_MAGIC)) or len(raw) >= getattr(
            self.compressor, "min_length", 0
        )


# A turn is stored as its seq in decimal, a bar, and its codec bytes. The write scripts build
# the same item (lua/prelude.lua push_turns) and trim_remove.lua reads its seq back.
def turn_item(seq, payload):
    return b"%d|%s" % (seq, payload)


def split_turn_item(item):
    """(seq, payload) of a stored turn; CodecError when it has no seq."""
    seq, sep, payload = item.partition(b"|")
    if not sep or not seq.isdigit():
        raise CodecError("a turn is missing its sequence number")
    return int(seq), payload
