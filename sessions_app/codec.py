"""The store's codec as django-redis classes: a serializer and a compressor chosen by dotted
path in a cache alias's ``OPTIONS``, each wrapping the library's (convstore.codec), so the
store and every cache alias encode alike and none ever pickles.
"""

from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django_redis.compressors.base import BaseCompressor
from django_redis.exceptions import CompressorError
from django_redis.serializers.base import BaseSerializer

from convstore.codec import Codec, JsonSerializer
from convstore.codec import Lz4Compressor as Lz4
from convstore.exceptions import CodecError


class OrjsonSerializer(BaseSerializer):
    """JSON through orjson; non-str dict keys become strings, as the stdlib did."""

    def __init__(self, options):
        super().__init__(options=options)
        self.codec = JsonSerializer()

    def dumps(self, value):
        return self.codec.dumps(value)

    def loads(self, value):
        return self.codec.loads(value)


class DjangoJSONSerializer(OrjsonSerializer):
    """Django's JSON contract, for its login sessions: what JSON cannot hold (a datetime,
    Decimal, UUID...) raises TypeError naming its type, as Django's own session serializer does,
    instead of coming back as a string. Values read as OrjsonSerializer reads them."""

    def dumps(self, value):
        return signing.JSONSerializer().dumps(value)


class Lz4Compressor(BaseCompressor):
    """convstore's lz4 compressor, configured by COMPRESS_MIN_LENGTH, COMPRESS_MIN_GAIN and
    COMPRESS_LEVEL."""

    def __init__(self, options):
        super().__init__(options)
        try:
            self.codec = Lz4(
                min_length=int(options.get("COMPRESS_MIN_LENGTH", 4096)),
                min_gain=float(options.get("COMPRESS_MIN_GAIN", 0.2)),
                level=int(options.get("COMPRESS_LEVEL", 0)),
            )
        except (TypeError, ValueError) as e:
            raise ImproperlyConfigured(
                "COMPRESS_MIN_LENGTH must be >= 0, COMPRESS_MIN_GAIN in [0, 1) and "
                f"COMPRESS_LEVEL in [0, 16] ({e})"
            ) from e

    def compress(self, value):
        return self.codec.compress(value)

    def decompress(self, value):
        try:
            return self.codec.decompress(value)
        except CodecError as e:
            raise CompressorError(str(e)) from e


def codec_from_options(options):
    """The store's Codec from a cache alias's OPTIONS: the library classes its serializer and
    compressor wrap. ImproperlyConfigured when they are not this module's."""
    serializer = import_string(options["SERIALIZER"])(options=options)
    compressor = import_string(options["COMPRESSOR"])(options=options)
    if not isinstance(serializer, OrjsonSerializer) or not isinstance(compressor, Lz4Compressor):
        raise ImproperlyConfigured(
            "the conversation store's cache alias must use sessions_app.codec.OrjsonSerializer "
            "and sessions_app.codec.Lz4Compressor"
        )
    return Codec(serializer.codec, compressor.codec)
