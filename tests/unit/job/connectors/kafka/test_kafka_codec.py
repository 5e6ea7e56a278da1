"""Kafka values as columns and back (etl_job.connectors.kafka.codec), on small frames: what decodes, what is
flagged as undecodable and why, and what the encoders write."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from etl_job.connectors.kafka import codec
from etl_job.contract import ConfigurationError
from etl_job.quality.schemas import SchemaRegistry

REPO = Path(__file__).resolve().parents[5]
USER_EVENT = SchemaRegistry([REPO / "examples" / "schemas"]).get("user-event")


#: A record whose fields may all be null, so a record of nulls is a real value.
def parsed(schema: dict[str, Any]) -> dict[str, Any]:
    result = parse_schema(schema)
    assert isinstance(result, dict)
    return result


OPTIONAL = parsed(
    {
        "type": "record",
        "name": "Optional",
        "fields": [
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "count", "type": ["long", "null"]},
        ],
    }
)
EVENT = {
    "event_id": 1,
    "user_id": "u1",
    "country": "DE",
    "event_type": "purchase",
    "amount": 2.5,
    "event_time": 1793527200000,
}


def avro(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, record)
    return buffer.getvalue()


def decoded(
    spark: SparkSession, values: list[bytes | None], decoding: codec.Decoding
) -> list[tuple[Any, ...]]:
    """(decoded columns..., broken, cause) per value, in order."""
    frame = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, value binary")
    held = frame.select("i", "value", decoding.decoded.alias(codec.DECODED))
    flags = [decoding.broken, decoding.cause] if decoding.broken is not None else []
    rows = held.orderBy("i").select(*decoding.columns, *flags).collect()
    return [tuple(row) for row in rows]


# --- pure helpers ---------------------------------------------------------------------------


def test_schema_json_for_spark_drops_fastavro_keys() -> None:
    document = json.loads(codec.avro_json(USER_EVENT))
    assert document["name"] == "io.sparkops.UserEvent"
    assert not [key for key in document if key.startswith("__")]


def test_confluent_header_is_magic_byte_and_big_endian_id() -> None:
    assert codec.confluent_header(42) == b"\x00\x00\x00\x00\x2a"
    assert codec.confluent_header(70000) == b"\x00\x00\x01\x11\x70"


def test_all_null_encoding_only_when_every_field_may_be_null() -> None:
    assert codec.all_null_encoding(USER_EVENT) is None
    # Union branch indexes as zigzag varints: null is branch 0 of the first, 1 of the second.
    assert codec.all_null_encoding(OPTIONAL) == b"\x00\x02"


def test_epoch_fields_and_record_fields() -> None:
    assert codec.epoch_fields(USER_EVENT) == {"event_time": "timestamp-millis"}
    assert codec.record_fields(OPTIONAL, "optional") == ["note", "count"]
    with pytest.raises(ConfigurationError, match="Avro schema words must be a record"):
        codec.record_fields({"type": "array", "items": "string"}, "words")


# --- decoding -------------------------------------------------------------------------------


def test_json_values_decode_into_the_schema_fields_or_are_flagged(spark: SparkSession) -> None:
    values: list[bytes | None] = [
        json.dumps(EVENT).encode(),
        json.dumps({**EVENT, "event_time": "2026-11-01T10:00:00Z", "extra": 1}).encode(),
        b"not json",
        b"42",
        json.dumps({**EVENT, "event_id": "one"}).encode(),
        json.dumps({**EVENT, "event_time": "later"}).encode(),
        None,
    ]
    rows = decoded(spark, values, codec.decode_json(F.col("value"), USER_EVENT, "user-event"))
    as_time = "2026-11-01 10:00:00"
    summary = [(r[0], str(r[5]) if r[5] is not None else None, r[6]) for r in rows]
    assert summary == [
        (1, as_time, False),
        (1, as_time, False),
        (None, None, True),
        (None, None, True),
        (None, as_time, True),
        (1, None, True),
        (None, None, False),  # a tombstone: no value to decode
    ]
    assert rows[2][7] == "value is not JSON of Avro schema user-event"


def test_text_values_are_kept_as_one_column(spark: SparkSession) -> None:
    assert decoded(spark, [b"a", None], codec.decode_text(F.col("value"))) == [("a",), (None,)]


def test_avro_values_that_do_not_decode_are_flagged(spark: SparkSession) -> None:
    values: list[bytes | None] = [avro(USER_EVENT, EVENT), b"\x02\x02a", b"", None]
    rows = decoded(spark, values, codec.decode_avro(F.col("value"), USER_EVENT, "ue", confluent=False))
    assert [(r[1], r[6]) for r in rows] == [("u1", False), (None, True), (None, True), (None, False)]
    assert rows[1][7] == "value does not decode as Avro schema ue"


def test_a_record_of_nulls_decodes_when_its_bytes_say_so(spark: SparkSession) -> None:
    values: list[bytes | None] = [
        avro(OPTIONAL, {"note": None, "count": None}),
        b"\x04",
        avro(OPTIONAL, {"note": "x", "count": 3}),
    ]
    rows = decoded(spark, values, codec.decode_avro(F.col("value"), OPTIONAL, "optional", confluent=False))
    assert [r[:3] for r in rows] == [(None, None, False), (None, None, True), ("x", 3, False)]


def test_confluent_values_need_the_wire_format_header(spark: SparkSession) -> None:
    payload = avro(USER_EVENT, EVENT)
    values: list[bytes | None] = [
        b"\x00\x00\x00\x00\x07" + payload,
        payload,
        b"\x00\x00\x00\x00\x07\x02\x02a",
    ]
    decoding = codec.decode_avro(F.col("value"), USER_EVENT, "ue", confluent=True)
    rows = decoded(spark, values, decoding)
    assert [(r[1], r[6]) for r in rows] == [("u1", False), (None, True), (None, True)]
    assert rows[1][7] == "value has no Confluent wire-format header (magic byte 0 and schema id)"
    assert rows[2][7] == "value does not decode as Avro schema ue (schema id 7 in its header)"


# --- encoding -------------------------------------------------------------------------------


def test_avro_encoding_writes_the_schema_fields_after_an_optional_header(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(1, 7, "x")], "count long, ignored int, note string")
    plain, framed = frame.select(
        codec.encode_avro(frame, OPTIONAL, "optional"),
        codec.encode_avro(frame, OPTIONAL, "optional", schema_id=9),
    ).first()  # type: ignore[misc]
    assert schemaless_reader(io.BytesIO(bytes(plain)), OPTIONAL, None) == {"note": "x", "count": 1}
    assert bytes(framed) == codec.confluent_header(9) + bytes(plain)


def test_avro_encoding_needs_every_field_as_a_column(spark: SparkSession) -> None:
    frame = spark.createDataFrame([("x",)], "note string")
    with pytest.raises(ConfigurationError, match="field count of Avro schema optional is not a column"):
        codec.encode_avro(frame, OPTIONAL, "optional")


def test_json_encoding_writes_every_column(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(1, "a.b")], "`odd.name` int, note string")
    [row] = frame.select(codec.encode_json(frame).alias("value")).collect()
    assert json.loads(row.value) == {"odd.name": 1, "note": "a.b"}
