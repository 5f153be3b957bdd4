"""The orjson serializer and the lz4 compressor, alone and through django-redis; the turn item
format and the bot_config digest."""

import datetime
import json
import uuid
from decimal import Decimal

import pytest
import pyzstd
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django_redis.exceptions import CompressorError

from convstore.codec import LZ4_MAGIC, CodecError, bot_config_digest, split_turn_item, turn_item
from sessions_app.codec import Lz4Compressor, OrjsonSerializer

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
        with pytest.raises(CodecError, match="cannot decode stored value"):
            serializer.loads(b"{not json")


class TestLz4Compressor:
    def compressor(self, **options):
        return Lz4Compressor({"COMPRESS_MIN_LENGTH": 100, "COMPRESS_MIN_GAIN": 0.2, **options})

    def test_short_values_are_stored_as_they_are(self):
        assert self.compressor().compress(b"x" * 99) == b"x" * 99

    def test_compressible_values_are_compressed_and_restored(self):
        value = b'{"content": "Xin ch\xc3\xa0o"}' * 50
        packed = self.compressor().compress(value)
        assert packed.startswith(LZ4_MAGIC)
        assert len(packed) < len(value) / 2
        assert self.compressor().decompress(packed) == value

    def test_incompressible_values_are_kept_when_the_gain_is_too_small(self):
        value = bytes(range(256)) * 2
        assert self.compressor(COMPRESS_MIN_GAIN=0.9).compress(value) == value

    def test_uncompressed_values_decompress_to_themselves(self):
        assert self.compressor().decompress(b'{"a": 1}') == b'{"a": 1}'

    def test_values_the_first_release_compressed_with_zstd_still_decompress(self):
        value = b'{"content": "Xin ch\xc3\xa0o"}' * 50
        assert self.compressor().decompress(pyzstd.compress(value)) == value

    @pytest.mark.parametrize("magic", [LZ4_MAGIC, b"\x28\xb5\x2f\xfd"])
    def test_a_corrupt_frame_is_a_compressor_error(self, magic):
        with pytest.raises(CompressorError, match="corrupt compressed frame"):
            self.compressor().decompress(magic + b"not a frame")

    @pytest.mark.parametrize(
        "options",
        [{"COMPRESS_MIN_LENGTH": -1}, {"COMPRESS_MIN_GAIN": 1.5}, {"COMPRESS_LEVEL": "x"}],
    )
    def test_bad_options_are_improperly_configured(self, options):
        with pytest.raises(ImproperlyConfigured, match=r"COMPRESS_|bad lz4 compressor option"):
            self.compressor(**options)


def test_the_sessions_cache_uses_the_codec(redis_client):
    cache = caches["sessions"]
    value = {"record": {"LOOP_COUNT": [{"step": i} for i in range(500)]}, 7: "bảy"}
    cache.set("codec-check", value)
    raw = redis_client.get(cache.make_key("codec-check"))
    assert raw.startswith(LZ4_MAGIC)
    assert cache.get("codec-check") == {"record": value["record"], "7": "bảy"}


class TestTurnItems:
    def test_a_turn_item_is_its_seq_a_bar_and_its_bytes(self):
        assert turn_item(42, b'{"a":1}') == b'42|{"a":1}'
        assert split_turn_item(b'42|{"a":"x|y"}') == (42, b'{"a":"x|y"}')

    @pytest.mark.parametrize("item", [b'{"a":1}', b'x|{"a":1}', b"-1|{}", b"|{}"])
    def test_an_item_without_a_seq_is_a_codec_error(self, item):
        with pytest.raises(CodecError, match="missing its sequence number"):
            split_turn_item(item)


def test_equal_bot_configs_in_any_key_order_have_one_digest():
    forward = {"scenario": [1, 2], "params": {"a": 1, "b": 2}}
    backward = {"params": {"b": 2, "a": 1}, "scenario": [1, 2]}
    assert bot_config_digest(forward) == bot_config_digest(backward)
    assert bot_config_digest(forward) != bot_config_digest({**forward, "scenario": [2, 1]})
