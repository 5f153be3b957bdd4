"""The conversation store's codec: an orjson serializer and a zstd compressor for django-redis.

Both plug into ``CACHES["sessions"]["OPTIONS"]`` by dotted path; neither ever uses pickle.
"""

import json
from decimal import Decimal

import orjson
import pyzstd
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django_redis.compressors.base import BaseCompressor
from django_redis.exceptions import CompressorError
from django_redis.serializers.base import BaseSerializer

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class CodecError(ValueError):
    """A value the codec cannot encode or decode."""


def _encode_other(value):
    # orjson handles datetimes and UUIDs itself; Decimals go out as strings, as
    # DjangoJSONEncoder writes them, so nothing is rounded through a float.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode a value of type {type(value).__qualname__}")


def _dumps(value, option):
    try:
        return orjson.dumps(value, default=_encode_other, option=option)
    except orjson.JSONEncodeError as e:
        raise CodecError(f"cannot encode session value: {e}") from e


def canonical_json(value):
    """Sorted-key JSON: equal values give equal bytes, so a digest can name the content."""
    return _dumps(value, orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)


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


class ZstdCompressor(BaseCompressor):
    """zstd above a minimum length, kept only when it saves at least a minimum fraction."""

    def __init__(self, options):
        super().__init__(options)
        try:
            self.min_length = int(options.get("COMPRESS_MIN_LENGTH", 4096))
            self.min_gain = float(options.get("COMPRESS_MIN_GAIN", 0.2))
            self.level = int(options.get("COMPRESS_LEVEL", 3))
        except (TypeError, ValueError) as e:
            raise ImproperlyConfigured(f"bad zstd compressor option: {e}") from e
        if self.min_length < 0 or not 0 <= self.min_gain < 1:
            raise ImproperlyConfigured(
                "COMPRESS_MIN_LENGTH must be >= 0 and COMPRESS_MIN_GAIN in [0, 1)"
            )

    def compress(self, value):
        if len(value) < self.min_length:
            return value
        packed = pyzstd.compress(value, self.level)
        if len(packed) > len(value) * (1 - self.min_gain):
            return value
        return packed

    def decompress(self, value):
        # Values below the threshold, or written before compression, are stored as they are.
        if not value.startswith(ZSTD_MAGIC):
            return value
        try:
            return pyzstd.decompress(value)
        except pyzstd.ZstdError as e:
            raise CompressorError(f"corrupt zstd frame: {e}") from e


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
