"""Validation against Avro records: the column check, and the row check as Spark expressions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.errors import SparkRuntimeException
from pyspark.sql import Row
from pyspark.sql import functions as F

from etl_job.contract import ConfigurationError, SchemaViolation
from etl_job.quality.guard import record_violation
from etl_job.quality.schemas import SchemaRegistry
from etl_job.quality.validate import (
    INVALID_COLUMNS,
    VALID_COLUMN,
    check_columns,
    first_violation,
    validate_rows,
)

REPO = Path(__file__).resolve().parents[4]

#: A flat record with one field per kind of rule.
ITEM = {
    "type": "record",
    "name": "Item",
    "namespace": "test",
    "fields": [
        {"name": "id", "type": "int"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}

#: Nested types: an optional record, an array, a map, a timestamp, a defaulted missing field.
ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "test",
    "fields": [
        {"name": "order_id", "type": "long"},
        {
            "name": "customer",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Customer",
                    "fields": [
                        {"name": "name", "type": "string"},
                        {
                            "name": "tier",
                            "type": {"type": "enum", "name": "Tier", "symbols": ["gold", "basic"]},
                        },
                    ],
                },
            ],
            "default": None,
        },
        {"name": "scores", "type": {"type": "array", "items": ["null", "double"]}},
        {"name": "quantities", "type": {"type": "map", "values": "int"}},
        {"name": "created", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "channel", "type": "string", "default": "web"},
    ],
}
ORDER_COLUMNS = (
    "order_id int, customer struct<name:string,tier:string>, scores array<string>,"
    " quantities map<string,string>, created long, extra string"
)


def invalid_rows(result: Any) -> list[dict[str, Any]]:
    return [row.asDict() for row in result.invalid.collect()]


# --- column check ---------------------------------------------------------------------------


def test_columns_that_fit_have_no_problems_and_extra_columns_are_allowed(spark: Any) -> None:
    # string -> int and string -> decimal may fail per row: that is the row check's business.
    frame = spark.createDataFrame([], "id string, kind string, price string, other array<int>")

    assert check_columns(frame.schema, ITEM, "extract") == []


def test_missing_required_fields_and_uncastable_types_are_problems(spark: Any) -> None:
    frame = spark.createDataFrame([], "id array<int>, price map<string,int>")

    assert check_columns(frame.schema, ITEM, "extract") == [
        "extract: field id: array<int> cannot be cast to int",
        "extract: field kind: required by Item but missing",
        "extract: field price: map<string,int> cannot be cast to decimal(5,2)",
    ]


def test_nested_types_are_checked_field_by_field(spark: Any) -> None:
    frame = spark.createDataFrame(
        [],
        "order_id timestamp, customer struct<tier:string>, scores string,"
        " quantities map<string,array<int>>, created double",
    )

    assert check_columns(frame.schema, ORDER, "load") == [
        "load: field order_id: timestamp cannot be cast to long",
        "load: field customer.name: required by Customer but missing",
        "load: field scores: string cannot be cast to array",
        "load: field quantities[]: array<int> cannot be cast to int",
        "load: field created: double cannot be cast to timestamp-millis",
    ]


def test_a_record_needs_a_struct(spark: Any) -> None:
    frame = spark.createDataFrame([], "order_id long, customer string, scores array<double>")

    assert check_columns(frame.schema, ORDER, "load") == [
        "load: field customer: string cannot be cast to record Customer",
        "load: field quantities: required by Order but missing",
        "load: field created: required by Order but missing",
    ]


def test_validate_rows_refuses_columns_that_cannot_fit(spark: Any) -> None:
    frame = spark.createDataFrame([], "id array<int>, kind string, price string")

    with pytest.raises(SchemaViolation) as raised:
        validate_rows(frame, ITEM, "extract")

    assert str(raised.value) == (
        "extract: columns do not fit Avro record Item: field id: array<int> cannot be cast to int"
    )


# --- row check ------------------------------------------------------------------------------


def test_each_kind_of_bad_value_is_named_with_its_field(spark: Any) -> None:
    frame = spark.createDataFrame(
        [
            ("1", "a", "12.5", "fine"),
            (None, "a", "1", None),
            ("x", "b", "1", None),
            ("3", "c", "1", None),
            ("4", "b", "1234.5", None),
            ("5", "b", "abc", None),
            ("6", None, None, None),
        ],
        "id string, kind string, price string, note string",
    )

    result = validate_rows(frame, ITEM, "extract")

    assert result.valid.collect() == [Row(id=1, kind="a", price=Decimal("12.50"), note="fine")]
    assert result.valid.schema.simpleString() == "struct<id:int,kind:string,price:decimal(5,2),note:string>"
    assert tuple(result.invalid.columns) == INVALID_COLUMNS
    assert invalid_rows(result) == [
        {
            "originalRecord": '{"id":null,"kind":"a","price":"1","note":null}',
            "recordKey": "row (id=null, kind=a, price=1)",
            "field": "id",
            "errorType": "NullValue",
            "errorMessage": "field id: null in a non-nullable field",
        },
        {
            "originalRecord": '{"id":"x","kind":"b","price":"1","note":null}',
            "recordKey": "row (id=x, kind=b, price=1)",
            "field": "id",
            "errorType": "NotCastable",
            "errorMessage": "field id: 'x' does not cast to int",
        },
        {
            "originalRecord": '{"id":"3","kind":"c","price":"1","note":null}',
            "recordKey": "row (id=3, kind=c, price=1)",
            "field": "kind",
            "errorType": "UnknownEnumSymbol",
            "errorMessage": "field kind: 'c' is not a symbol of Kind (a, b)",
        },
        {
            "originalRecord": '{"id":"4","kind":"b","price":"1234.5","note":null}',
            "recordKey": "row (id=4, kind=b, price=1234.5)",
            "field": "price",
            "errorType": "DecimalOverflow",
            "errorMessage": "field price: '1234.5' overflows decimal(5,2)",
        },
        {
            "originalRecord": '{"id":"5","kind":"b","price":"abc","note":null}',
            "recordKey": "row (id=5, kind=b, price=abc)",
            "field": "price",
            "errorType": "NotCastable",
            "errorMessage": "field price: 'abc' does not cast to decimal(5,2)",
        },
        {
            "originalRecord": '{"id":"6","kind":null,"price":null,"note":null}',
            "recordKey": "row (id=6, kind=null, price=null)",
            "field": "kind",
            "errorType": "NullValue",
            "errorMessage": (
                "field kind: null in a non-nullable field; field price: null in a non-nullable field"
            ),
        },
    ]


def test_typed_columns_are_checked_too(spark: Any) -> None:
    frame = spark.createDataFrame(
        [(1, "a", Decimal("1.50")), (2_147_483_648, "b", Decimal("1234.50"))],
        "id long, kind string, price decimal(10,2)",
    )

    result = validate_rows(frame, ITEM, "load")

    assert result.valid.collect() == [Row(id=1, kind="a", price=Decimal("1.50"), note=None)]
    assert [row.errorMessage for row in result.invalid.collect()] == [
        "field id: '2147483648' does not cast to int; field price: '1234.50' overflows decimal(5,2)"
    ]


def test_nested_records_arrays_maps_and_timestamps(spark: Any) -> None:
    frame = spark.createDataFrame(
        [
            (1, ("Ann", "gold"), ["1.5", None], {"x": "2"}, 0, "e1"),
            (2, None, [], {}, 1500, "e2"),
            (3, (None, "gold"), [], {}, 0, None),
            (4, ("Bo", "platinum"), ["x"], {"y": "z"}, 0, None),
        ],
        ORDER_COLUMNS,
    )

    result = validate_rows(frame, ORDER, "load", key_fields=["order_id"])

    assert result.valid.schema.simpleString() == (
        "struct<order_id:bigint,customer:struct<name:string,tier:string>,scores:array<double>,"
        "quantities:map<string,int>,created:timestamp,channel:string,extra:string>"
    )
    valid = result.valid.withColumn("created", F.col("created").cast("string"))
    assert valid.collect() == [
        Row(
            order_id=1,
            customer=Row(name="Ann", tier="gold"),
            scores=[1.5, None],
            quantities={"x": 2},
            created="1970-01-01 00:00:00",
            channel="web",
            extra="e1",
        ),
        Row(
            order_id=2,
            customer=None,
            scores=[],
            quantities={},
            created="1970-01-01 00:00:01.5",
            channel="web",
            extra="e2",
        ),
    ]
    assert [
        (row.recordKey, row.field, row.errorType, row.errorMessage) for row in result.invalid.collect()
    ] == [
        (
            "row (order_id=3)",
            "customer.name",
            "NullValue",
            "field customer.name: null in a non-nullable field",
        ),
        (
            "row (order_id=4)",
            "customer.tier",
            "UnknownEnumSymbol",
            "field customer.tier: 'platinum' is not a symbol of Tier (gold, basic); "
            "field scores[]: 'x' does not cast to double; "
            "field quantities[]: 'z' does not cast to int",
        ),
    ]


def test_integral_epochs_are_read_as_avro_writes_them(spark: Any) -> None:
    schema = {
        "type": "record",
        "name": "Epochs",
        "fields": [
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "millis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
    frame = spark.createDataFrame(
        [(19000, 1500, 1500), (3_000_000_000, 0, 0)], "day long, millis int, micros long"
    )

    result = validate_rows(frame, schema, "extract")

    as_text = result.valid.select(*[F.col(c).cast("string") for c in ("day", "millis", "micros")])
    assert as_text.collect() == [
        Row(day="2022-01-08", millis="1970-01-01 00:00:01.5", micros="1970-01-01 00:00:00.0015")
    ]
    assert [row.errorMessage for row in result.invalid.collect()] == [
        "field day: '3000000000' does not cast to date"
    ]


def test_nullable_unions_take_nulls_and_missing_optional_fields(spark: Any) -> None:
    frame = spark.createDataFrame(
        [(None, None, None, None, None)], ORDER_COLUMNS.replace(", extra string", "")
    )
    schema = {
        "type": "record",
        "name": "Loose",
        "fields": [
            {"name": "order_id", "type": ["null", "long"]},
            {"name": "customer", "type": ["null", "string"], "default": None},
            {"name": "created", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
            {"name": "rank", "type": ["null", "int"], "default": None},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": ["new"]},
        ],
    }

    result = validate_rows(frame.drop("customer"), schema, "load")

    assert result.valid.collect() == [
        Row(order_id=None, customer=None, created=None, rank=None, tags=["new"], scores=None, quantities=None)
    ]
    assert result.invalid.collect() == []


# --- outcomes -------------------------------------------------------------------------------


def test_first_violation_names_the_row_and_the_field(spark: Any) -> None:
    frame = spark.createDataFrame(
        [("17", "u017", "FR", "purchase", "abc", "2026-11-11T19:36:16Z")],
        "event_id string, user_id string, country string, event_type string, amount string,"
        " event_time string",
    )
    user_event = SchemaRegistry([REPO / "examples" / "schemas"]).get("user-event")

    result = validate_rows(frame, user_event, "extract")

    assert first_violation(result.invalid) == (
        "row (event_id=17, user_id=u017, country=FR): field amount: 'abc' does not cast to double"
    )
    assert first_violation(validate_rows(frame.limit(0), user_event, "extract").invalid) is None


@pytest.mark.parametrize(
    ("bad_row", "key", "raised", "every_bad_field"),
    [
        (
            ("2", "z", "1"),
            "id",
            "row (id=2): field kind: 'z' is not a symbol of Kind (a, b)",
            "row (id=2): field kind: 'z' is not a symbol of Kind (a, b)",
        ),
        (
            ("x", "z", "1"),
            "kind",
            "row (kind=z): field id: 'x' does not cast to int",
            "row (kind=z): field id: 'x' does not cast to int;"
            " field kind: 'z' is not a symbol of Kind (a, b)",
        ),
    ],
)
def test_valid_or_fail_raises_inside_the_pass_naming_the_row_and_its_first_bad_field(
    spark: Any, bad_row: tuple[str, str, str], key: str, raised: str, every_bad_field: str
) -> None:
    frame = spark.createDataFrame([("1", "a", "1"), bad_row], "id string, kind string, price string")
    result = validate_rows(frame, ITEM, "extract", key_fields=[key])

    with pytest.raises(SparkRuntimeException) as failure:
        result.valid_or_fail.collect()

    assert record_violation(failure.value) == raised
    assert first_violation(result.invalid) == every_bad_field


def test_persisted_checks_serve_both_frames(spark: Any) -> None:
    frame = spark.createDataFrame([("1", "a", "1"), ("x", "a", "1")], "id string, kind string, price string")

    result = validate_rows(frame, ITEM, "extract", persist=True)

    assert result.checked.is_cached
    assert [row.id for row in result.valid.collect()] == [1]
    assert [row.field for row in result.invalid.collect()] == ["id"]
    result.unpersist()
    assert not result.checked.is_cached


def test_unknown_key_fields_and_a_taken_validity_column_are_refused(spark: Any) -> None:
    frame = spark.createDataFrame([], f"id string, kind string, price string, {VALID_COLUMN} string")

    with pytest.raises(ConfigurationError) as unknown:
        validate_rows(frame.drop(VALID_COLUMN), ITEM, "extract", key_fields=["sku"])
    with pytest.raises(ConfigurationError) as taken:
        validate_rows(frame, ITEM, "extract")

    assert str(unknown.value) == "extract: key fields sku are not columns"
    assert str(taken.value) == "extract: _valid is reserved"


def test_the_sample_events_all_fit_the_user_event_schema(spark: Any) -> None:
    frame = spark.read.option("header", "true").csv(str(REPO / "examples" / "data" / "events.csv"))
    user_event = SchemaRegistry([REPO / "examples" / "schemas"]).get("user-event")

    result = validate_rows(frame, user_event, "extract")
    counts = result.checked.select(
        F.count(F.lit(1)).alias("rows"), result.invalid_count.alias("invalid")
    ).first()

    assert (counts["rows"], counts["invalid"]) == (2000, 0)
    assert result.valid.schema.simpleString() == (
        "struct<event_id:int,user_id:string,country:string,event_type:string,amount:double,event_time:timestamp>"
    )
