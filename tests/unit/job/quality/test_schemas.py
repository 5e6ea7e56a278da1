"""The Avro schema registry and the Spark types Avro schemas map to (no Spark session needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import types as T

from etl_job.contract import ConfigurationError
from etl_job.quality.schemas import SchemaRegistry, avro_to_spark_type

EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "schemas"


def record(*fields: dict[str, Any], name: str = "Thing") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "test", "fields": list(fields)}


def write(folder: Path, stem: str, schema: Any) -> Path:
    path = folder / f"{stem}.avsc"
    path.write_text(schema if isinstance(schema, str) else json.dumps(schema))
    return path


# --- the registry ---------------------------------------------------------------------------


def test_example_schemas_are_found_by_file_stem_and_by_full_name() -> None:
    registry = SchemaRegistry([EXAMPLES])

    assert registry.names() == ["transaction", "user-event", "user-summary"]
    for stem, full_name in [
        ("user-event", "io.sparkops.UserEvent"),
        ("user-summary", "io.sparkops.UserSummary"),
        ("transaction", "io.sparkops.Transaction"),
    ]:
        assert registry.get(stem) is registry.get(full_name)
        assert registry.get(stem)["name"] == full_name
        assert stem in registry and full_name in registry


def test_every_example_field_has_a_doc() -> None:
    for path in sorted(EXAMPLES.glob("*.avsc")):
        document = json.loads(path.read_text())
        assert document.get("doc"), path
        assert all(field.get("doc") for field in document["fields"]), path


def test_example_schemas_map_to_the_spark_types_the_pipelines_produce() -> None:
    registry = SchemaRegistry([EXAMPLES])

    assert avro_to_spark_type(registry.get("user-event")) == T.StructType(
        [
            T.StructField("event_id", T.IntegerType(), False),
            T.StructField("user_id", T.StringType(), False),
            T.StructField("country", T.StringType(), False),
            T.StructField("event_type", T.StringType(), False),
            T.StructField("amount", T.DoubleType(), False),
            T.StructField("event_time", T.TimestampType(), False),
        ]
    )
    assert avro_to_spark_type(registry.get("user-summary")) == T.StructType(
        [
            T.StructField("user_id", T.StringType(), False),
            T.StructField("country", T.StringType(), False),
            T.StructField("total_amount", T.DoubleType(), False),
            T.StructField("event_count", T.LongType(), False),
            T.StructField("rank_in_country", T.IntegerType(), True),
            T.StructField("running_total", T.DoubleType(), True),
            T.StructField("user_name", T.StringType(), True),
        ]
    )
    merchant = T.StructType(
        [
            T.StructField("merchant_id", T.StringType(), False),
            T.StructField("name", T.StringType(), False),
            T.StructField("category_code", T.StringType(), True),
        ]
    )
    assert avro_to_spark_type(registry.get("transaction")) == T.StructType(
        [
            T.StructField("transaction_id", T.StringType(), False),
            T.StructField("account_id", T.StringType(), False),
            T.StructField("amount", T.DecimalType(12, 2), False),
            T.StructField("currency", T.StringType(), False),
            T.StructField("status", T.StringType(), False),
            T.StructField("created_at", T.TimestampType(), False),
            T.StructField("merchant", merchant, True),
        ]
    )


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(ConfigurationError) as raised:
        SchemaRegistry([missing])

    assert str(raised.value) == f"schemas: schema directory {missing} does not exist"


def test_a_missing_schema_names_the_directories_searched(tmp_path: Path) -> None:
    write(tmp_path, "user", record({"name": "id", "type": "int"}, name="User"))
    registry = SchemaRegistry([tmp_path, EXAMPLES])

    with pytest.raises(ConfigurationError) as raised:
        registry.get("order", stage="extract")

    assert str(raised.value) == (
        f"extract: schemaName: no Avro schema 'order' in {tmp_path}, {EXAMPLES}"
        " (found: transaction, user, user-event, user-summary)"
    )
    assert raised.value.stage == "extract" and raised.value.field == "schemaName"


def test_a_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", '{"type": "record",')

    with pytest.raises(ConfigurationError) as raised:
        SchemaRegistry([tmp_path])

    assert str(raised.value).startswith(f"schemas: {path}: cannot read JSON: ")


def test_a_file_that_is_not_avro_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", record({"name": "id", "type": "integer"}))

    with pytest.raises(ConfigurationError) as raised:
        SchemaRegistry([tmp_path])

    assert str(raised.value) == f"schemas: {path}: not a valid Avro schema: unknown type test.integer"


def test_a_file_holding_no_object_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "list", "[]")

    with pytest.raises(ConfigurationError) as raised:
        SchemaRegistry([tmp_path])

    assert str(raised.value) == f"schemas: {path}: a schema file must hold one JSON object, not list"


def test_two_files_of_one_directory_may_not_define_one_name(tmp_path: Path) -> None:
    first = write(tmp_path, "a", record({"name": "id", "type": "int"}))
    second = write(tmp_path, "b", record({"name": "id", "type": "long"}))

    with pytest.raises(ConfigurationError) as raised:
        SchemaRegistry([tmp_path])

    assert str(raised.value) == f"schemas: {second} and {first} both define test.Thing"


def test_the_first_directory_holding_a_name_wins(tmp_path: Path) -> None:
    override, image = tmp_path / "configmap", tmp_path / "image"
    override.mkdir()
    image.mkdir()
    write(override, "thing", record({"name": "id", "type": "long"}))
    write(image, "thing", record({"name": "id", "type": "int"}))
    write(image, "other", record({"name": "id", "type": "int"}, name="Other"))

    registry = SchemaRegistry([override, image])

    assert registry.names() == ["other", "thing"]
    assert registry.get("thing")["fields"][0]["type"] == "long"
    assert registry.get("test.Thing")["fields"][0]["type"] == "long"


# --- Avro -> Spark --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("avro", "spark"),
    [
        ("boolean", T.BooleanType()),
        ("int", T.IntegerType()),
        ("long", T.LongType()),
        ("float", T.FloatType()),
        ("double", T.DoubleType()),
        ("bytes", T.BinaryType()),
        ("string", T.StringType()),
        ({"type": "int", "logicalType": "date"}, T.DateType()),
        ({"type": "long", "logicalType": "timestamp-millis"}, T.TimestampType()),
        ({"type": "long", "logicalType": "timestamp-micros"}, T.TimestampType()),
        ({"type": "long", "logicalType": "local-timestamp-millis"}, T.TimestampNTZType()),
        ({"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}, T.DecimalType(12, 2)),
        (
            {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 18},
            T.DecimalType(18, 0),
        ),
        ({"type": "string", "logicalType": "uuid"}, T.StringType()),
        # A logical type that does not fit its base type is ignored, as the specification says.
        ({"type": "string", "logicalType": "date"}, T.StringType()),
        ({"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}, T.StringType()),
        ({"type": "fixed", "name": "Hash", "size": 16}, T.BinaryType()),
        ({"type": "array", "items": "int"}, T.ArrayType(T.IntegerType(), False)),
        ({"type": "array", "items": ["null", "int"]}, T.ArrayType(T.IntegerType(), True)),
        ({"type": "map", "values": "double"}, T.MapType(T.StringType(), T.DoubleType(), False)),
        ({"type": "map", "values": ["null", "string"]}, T.MapType(T.StringType(), T.StringType(), True)),
    ],
)
def test_each_avro_type_maps_to_its_spark_type(avro: Any, spark: Any) -> None:
    assert avro_to_spark_type(record({"name": "value", "type": avro})) == T.StructType(
        [T.StructField("value", spark, False)]
    )


def test_unions_with_null_are_nullable_whichever_branch_comes_first() -> None:
    schema = record(
        {"name": "a", "type": ["null", "int"], "default": None},
        {"name": "b", "type": ["string", "null"]},
    )

    assert avro_to_spark_type(schema) == T.StructType(
        [T.StructField("a", T.IntegerType(), True), T.StructField("b", T.StringType(), True)]
    )


def test_nested_records_and_named_type_references() -> None:
    address = {"type": "record", "name": "Address", "fields": [{"name": "city", "type": "string"}]}
    schema = record(
        {"name": "home", "type": address},
        {"name": "work", "type": ["null", "test.Address"], "default": None},
        {"name": "past", "type": {"type": "array", "items": "Address"}},
    )
    address_type = T.StructType([T.StructField("city", T.StringType(), False)])

    assert avro_to_spark_type(schema) == T.StructType(
        [
            T.StructField("home", address_type, False),
            T.StructField("work", address_type, True),
            T.StructField("past", T.ArrayType(address_type, False), False),
        ]
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            record({"name": "next", "type": ["null", "test.Thing"]}),
            "schemas: record test.Thing contains itself; Spark types cannot",
        ),
        (
            record({"name": "either", "type": ["null", "int", "string"]}),
            'schemas: union ["null", "int", "string"] has 2 non-null branches; only [null, T] maps to Spark',
        ),
        (
            record({"name": "wide", "type": {"type": "bytes", "logicalType": "decimal", "precision": 40}}),
            "schemas: decimal(40,0) is wider than Spark's 38 digits",
        ),
        (
            record({"name": "id", "type": "integer"}),
            "schemas: not a valid Avro schema: unknown type test.integer",
        ),
    ],
)
def test_what_spark_cannot_hold_is_a_configuration_error(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        avro_to_spark_type(schema)

    assert str(raised.value) == message
