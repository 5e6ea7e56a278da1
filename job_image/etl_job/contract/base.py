"""What every contract model shares: the API group and kind, the base model, CEL rules and the
small types (names, durations, formats) that several blocks use.

The contract is the single source of truth for both planes. The operator validates objects with it
and the CRD's OpenAPI schema is generated from it (contract.crd); the job parses its configuration
with it. It imports nothing heavier than pydantic. Cross-field rules are written twice on purpose,
as a Python validator (for `etl validate` and the operator) and as a CEL rule in
`x-kubernetes-validations` (for `kubectl apply`); tests hold the two in agreement.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_GROUP = "etl.sparkops.io"
API_VERSION = "v1alpha1"
KIND = "ETLPipeline"


class SpecModel(BaseModel):
    """Base of every contract model: camelCase in YAML/JSON, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        use_enum_values=True,
    )


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


# --- shared pieces -------------------------------------------------------------------------

Name = Annotated[str, Field(min_length=1, max_length=253)]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]
Duration = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+ +(second|minute|hour|day|week)s?$",
        description='A Spark interval such as "10 minutes" or "1 hour".',
    ),
]
_SECONDS_PER_UNIT = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def duration_seconds(duration: str) -> int:
    """A Duration ("10 minutes") in seconds."""
    count, unit = duration.split()
    return int(count) * _SECONDS_PER_UNIT[unit.removesuffix("s")]


SparkMemory = Annotated[
    str, Field(pattern=r"^[0-9]+[kmgtKMGT]?$", description='JVM memory such as "512m" or "2g".')
]


class FileFormat(StrEnum):
    csv = "csv"
    json = "json"
    parquet = "parquet"
    avro = "avro"


class ValueFormat(StrEnum):
    json = "json"
    #: Plain binary Avro of the named schema.
    avro = "avro"
    #: Confluent wire format: a zero byte and a 4-byte schema id before the binary Avro.
    avro_confluent = "avro-confluent"


KafkaMetadataColumn = Literal["key", "topic", "partition", "offset", "timestamp"]


class WriteMode(StrEnum):
    append = "append"
    overwrite = "overwrite"
    upsert = "upsert"


AVRO_NEEDS_SCHEMA = "valueFormat avro and avro-confluent need schemaName"


def check_avro_schema(value_format: str, schema_name: str | None) -> None:
    if value_format != ValueFormat.json and schema_name is None:
        raise ValueError(AVRO_NEEDS_SCHEMA)


AVRO_NEEDS_SCHEMA_RULE = cel(
    "!has(self.valueFormat) || self.valueFormat == 'json' || has(self.schemaName)",
    AVRO_NEEDS_SCHEMA,
)
