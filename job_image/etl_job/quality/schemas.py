"""Avro schemas: the registry of `.avsc` files a pipeline names, and the Spark types they map to.

A schema is found by its file stem (`user-event`) or by its full name (`io.sparkops.UserEvent`).
Each file is parsed on its own with fastavro, so a file must define every named type it uses.
The walking helpers here (`resolve`, `nullable_branch`, `type_label`) are shared with validate.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType

from etl_job.contract import ConfigurationError

#: A parsed Avro schema node: a type name, a union (list) or a definition (mapping).
AvroType = str | list[Any] | Mapping[str, Any]
#: Named types of one schema by full name (records, enums, fixed).
NamedTypes = Mapping[str, Mapping[str, Any]]

#: Spark's DecimalType holds at most 38 digits.
MAX_DECIMAL_PRECISION = 38
REGISTRY_STAGE = "schemas"

_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


class SchemaRegistry:
    """Avro schemas loaded once from `.avsc` files in one or more directories.

    Directories are searched in order and the first one holding a name wins, as on a PATH, so
    a ConfigMap mounted before the image's own folder overrides it. Every file is parsed at
    start-up: a broken file fails the run before any data is read.
    Raises ConfigurationError for a missing directory, a file that does not parse, or two
    files of one directory defining the same full name."""

    def __init__(self, directories: Iterable[str | Path]) -> None:
        self.directories = [Path(d) for d in directories]
        self._by_stem: dict[str, dict[str, Any]] = {}
        self._by_full_name: dict[str, dict[str, Any]] = {}
        for directory in self.directories:
            self._load_directory(directory)

    def _load_directory(self, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigurationError(f"schema directory {directory} does not exist", stage=REGISTRY_STAGE)
        defined_here: dict[str, Path] = {}
        for path in sorted(directory.glob("*.avsc")):
            schema = load_schema_file(path)
            full_name = schema_full_name(schema)
            if full_name is not None:
                if full_name in defined_here:
                    raise ConfigurationError(
                        f"{path} and {defined_here[full_name]} both define {full_name}", stage=REGISTRY_STAGE
                    )
                defined_here[full_name] = path
                self._by_full_name.setdefault(full_name, schema)
            self._by_stem.setdefault(path.stem, schema)

    def get(self, name: str, *, stage: str = REGISTRY_STAGE) -> dict[str, Any]:
        """The parsed schema called `name` (file stem or full name).

        Raises ConfigurationError naming the directories searched when there is none."""
        schema = self._by_stem.get(name) or self._by_full_name.get(name)
        if schema is None:
            searched = ", ".join(str(d) for d in self.directories) or "(no directories)"
            known = ", ".join(self.names()) or "none"
            raise ConfigurationError(
                f"no Avro schema {name!r} in {searched} (found: {known})", stage=stage, field="schemaName"
            )
        return schema

    def names(self) -> list[str]:
        """File stems of every schema, sorted."""
        return sorted(self._by_stem)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._by_stem or name in self._by_full_name)


def load_schema_file(path: Path) -> dict[str, Any]:
    """One `.avsc` file, parsed. Raises ConfigurationError naming the file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as broken:
        raise ConfigurationError(f"{path}: cannot read JSON: {broken}", stage=REGISTRY_STAGE) from None
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"{path}: a schema file must hold one JSON object, not {type(document).__name__}",
            stage=REGISTRY_STAGE,
        )
    try:
        parsed = parse_schema(document)
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as broken:
        raise ConfigurationError(f"{path}: {_parse_failure(broken)}", stage=REGISTRY_STAGE) from None
    assert isinstance(parsed, dict)  # a JSON object parses to one
    return parsed


def _parse_failure(broken: Exception) -> str:
    # fastavro names an unknown type and nothing else: say what the name is.
    detail = f"unknown type {broken}" if isinstance(broken, UnknownType) else str(broken)
    return f"not a valid Avro schema: {detail}"


def schema_full_name(schema: Mapping[str, Any]) -> str | None:
    """The full name of a named type (fastavro writes it qualified when parsing)."""
    name = schema.get("name")
    return name if isinstance(name, str) and schema.get("type") in ("record", "enum", "fixed") else None


# --- walking parsed schemas --------------------------------------------------------------------


def as_parsed(schema: AvroType) -> AvroType:
    """`schema` parsed by fastavro (a no-op on parsed ones), so names are full and checked."""
    try:
        parsed: AvroType = parse_schema(dict(schema) if isinstance(schema, Mapping) else schema)
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as broken:
        raise ConfigurationError(_parse_failure(broken), stage=REGISTRY_STAGE) from None
    return parsed


def named_types(schema: AvroType) -> dict[str, Mapping[str, Any]]:
    """Every record, enum and fixed defined in a parsed schema, by full name.

    In a parsed schema a named type is written out where it first appears and referred to by
    its full name afterwards; references are resolved with this map."""
    found: dict[str, Mapping[str, Any]] = {}
    _collect_named(schema, found)
    return found


def _collect_named(node: Any, found: dict[str, Mapping[str, Any]]) -> None:
    if isinstance(node, list):
        for branch in node:
            _collect_named(branch, found)
    elif isinstance(node, Mapping):
        full_name = schema_full_name(node)
        if full_name is not None:
            found.setdefault(full_name, node)
        for child_key in ("type", "items", "values"):
            if not isinstance(node.get(child_key), str):
                _collect_named(node.get(child_key), found)
        for field in node.get("fields", []) if node.get("type") == "record" else []:
            _collect_named(field["type"], found)


def resolve(node: AvroType, named: NamedTypes) -> AvroType:
    """`node` with a reference to a named type replaced by its definition, and a mapping whose
    `type` is itself a schema ({"type": ["null", "int"]}) unwrapped."""
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        if node not in named:
            raise ConfigurationError(f"unknown Avro type {node}", stage=REGISTRY_STAGE)
        return named[node]
    if isinstance(node, Mapping) and not isinstance(node.get("type"), str):
        return resolve(node["type"], named)
    return node


def kind_of(node: AvroType) -> str:
    """The Avro type name of a resolved node: a primitive, record, enum, array, map, fixed, union."""
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    return str(node["type"])


def logical_type(node: AvroType) -> str | None:
    """The logical type of a resolved node that is valid for its base type, else None (the
    Avro specification says readers ignore a logical type that does not fit)."""
    if not isinstance(node, Mapping):
        return None
    logical, base = node.get("logicalType"), node.get("type")
    valid = {
        "decimal": ("bytes", "fixed"),
        "date": ("int",),
        "timestamp-millis": ("long",),
        "timestamp-micros": ("long",),
        "local-timestamp-millis": ("long",),
        "local-timestamp-micros": ("long",),
    }
    return logical if isinstance(logical, str) and base in valid.get(logical, ()) else None


def nullable_branch(node: AvroType, named: NamedTypes) -> tuple[bool, AvroType]:
    """(whether null is allowed, the resolved non-null type) of a node.

    Raises ConfigurationError for a union of several non-null types: Spark has no such type."""
    node = resolve(node, named)
    if kind_of(node) != "union":
        return kind_of(node) == "null", node
    assert isinstance(node, list)
    others = [branch for branch in node if resolve(branch, named) != "null"]
    if len(others) != 1:
        raise ConfigurationError(
            f"union {json.dumps(node)} has {len(others)} non-null branches; only [null, T] maps to Spark",
            stage=REGISTRY_STAGE,
        )
    return len(others) < len(node), resolve(others[0], named)


def type_label(node: AvroType) -> str:
    """How messages name a resolved non-null type: int, decimal(12,2), timestamp-millis, EventType."""
    logical = logical_type(node)
    if logical == "decimal":
        assert isinstance(node, Mapping)
        return f"decimal({node['precision']},{node.get('scale', 0)})"
    if logical is not None:
        return logical
    if isinstance(node, Mapping) and schema_full_name(node):
        return str(node["name"]).rsplit(".", 1)[-1]
    return kind_of(node)


# --- Avro -> Spark ----------------------------------------------------------------------------


def avro_to_spark_type(schema: AvroType) -> Any:
    """The Spark DataType of an Avro schema: a StructType for a record.

    Logical types map to DateType, TimestampType (timestamp-*), TimestampNTZType
    (local-timestamp-*) and DecimalType; enums to strings; unions with null to nullable
    types. Raises ConfigurationError for what Spark cannot hold: recursive records, unions of
    several non-null types, decimals wider than 38 digits."""
    parsed = as_parsed(schema)
    return spark_type(parsed, named_types(parsed))


def spark_type(node: AvroType, named: NamedTypes, _enclosing: tuple[str, ...] = ()) -> Any:
    """The Spark DataType of one node of a parsed schema (see avro_to_spark_type)."""
    from pyspark.sql import types as T

    _, node = nullable_branch(node, named)
    kind = kind_of(node)
    if kind == "record":
        assert isinstance(node, Mapping)
        name = str(node["name"])
        if name in _enclosing:
            raise ConfigurationError(
                f"record {name} contains itself; Spark types cannot", stage=REGISTRY_STAGE
            )
        return T.StructType(
            [
                T.StructField(
                    field["name"],
                    spark_type(field["type"], named, (*_enclosing, name)),
                    nullable=nullable_branch(field["type"], named)[0],
                )
                for field in node["fields"]
            ]
        )
    if kind == "array":
        assert isinstance(node, Mapping)
        items = node["items"]
        return T.ArrayType(spark_type(items, named, _enclosing), nullable_branch(items, named)[0])
    if kind == "map":
        assert isinstance(node, Mapping)
        values = node["values"]
        return T.MapType(
            T.StringType(), spark_type(values, named, _enclosing), nullable_branch(values, named)[0]
        )
    return _atomic_spark_type(node)


def _atomic_spark_type(node: AvroType) -> Any:
    from pyspark.sql import types as T

    logical = logical_type(node)
    if logical == "decimal":
        assert isinstance(node, Mapping)
        precision, scale = int(node["precision"]), int(node.get("scale", 0))
        if precision > MAX_DECIMAL_PRECISION:
            raise ConfigurationError(
                f"decimal({precision},{scale}) is wider than Spark's {MAX_DECIMAL_PRECISION} digits",
                stage=REGISTRY_STAGE,
            )
        return T.DecimalType(precision, scale)
    by_logical = {
        "date": T.DateType(),
        "timestamp-millis": T.TimestampType(),
        "timestamp-micros": T.TimestampType(),
        "local-timestamp-millis": T.TimestampNTZType(),
        "local-timestamp-micros": T.TimestampNTZType(),
    }
    if logical in by_logical:
        return by_logical[logical]
    by_kind = {
        "null": T.NullType(),
        "boolean": T.BooleanType(),
        "int": T.IntegerType(),
        "long": T.LongType(),
        "float": T.FloatType(),
        "double": T.DoubleType(),
        "bytes": T.BinaryType(),
        "fixed": T.BinaryType(),
        "string": T.StringType(),
        "enum": T.StringType(),
    }
    return by_kind[kind_of(node)]
