"""The orjson serializer and the zstd compressor, alone and through django-redis."""

import datetime
import json
import uuid
from decimal import Decimal

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from sessions_app.codec import ZSTD_MAGIC, CodecError, OrjsonSerializer, ZstdCompressor

serializer = OrjsonSerializer({})


def roundtrip(value):
    return serializer.loads(serializer.dumps(value))


class TestOrjsonSerializer:
    def test_nested_values_and_vietnamese_text(self):
        value = {
            "history": [{"role": "user", "content": "Xin chào, tôi tên là Minh"}],
            "n": [1, 2.5],
        }
        assert roundtrip(value) == value

    def test_non_str_keys_become_strings_like_the_stdlib(self):
        value = {1: "a", 2.5: "b", False: "c", None: "d"}
        assert roundtrip(value) == json.loads(json.dumps(value))

    def test_datetimes_uuids_and_decimals_take_their_json_form(self):
        when = datetime.datetime(2025, 10, 24, 14, 51, 41, tzinfo=datetime.UTC)
        ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
        value = {"at": when, "day": when.date(), "id": ident, "price": Decimal("12.30")}
        assert roundtrip(value) == {
            "at": "2025-10-24T14:51:41+00:00",
            "day": "2025-10-24",
            "id": "12345678-1234-5678-1234-567812345678",
            "price": "12.30",
        }

    def test_reads_stdlib_json_with_nan_and_infinity(self):
        legacy = json.dumps({"score": float("nan"), "best": float("inf")}).encode()
        value = serializer.loads(legacy)
        assert value["score"] != value["score"]
        assert value["best"] == float("inf")

    @pytest.mark.parametrize("bad", [{1, 2}, b"raw bytes", object()])
    def test_unencodable_value_is_one_clear_error_naming_the_type(self, bad):
        with pytest.raises(CodecError, match=type(bad).__name__):
            serializer.dumps({"x": bad})

    def test_undecodable_bytes_are_a_codec_error(self):
        with pytest.raises(CodecError):
            serializer.loads(b"{not json")


class TestZstdCompressor:
    def compressor(self, **options):
        return ZstdCompressor({"COMPRESS_MIN_LENGTH": 100, "COMPRESS_MIN_GAIN": 0.2, **options})

    def test_short_values_are_stored_as_they_are(self):
        assert self.compressor().compress(b"x" * 99) == b"x" * 99

    def test_compressible_values_are_compressed_and_restored(self):
        value = b'{"content": "Xin ch\xc3\xa0o"}' * 50
        packed = self.compressor().compress(value)
        assert packed.startswith(ZSTD_MAGIC)
        assert len(packed) < len(value) / 2
        assert self.compressor().decompress(packed) == value

    def test_incompressible_values_are_kept_when_the_gain_is_too_small(self):
        value = bytes(range(256)) * 2
        assert self.compressor(COMPRESS_MIN_GAIN=0.9).compress(value) == value

    def test_uncompressed_values_decompress_to_themselves(self):
        assert self.compressor().decompress(b'{"a": 1}') == b'{"a": 1}'

    @pytest.mark.parametrize(
        "options",
        [{"COMPRESS_MIN_LENGTH": -1}, {"COMPRESS_MIN_GAIN": 1.5}, {"COMPRESS_LEVEL": "x"}],
    )
    def test_bad_options_are_improperly_configured(self, options):
        with pytest.raises(ImproperlyConfigured):
            self.compressor(**options)


def test_the_sessions_cache_uses_the_codec(redis_client):
    cache = caches["sessions"]
    value = {"record": {"LOOP_COUNT": [{"step": i} for i in range(500)]}, 7: "bảy"}
    cache.set("codec-check", value)
    raw = redis_client.get(cache.make_key("codec-check"))
    assert raw.startswith(ZSTD_MAGIC)
    assert cache.get("codec-check") == {"record": value["record"], "7": "bảy"}
