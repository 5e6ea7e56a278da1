"""Validation of a DataFrame against an Avro record: columns once, then every row as Spark
expressions (no Python function per row), in the same pass over the data as the load.

Column check (`check_columns`): every required field (not nullable, no default) must be a
column, and each column's Spark type must be castable to its field's type. Extra columns are
allowed and kept after the schema's fields: a schema states what a stage needs, not all it sees.
Names match exactly (Avro names are case-sensitive).

Row check (`validate_rows`): a row is valid when its values break no rule (the `_valid`
column); for a row that breaks some, each field's first broken rule gives a message naming the
field, built for that row alone:

  NullValue           null in a field whose type is not a union with null
  NotCastable         a value that `try_cast` turns into null ('abc' as int)
  UnknownEnumSymbol   a string outside the enum's symbols
  DecimalOverflow     a number with more integer digits than decimal(p,s) allows

Valid rows come out conformed: each field cast to its Avro type's Spark type (enums as strings,
timestamp-millis as timestamps, integral timestamps read as epoch millis or micros, dates as
epoch days), in schema order. Decimals are rounded to their scale, as Spark casts do. A missing
optional field is filled with its default, else null.

Cost: no Spark action, no explode, and the checks of flat fields run in whole-stage generated
code (a higher-order function would turn it off for the whole stage; only arrays and maps in a
schema need them). Each row costs one boolean; messages are built only for a row that fails.
What remains is intrinsic: every field is read and parsed, including columns the load itself
would have pruned (a CSV's timestamps above all, which functions.timestamp_from_text reads
cheaper than Spark's cast).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from etl_job.contract import ConfigurationError, SchemaViolation
from etl_job.quality.guard import fail_where
from etl_job.quality.schemas import (
    AvroType,
    NamedTypes,
    as_parsed,
    kind_of,
    logical_type,
    named_types,
    nullable_branch,
    spark_type,
    type_label,
)
from etl_job.runtime.columns import named_column
from etl_job.runtime.functions import timestamp_from_text

#: The boolean column that tells a row breaking no rule of the schema.
VALID_COLUMN = "_valid"
#: Columns of the invalid-records frame, in order.
INVALID_COLUMNS = ("originalRecord", "recordKey", "field", "errorType", "errorMessage")
#: Values shown in messages are cut to this many characters.
SHOWN_CHARS = 60
#: Key values in a row label are cut to this many characters.
KEY_CHARS = 40
#: Without key fields, a row is named by its first columns (usually its identifiers).
DEFAULT_KEY_COLUMNS = 3
#: Enum symbols listed in a message, at most.
SHOWN_SYMBOLS = 10


class ErrorType(StrEnum):
    """The `errorType` of an invalid record: which rule its first bad field broke."""

    NULL_VALUE = "NullValue"
    NOT_CASTABLE = "NotCastable"
    UNKNOWN_ENUM_SYMBOL = "UnknownEnumSymbol"
    DECIMAL_OVERFLOW = "DecimalOverflow"


@dataclass(frozen=True)
class _Rule:
    """One way a value can be wrong. Columns, so a rule inside an array is one too."""

    broken: Any  # boolean Column: true where the value breaks the rule
    field: Any  # string Column: path of the field at fault
    error_type: Any  # string Column: an ErrorType
    message: Any  # string Column: "field amount: 'abc' does not cast to double"


@dataclass(frozen=True)
class _Conformed:
    """A value converted to its Avro type, and the rules it was checked against, in order."""

    value: Any
    rules: list[_Rule]


# --- column check ---------------------------------------------------------------------------


def check_columns(frame_schema: Any, avro_schema: Mapping[str, Any], stage: str) -> list[str]:
    """Problems that make every row invalid, as "<stage>: field <path>: <problem>"; empty when
    the frame's columns fit the record. Values that may or may not cast (string -> int) are
    left to the row check."""
    return [f"{stage}: {problem}" for problem in _column_problems(frame_schema, avro_schema)]


def _column_problems(frame_schema: Any, avro_schema: Mapping[str, Any]) -> list[str]:
    record, named = _record(avro_schema)
    return _record_problems(frame_schema, record, "", named)


def _record_problems(source: Any, record: Mapping[str, Any], prefix: str, named: NamedTypes) -> list[str]:
    columns = {column.name: column.dataType for column in source.fields}
    problems: list[str] = []
    for field in record["fields"]:
        path = prefix + field["name"]
        if field["name"] in columns:
            problems += _type_problems(columns[field["name"]], field["type"], path, named)
        elif _is_required(field, named):
            problems.append(f"field {path}: required by {type_label(record)} but missing")
    return problems


def _type_problems(source: Any, avro: AvroType, path: str, named: NamedTypes) -> list[str]:
    from pyspark.sql import types as T

    _, target = nullable_branch(avro, named)
    kind = kind_of(target)
    if isinstance(source, T.NullType):
        return []
    if kind in ("record", "array", "map"):
        expected = {"record": T.StructType, "array": T.ArrayType, "map": T.MapType}[kind]
        if not isinstance(source, expected):
            label = kind if type_label(target) == kind else f"{kind} {type_label(target)}"
            return [f"field {path}: {source.simpleString()} cannot be cast to {label}"]
    if kind == "record":
        assert isinstance(target, Mapping)
        return _record_problems(source, target, f"{path}.", named)
    if kind == "array":
        assert isinstance(target, Mapping)
        return _type_problems(source.elementType, target["items"], f"{path}[]", named)
    if kind == "map":
        assert isinstance(target, Mapping)
        key_problems = (
            []
            if _castable(source.keyType, T.StringType())
            else [f"field {path}: map keys of {source.keyType.simpleString()} cannot be cast to string"]
        )
        return key_problems + _type_problems(source.valueType, target["values"], f"{path}[]", named)
    if not _castable(source, spark_type(target, named)):
        return [f"field {path}: {source.simpleString()} cannot be cast to {type_label(target)}"]
    return []


def _castable(source: Any, target: Any) -> bool:
    """Whether some values of atomic type `source` cast to `target` (Spark's rules, minus the
    ambiguous ones: numbers as timestamps only through the epoch functions, and no timestamp
    turned into a number)."""
    from pyspark.sql import types as T

    atomic = (
        T.BooleanType,
        T.NumericType,
        T.StringType,
        T.BinaryType,
        T.DateType,
        T.TimestampType,
        T.TimestampNTZType,
    )
    if source == target or isinstance(source, T.NullType):
        return True
    if not isinstance(source, atomic) or not isinstance(target, atomic):
        return False
    if isinstance(source, T.StringType) or isinstance(target, T.StringType):
        return True
    numbers = (T.NumericType, T.BooleanType)
    if isinstance(source, numbers) and isinstance(target, numbers):
        return True
    datetimes = (T.DateType, T.TimestampType, T.TimestampNTZType)
    if isinstance(source, datetimes) and isinstance(target, datetimes):
        return True
    return isinstance(source, T.IntegralType) and isinstance(target, (T.DateType, T.TimestampType))


def _is_required(field: Mapping[str, Any], named: NamedTypes) -> bool:
    return "default" not in field and not nullable_branch(field["type"], named)[0]


def _record(avro_schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], NamedTypes]:
    parsed = as_parsed(avro_schema)
    if kind_of(parsed) != "record":
        raise ConfigurationError(f"rows are validated against a record, not {type_label(parsed)}")
    assert isinstance(parsed, Mapping)
    return parsed, named_types(parsed)


# --- row check ------------------------------------------------------------------------------


def _fields(
    get: Callable[[str], Any], source: Any, record: Mapping[str, Any], prefix: str, named: NamedTypes
) -> list[tuple[str, _Conformed]]:
    """Each field of `record` read with `get` from a struct (or frame) of type `source`."""
    columns = {column.name: column.dataType for column in source.fields}
    conformed: list[tuple[str, _Conformed]] = []
    for field in record["fields"]:
        name = field["name"]
        if name in columns:
            conformed.append((name, _conform(get(name), columns[name], field["type"], prefix + name, named)))
        else:
            conformed.append((name, _Conformed(_default(field, named), [])))
    return conformed


def _conform(value: Any, source: Any, avro: AvroType, path: str, named: NamedTypes) -> _Conformed:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    nullable, target = nullable_branch(avro, named)
    null_rules = (
        []
        if nullable
        else [
            _rule(
                value.isNull(),
                path,
                ErrorType.NULL_VALUE,
                F.lit(f"field {path}: null in a non-nullable field"),
            )
        ]
    )
    if isinstance(source, T.NullType):
        return _Conformed(F.lit(None).cast(spark_type(target, named)), null_rules)
    present = _conform_present(value, source, target, path, named)
    return _Conformed(present.value, null_rules + present.rules)


def _conform_present(value: Any, source: Any, target: AvroType, path: str, named: NamedTypes) -> _Conformed:
    """`value` converted to `target`; its rules hold where the value is null."""
    kind = kind_of(target)
    if isinstance(target, Mapping):
        if kind == "record":
            return _conform_record(value, source, target, path, named)
        if kind == "array":
            return _conform_array(value, source, target, path, named)
        if kind == "map":
            return _conform_map(value, source, target, path, named)
        if kind == "enum":
            return _conform_enum(value, source, target, path)
    return _conform_atomic(value, source, target, path, named)


def _conform_record(
    value: Any, source: Any, record: Mapping[str, Any], path: str, named: NamedTypes
) -> _Conformed:
    from pyspark.sql import functions as F

    fields = _fields(value.getField, source, record, f"{path}.", named)
    struct = F.struct(*[conformed.value.alias(name) for name, conformed in fields])
    # A null record stays null, and its fields are not checked.
    as_record = F.when(value.isNull(), F.lit(None).cast(spark_type(record, named))).otherwise(struct)
    rules = [
        _Rule(value.isNotNull() & rule.broken, rule.field, rule.error_type, rule.message)
        for _, conformed in fields
        for rule in conformed.rules
    ]
    return _Conformed(as_record, rules)


def _conform_array(
    value: Any, source: Any, array: Mapping[str, Any], path: str, named: NamedTypes
) -> _Conformed:
    from pyspark.sql import functions as F

    def element(item: Any) -> _Conformed:
        return _conform(item, source.elementType, array["items"], f"{path}[]", named)

    converted = (
        value if source == spark_type(array, named) else F.transform(value, lambda x: element(x).value)
    )
    return _Conformed(converted, _rules_over(value, element))


def _conform_map(
    value: Any, source: Any, avro_map: Mapping[str, Any], path: str, named: NamedTypes
) -> _Conformed:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    def entry(item: Any) -> _Conformed:
        return _conform(item, source.valueType, avro_map["values"], f"{path}[]", named)

    converted = value
    if source.keyType != T.StringType():
        converted = F.transform_keys(converted, lambda k, _: k.cast("string"))
    if source.valueType != spark_type(avro_map["values"], named):
        converted = F.transform_values(converted, lambda _, v: entry(v).value)
    return _Conformed(converted, _rules_over(F.map_values(value), entry))


def _rules_over(items: Any, element: Callable[[Any], _Conformed]) -> list[_Rule]:
    """One rule for an array: broken where any element breaks one, reporting the first."""
    from pyspark.sql import functions as F

    if not element(F.lit(None)).rules:
        return []

    def first(pick: Callable[[_Rule], Any]) -> Any:
        found = F.filter(
            F.transform(items, lambda x: _first_of(element(x).rules, pick)), lambda m: m.isNotNull()
        )
        return F.try_element_at(found, F.lit(1))

    broken = F.exists(items, lambda x: _any_broken(element(x).rules))
    return [
        _Rule(broken, first(lambda r: r.field), first(lambda r: r.error_type), first(lambda r: r.message))
    ]


def _conform_enum(value: Any, source: Any, enum: Mapping[str, Any], path: str) -> _Conformed:
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    symbols: list[str] = list(enum["symbols"])
    converted = value if isinstance(source, T.StringType) else value.try_cast("string")
    listed = ", ".join(symbols[:SHOWN_SYMBOLS]) + (", ..." if len(symbols) > SHOWN_SYMBOLS else "")
    unknown = _rule(
        converted.isNotNull() & ~converted.isin(*symbols),
        path,
        ErrorType.UNKNOWN_ENUM_SYMBOL,
        F.concat(
            F.lit(f"field {path}: '"),
            _shown(converted),
            F.lit(f"' is not a symbol of {type_label(enum)} ({listed})"),
        ),
    )
    return _Conformed(converted, [unknown])


def _conform_atomic(value: Any, source: Any, target: AvroType, path: str, named: NamedTypes) -> _Conformed:
    from pyspark.sql import functions as F

    target_type = spark_type(target, named)
    if source == target_type:
        return _Conformed(value, [])
    converted = _convert(value, source, target, target_type)
    if _always_converts(source, target_type):
        return _Conformed(converted, [])
    does_not_cast = F.concat(
        F.lit(f"field {path}: '"), _shown(value), F.lit(f"' does not cast to {type_label(target)}")
    )
    error_type, message = F.lit(ErrorType.NOT_CASTABLE.value), does_not_cast
    if logical_type(target) == "decimal":
        # A number that is not a decimal of this precision has too many integer digits.
        is_number = value.try_cast("double").isNotNull()
        overflows = F.concat(
            F.lit(f"field {path}: '"), _shown(value), F.lit(f"' overflows {type_label(target)}")
        )
        error_type = F.when(is_number, F.lit(ErrorType.DECIMAL_OVERFLOW.value)).otherwise(error_type)
        message = F.when(is_number, overflows).otherwise(does_not_cast)
    return _Conformed(
        converted, [_Rule(value.isNotNull() & converted.isNull(), F.lit(path), error_type, message)]
    )


def _convert(value: Any, source: Any, target: AvroType, target_type: Any) -> Any:
    """Spark's try_cast, except integral numbers as Avro reads them: epoch millis, micros, days."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(source, T.IntegralType):
        by_epoch = {
            "timestamp-millis": F.timestamp_millis,
            "timestamp-micros": F.timestamp_micros,
        }
        logical = logical_type(target)
        if logical in by_epoch:
            return by_epoch[logical](value)
        if logical == "date":
            # Days since the epoch are an Avro int: a long beyond it does not cast.
            return F.date_from_unix_date(value.try_cast("int"))
    if isinstance(source, T.StringType) and isinstance(target_type, T.TimestampType):
        return timestamp_from_text(value)
    return value.try_cast(target_type)


def _always_converts(source: Any, target: Any) -> bool:
    """Conversions that cannot fail, so need no rule: widening, and anything to a string."""
    from pyspark.sql import types as T

    if isinstance(target, T.StringType):
        return True
    integral_width = {T.ByteType: 1, T.ShortType: 2, T.IntegerType: 3, T.LongType: 4}
    if type(source) in integral_width and type(target) in integral_width:
        return integral_width[type(source)] <= integral_width[type(target)]
    if isinstance(source, T.IntegralType) and isinstance(target, (T.TimestampType, T.DoubleType)):
        return True
    if isinstance(source, T.IntegralType) and isinstance(target, T.DateType):
        return not isinstance(source, T.LongType)
    if isinstance(source, T.FloatType) and isinstance(target, T.DoubleType):
        return True
    if isinstance(source, T.DecimalType) and isinstance(target, T.DecimalType):
        return (
            source.scale <= target.scale
            and source.precision - source.scale <= target.precision - target.scale
        )
    return isinstance(source, T.DateType) and isinstance(target, (T.TimestampType, T.TimestampNTZType))


def _default(field: Mapping[str, Any], named: NamedTypes) -> Any:
    """A missing optional field: its default in its Spark type, else null."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    target_type = spark_type(field["type"], named)
    default = field.get("default")
    if default is None:
        return F.lit(None).cast(target_type)
    _, target = nullable_branch(field["type"], named)
    if kind_of(target) in ("record", "array", "map"):
        return F.from_json(F.lit(json.dumps(default)), target_type)
    if logical_type(target) == "decimal":
        # Avro writes a decimal default as the bytes of its unscaled two's-complement integer.
        assert isinstance(target, Mapping)
        unscaled = int.from_bytes(str(default).encode("latin-1"), "big", signed=True)
        return F.lit(Decimal(unscaled).scaleb(-int(target.get("scale", 0)))).cast(target_type)
    if kind_of(target) in ("bytes", "fixed"):
        return F.lit(bytearray(str(default).encode("latin-1"))).cast(target_type)
    literal = F.lit(default)
    return _convert(
        literal, T.LongType() if isinstance(default, int) else T.StringType(), target, target_type
    )


def _rule(broken: Any, path: str, error_type: ErrorType, message: Any) -> _Rule:
    from pyspark.sql import functions as F

    return _Rule(broken, F.lit(path), F.lit(error_type.value), message)


def _first_of(rules: Sequence[_Rule], pick: Callable[[_Rule], Any]) -> Any:
    """`pick` of the first broken rule; null when none is broken."""
    from pyspark.sql import functions as F

    case = F.when(rules[0].broken, pick(rules[0]))
    for rule in rules[1:]:
        case = case.when(rule.broken, pick(rule))
    return case


def _any_broken(rules: Sequence[_Rule]) -> Any:
    from pyspark.sql import functions as F

    broken = F.coalesce(rules[0].broken, F.lit(False))
    for rule in rules[1:]:
        broken = broken | F.coalesce(rule.broken, F.lit(False))
    return broken


def _shown(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.substring(value.cast("string"), 1, SHOWN_CHARS)


# --- the frame ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FramePlan:
    """Every column expression of one validation, built from the frame's schema alone."""

    valid: Any
    errors: Any
    output: list[Any]
    first_field: Any
    first_error_type: Any
    #: The message of the row's first broken rule: a single CASE, far less generated code in
    #: the hot loop than every message, which is worth it where it is never computed.
    first_message: Any


def _plan(frame_schema: Any, avro_schema: Mapping[str, Any]) -> _FramePlan:
    from pyspark.sql import functions as F

    record, named = _record(avro_schema)
    fields = _fields(named_column, frame_schema, record, "", named)
    ruled = [conformed.rules for _, conformed in fields if conformed.rules]
    every_rule = [rule for rules in ruled for rule in rules]
    # One boolean decides a row; its messages are built only when it is false.
    valid = ~_any_broken(every_rule) if every_rule else F.lit(True)
    messages = [_first_of(rules, lambda r: r.message) for rules in ruled]
    no_errors = F.array().cast("array<string>")
    errors = no_errors
    if messages:
        # Not filter(): a higher-order function turns whole-stage code generation off for the
        # stage (the load's aggregation too). array_except drops the nulls in generated code;
        # messages name their field, so it drops no duplicates.
        every_message = F.array_except(F.array(*messages), F.array(F.lit(None).cast("string")))
        errors = F.when(valid, no_errors).otherwise(every_message)
    field_names = {name for name, _ in fields}
    extras = [named_column(c.name) for c in frame_schema.fields if c.name not in field_names]
    output = [conformed.value.alias(name) for name, conformed in fields] + extras
    # The fields are checked in schema order, so the first non-null one is the first message's.
    first_field = F.coalesce(*[_first_of(rules, lambda r: r.field) for rules in ruled], F.lit(None))
    first_type = F.coalesce(*[_first_of(rules, lambda r: r.error_type) for rules in ruled], F.lit(None))
    first_message = _first_of(every_rule, lambda r: r.message) if every_rule else F.lit(None)
    return _FramePlan(
        valid,
        errors,
        output,
        first_field.cast("string"),
        first_type.cast("string"),
        first_message.cast("string"),
    )


def error_messages(frame_schema: Any, avro_schema: Mapping[str, Any]) -> Any:
    """The array<string> of a row's messages, empty when the row is valid.
    Check the columns first (check_columns): this assumes they fit."""
    return _plan(frame_schema, avro_schema).errors


def conformed_columns(frame_schema: Any, avro_schema: Mapping[str, Any]) -> list[Any]:
    """The record's fields cast to their Spark types, in schema order, then the extra columns."""
    return _plan(frame_schema, avro_schema).output


def row_label(columns: Sequence[str], key_fields: Sequence[str] = ()) -> Any:
    """How messages name a row: "row (event_id=17, user_id=u001, country=FR)", from its key
    fields or else its first columns, each value cut short. Spark has no line numbers to offer."""
    from pyspark.sql import functions as F

    keys = list(key_fields) or list(columns[:DEFAULT_KEY_COLUMNS])
    shown = [
        F.concat(
            F.lit(f"{key}="),
            F.coalesce(F.substring(named_column(key).cast("string"), 1, KEY_CHARS), F.lit("null")),
        )
        for key in keys
    ]
    return F.concat(F.lit("row ("), F.concat_ws(", ", *shown), F.lit(")"))


@dataclass(frozen=True)
class ValidationResult:
    """The frames of one validation. All lazy: no Spark job runs until one is used.

    `checked` is the input with VALID_COLUMN added (true: the row breaks no rule). Use `valid`
    and `invalid` (tolerance all: validate with persist=True when both are used, else the input
    is read and checked twice), or `valid_or_fail` (tolerance none: the one pass that loads the
    data fails at the first bad row, named with its first bad field)."""

    checked: Any
    _plan: _FramePlan
    _label: Any
    _columns: tuple[str, ...]

    @property
    def invalid_count(self) -> Any:
        """An aggregate expression over `checked`: how many rows are invalid."""
        from pyspark.sql import functions as F

        return F.count_if(~F.col(VALID_COLUMN))

    def keep_valid(self, checked: Any) -> Any:
        """The valid rows of `checked` (this result's `checked`, observed or otherwise derived
        with its columns kept), conformed."""
        from pyspark.sql import functions as F

        return checked.where(F.col(VALID_COLUMN)).select(*self._plan.output)

    @property
    def valid(self) -> Any:
        """Valid rows, conformed: the schema's fields in its types and order, then extra columns."""
        return self.keep_valid(self.checked)

    @property
    def invalid(self) -> Any:
        """One row per invalid input row: originalRecord (its JSON), recordKey, field (the first
        at fault), errorType, errorMessage (every bad field's message, joined by "; ")."""
        from pyspark.sql import functions as F

        original = F.to_json(
            F.struct(*[named_column(c) for c in self._columns]), {"ignoreNullFields": "false"}
        )
        return self.checked.where(~F.col(VALID_COLUMN)).select(
            original.alias("originalRecord"),
            self._label.alias("recordKey"),
            self._plan.first_field.alias("field"),
            self._plan.first_error_type.alias("errorType"),
            F.array_join(self._plan.errors, "; ").alias("errorMessage"),
        )

    @property
    def valid_or_fail(self) -> Any:
        """`valid`, except that computing it raises on the first invalid row (guard.py), so
        tolerance none costs no extra pass. The message names the row and its first bad field
        (first_violation names every bad field); guard.record_violation reads it back."""
        from pyspark.sql import functions as F

        first_message = F.array(self._plan.first_message)
        return fail_where(self.checked, ~F.col(VALID_COLUMN), self._label, first_message).select(
            *self._plan.output
        )

    def unpersist(self) -> None:
        """Free the persisted rows (validate_rows(persist=True)) once both frames are written."""
        self.checked.unpersist()


def validate_rows(
    frame: Any,
    avro_schema: Mapping[str, Any],
    stage: str,
    *,
    key_fields: Sequence[str] = (),
    persist: bool = False,
) -> ValidationResult:
    """Check `frame` against an Avro record: its columns now, its rows lazily.

    Raises SchemaViolation (no Spark job) when the columns cannot fit the record, and
    ConfigurationError for an unknown key field or a frame that has a VALID_COLUMN column.
    Runs no Spark action. With persist=True the checked rows are persisted (memory, then
    disk) on first use, so `valid` and `invalid` together read the input once."""
    from pyspark import StorageLevel

    problems = _column_problems(frame.schema, avro_schema)
    if problems:
        raise SchemaViolation(
            f"columns do not fit Avro record {type_label(as_parsed(avro_schema))}: " + "; ".join(problems),
            stage=stage,
        )
    columns = tuple(frame.columns)
    unknown = [key for key in key_fields if key not in columns]
    if unknown or VALID_COLUMN in columns:
        what = (
            f"key fields {', '.join(unknown)} are not columns" if unknown else f"{VALID_COLUMN} is reserved"
        )
        raise ConfigurationError(what, stage=stage)
    plan = _plan(frame.schema, avro_schema)
    checked = frame.withColumn(VALID_COLUMN, plan.valid)
    if persist:
        checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
    return ValidationResult(checked, plan, row_label(columns, key_fields), columns)


def first_violation(invalid_frame: Any) -> str | None:
    """The message that fails a run with tolerance none: "row (event_id=17, ...): field amount:
    'abc' does not cast to double", from the first row of `invalid` (a Spark job that reads
    until it finds one: all the input when every row is valid). None when there is none."""
    first = invalid_frame.select("recordKey", "errorMessage").first()
    return None if first is None else f"{first['recordKey']}: {first['errorMessage']}"
