"""Kafka message values as columns and back, as Spark expressions: JSON, plain binary Avro, and
Avro in the Confluent wire format (a zero byte and a 4-byte schema id before the Avro bytes).

Decoding never fails a task: an undecodable value yields a flag (`broken`) and a cause, so the
source can set the message aside or fail the run naming it (etl_job.quality.setaside)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

from fastavro import schemaless_writer

from etl_job.contract import ConfigurationError
from etl_job.quality.schemas import (
    as_parsed,
    avro_to_spark_type,
    kind_of,
    logical_type,
    named_types,
    nullable_branch,
)
from etl_job.runtime.columns import named_column
from etl_job.runtime.functions import timestamp_from_text

#: The column a decoded value is held in between decoding and selecting its fields.
DECODED = "_etl_decoded"
#: The field from_json fills with the text of a value it cannot parse.
UNPARSED = "_etl_unparsed"
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_BYTES = 5
#: Logical types read from JSON as text first: Avro's JSON writes them as numbers (epoch millis,
#: micros, days), where Spark's JSON reader would take a number for seconds.
_EPOCH_LOGICAL_TYPES = ("timestamp-millis", "timestamp-micros", "date")


def avro_json(schema: Mapping[str, Any]) -> str:
    """A parsed schema as the JSON Spark's Avro functions take, without fastavro's own keys."""
    return json.dumps(_without_private_keys(schema))


def _without_private_keys(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _without_private_keys(v) for k, v in node.items() if not str(k).startswith("__")}
    if isinstance(node, list):
        return [_without_private_keys(item) for item in node]
    return node


def confluent_header(schema_id: int) -> bytes:
    """The wire-format header: magic byte 0, then the schema id as a 4-byte big-endian int."""
    return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big", signed=True)


def record_fields(schema: Mapping[str, Any], schema_name: str) -> list[str]:
    """Field names of a record schema; ConfigurationError for any other schema."""
    parsed = as_parsed(schema)
    if kind_of(parsed) != "record":
        raise ConfigurationError(
            f"Avro schema {schema_name} must be a record to map values to columns",
            field="schemaName",
        )
    assert isinstance(parsed, Mapping)
    return [str(field["name"]) for field in parsed["fields"]]


def all_null_encoding(schema: Mapping[str, Any]) -> bytes | None:
    """The Avro bytes of a record whose fields are all null, or None when a field cannot be null.

    Spark's PERMISSIVE from_avro turns an undecodable value into a record of nulls, so a record
    of nulls is undecodable unless its bytes are exactly these."""
    parsed = as_parsed(schema)
    assert isinstance(parsed, Mapping)
    named = named_types(parsed)
    if not all(nullable_branch(field["type"], named)[0] for field in parsed["fields"]):
        return None
    buffer = io.BytesIO()
    schemaless_writer(buffer, dict(parsed), {field["name"]: None for field in parsed["fields"]})
    return buffer.getvalue()


def epoch_fields(schema: Mapping[str, Any]) -> dict[str, str]:
    """Top-level fields whose logical type JSON writes as an epoch number, by name."""
    parsed = as_parsed(schema)
    assert isinstance(parsed, Mapping)
    named = named_types(parsed)
    found: dict[str, str] = {}
    for field in parsed["fields"]:
        logical = logical_type(nullable_branch(field["type"], named)[1])
        if logical in _EPOCH_LOGICAL_TYPES:
            found[str(field["name"])] = logical
    return found


# --- decoding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoding:
    """How a raw Kafka row's `value` becomes columns: `decoded` is computed once into the column
    DECODED; `columns`, `broken` and `cause` read it (and `value`)."""

    decoded: Any
    #: Names of the columns, in order.
    names: list[str]
    columns: list[Any]
    #: True where a value is present but does not decode; never null. None: nothing can fail.
    broken: Any | None
    #: Why a value does not decode, to follow "topic t partition p offset o: ".
    cause: Any
    #: The value as received, as a string (base64 for binary formats).
    original: Any


def decode_text(value: Any) -> Decoding:
    """JSON without a schema: the value as one string column `value`."""
    from pyspark.sql import functions as F

    text = value.cast("string")
    return Decoding(text, ["value"], [F.col(DECODED).alias("value")], None, F.lit(""), text)


def decode_json(value: Any, schema: Mapping[str, Any], schema_name: str) -> Decoding:
    """JSON objects into the fields of an Avro record. A value that is not a JSON object, or
    whose fields do not convert to their types, does not decode."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    fields = record_fields(schema, schema_name)
    epochs = epoch_fields(schema)
    record_type = avro_to_spark_type(schema)
    reading = T.StructType(
        [T.StructField(f.name, T.StringType(), True) if f.name in epochs else f for f in record_type.fields]
        + [T.StructField(UNPARSED, T.StringType(), True)]
    )
    text = value.cast("string")
    decoded = F.from_json(text, reading, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": UNPARSED})
    held = F.col(DECODED)
    converted = {name: _from_json_text(held.getField(name), logical) for name, logical in epochs.items()}
    columns = [converted.get(name, held.getField(name)).alias(name) for name in fields]
    not_converted = [held.getField(name).isNotNull() & column.isNull() for name, column in converted.items()]
    failed = reduce(lambda a, b: a | b, not_converted, held.getField(UNPARSED).isNotNull())
    return Decoding(
        decoded,
        fields,
        columns,
        _never_null(value.isNotNull() & (held.isNull() | failed)),
        F.lit(f"value is not JSON of Avro schema {schema_name}"),
        text,
    )


def _from_json_text(text: Any, logical: str) -> Any:
    """A timestamp or date written as an epoch number (Avro's way) or as ISO 8601 text."""
    from pyspark.sql import functions as F

    spelled = text.try_cast("date") if logical == "date" else timestamp_from_text(text)
    # ISO 8601 text has a ':' or a '-' after its first character; numbers have neither. The
    # test is cheap, where a failed cast from text to a number costs an exception per value.
    looks_spelled = (F.instr(text, ":") > 0) | (F.instr(text, "-") > 1)
    if logical == "date":
        by_number = F.date_from_unix_date(text.try_cast("int"))
    elif logical == "timestamp-millis":
        number = text.try_cast("long")
        # Millis beyond this overflow microseconds, which would fail the task, not the record.
        by_number = F.when(number.between(-_MAX_MILLIS, _MAX_MILLIS), F.timestamp_millis(number))
    else:
        by_number = F.timestamp_micros(text.try_cast("long"))
    return F.when(looks_spelled, spelled).otherwise(F.coalesce(by_number, spelled))


#: The largest epoch millis whose microseconds fit a long.
_MAX_MILLIS = (2**63 - 1) // 1000


def decode_avro(value: Any, schema: Mapping[str, Any], schema_name: str, *, confluent: bool) -> Decoding:
    """Binary Avro of the named schema, plain or after a Confluent wire-format header (whose
    schema id is not looked up: the named schema is the reader's and the writer's)."""
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro

    fields = record_fields(schema, schema_name)
    has_header = (F.length(value) >= CONFLUENT_HEADER_BYTES) & (
        F.substring(value, 1, 1) == F.lit(bytearray(CONFLUENT_MAGIC))
    )
    payload = (
        F.when(has_header, F.substring(value, CONFLUENT_HEADER_BYTES + 1, 2**31 - 1)) if confluent else value
    )
    decoded = from_avro(payload, avro_json(schema), {"mode": "PERMISSIVE"})
    held = F.col(DECODED)
    all_null = reduce(lambda a, b: a & b, [held.getField(name).isNull() for name in fields], F.lit(True))
    null_record = all_null_encoding(schema)
    if null_record is not None:
        # A record of nulls is decodable when its bytes say so.
        all_null = all_null & (payload != F.lit(bytearray(null_record)))
    undecodable = F.lit(f"value does not decode as Avro schema {schema_name}")
    if confluent:
        schema_id = F.conv(F.hex(F.substring(value, 2, 4)), 16, 10)
        broken = ~has_header | all_null
        cause = F.when(
            ~has_header, F.lit("value has no Confluent wire-format header (magic byte 0 and schema id)")
        ).otherwise(F.concat(undecodable, F.lit(" (schema id "), schema_id, F.lit(" in its header)")))
    else:
        broken, cause = all_null, undecodable
    return Decoding(
        decoded,
        fields,
        [held.getField(name).alias(name) for name in fields],
        _never_null(value.isNotNull() & broken),
        cause,
        F.base64(value),
    )


def _never_null(condition: Any) -> Any:
    """A filter drops rows where its condition is null: a flag must be true or false."""
    from pyspark.sql import functions as F

    return F.coalesce(condition, F.lit(False))


# --- encoding -------------------------------------------------------------------------------


def encode_json(frame: Any) -> Any:
    """Every column of the row as one JSON object."""
    from pyspark.sql import functions as F

    return F.to_json(F.struct(*[named_column(name) for name in frame.columns]))


def encode_avro(
    frame: Any, schema: Mapping[str, Any], schema_name: str, *, schema_id: int | None = None
) -> Any:
    """The record's fields as binary Avro; with a schema id, after a Confluent header."""
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import to_avro

    fields = record_fields(schema, schema_name)
    missing = [name for name in fields if name not in frame.columns]
    if missing:
        raise ConfigurationError(
            f"field {missing[0]} of Avro schema {schema_name} is not a column of the output "
            f"(columns: {', '.join(frame.columns)})",
            stage="load",
            field="schemaName",
        )
    record_type = avro_to_spark_type(schema)
    encoded = to_avro(
        F.struct(*[named_column(f.name).cast(f.dataType).alias(f.name) for f in record_type.fields]),
        avro_json(schema),
    )
    if schema_id is None:
        return encoded
    return F.concat(F.lit(bytearray(confluent_header(schema_id))), encoded)
