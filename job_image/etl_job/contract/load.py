"""The `load` block: sinks, keyed by `sinkType`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from etl_job.contract.base import (
    AVRO_NEEDS_SCHEMA_RULE,
    ColumnName,
    FileFormat,
    Name,
    SpecModel,
    ValueFormat,
    WriteMode,
    cel,
    cel_rules,
    check_avro_schema,
)
from etl_job.contract.connections import Connection, KafkaSecurity, S3Connection, SecretKeyRef


class S3Sink(SpecModel):
    """Files on any Hadoop filesystem."""

    sink_type: Literal["S3"] = Field(description="Kind of sink.")
    path: Name = Field(description="Output folder: s3a://bucket/prefix/, file:///out, out/.")
    format: FileFormat = Field(default=FileFormat.parquet)
    write_mode: WriteMode = Field(default=WriteMode.append, description="append or overwrite.")
    partition_by: list[ColumnName] = Field(
        default_factory=list, description="Partition folders by these columns."
    )
    compression: str | None = Field(
        default=None,
        description="Codec: snappy, gzip, zstd, none. Default: the format's (snappy for parquet, avro).",
    )
    partition_overwrite_mode: Literal["static", "dynamic"] = Field(
        default="static",
        description="With overwrite and partitionBy: static replaces the whole path, dynamic only the "
        "partitions this run writes.",
    )
    options: dict[str, str] = Field(default_factory=dict, description="Options passed to the Spark writer.")
    s3: S3Connection | None = Field(
        default=None, description="Endpoint, region and credentials of the store."
    )
    schema_name: Name | None = Field(default=None, description="Avro schema the output must satisfy.")

    @model_validator(mode="after")
    def _no_upsert(self) -> S3Sink:
        if self.write_mode == WriteMode.upsert:
            raise ValueError("writeMode upsert needs a database sink; files take append or overwrite")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.writeMode) || self.writeMode != 'upsert'",
                "writeMode upsert needs a database sink; files take append or overwrite",
                ".writeMode",
            ),
        )
    )


class JdbcSink(SpecModel):
    """A PostgreSQL or MySQL table."""

    sink_type: Literal["PostgreSQL", "MySQL"] = Field(description="Kind of sink.")
    connection: Connection
    credentials_ref: SecretKeyRef = Field(description="Secret key holding the database password.")
    table: Name = Field(description="Target table; created from the output's schema when missing.")
    write_mode: WriteMode = Field(default=WriteMode.append)
    primary_key: list[ColumnName] = Field(default_factory=list, description="Key columns; needed for upsert.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="No longer used: every write mode loads the rows in bulk into a staging table, "
        "then writes them into the table in one transaction. Accepted so that older specs still apply.",
    )
    schema_name: Name | None = Field(default=None, description="Avro schema the output must satisfy.")

    @model_validator(mode="after")
    def _upsert_needs_key(self) -> JdbcSink:
        if self.write_mode == WriteMode.upsert and not self.primary_key:
            raise ValueError("writeMode upsert needs primaryKey")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.writeMode) || self.writeMode != 'upsert' || "
                "(has(self.primaryKey) && size(self.primaryKey) > 0)",
                "writeMode upsert needs primaryKey",
                ".primaryKey",
            ),
        )
    )


CONFLUENT_NEEDS_SCHEMA_ID = "valueFormat avro-confluent needs schemaId"


class KafkaSink(SpecModel):
    """A Kafka topic; one message per row."""

    sink_type: Literal["Kafka"] = Field(description="Kind of sink.")
    bootstrap_servers: Name
    topic: Name
    key_column: ColumnName | None = Field(
        default=None, description="Column used as the message key, as a string."
    )
    value_format: ValueFormat = Field(
        default=ValueFormat.json,
        description="json: every column of the row as one JSON object; avro, avro-confluent: the "
        "fields of schemaName.",
    )
    write_mode: Literal["append"] = Field(default="append", description="Topics are append-only.")
    schema_name: Name | None = Field(default=None, description="Avro schema of the values.")
    schema_id: int | None = Field(
        default=None,
        ge=0,
        le=2147483647,
        description="Id of schemaName in the Confluent schema registry, written in the header of "
        "each value; needed for avro-confluent.",
    )
    security: KafkaSecurity | None = None
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Extra options for the Kafka writer; kafka.acks (default all) and "
        "kafka.enable.idempotence (default true) may be overridden here.",
    )

    @model_validator(mode="after")
    def _avro_needs_schema(self) -> KafkaSink:
        check_avro_schema(self.value_format, self.schema_name)
        if self.value_format == ValueFormat.avro_confluent and self.schema_id is None:
            raise ValueError(CONFLUENT_NEEDS_SCHEMA_ID)
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            AVRO_NEEDS_SCHEMA_RULE,
            cel(
                "!has(self.valueFormat) || self.valueFormat != 'avro-confluent' || has(self.schemaId)",
                CONFLUENT_NEEDS_SCHEMA_ID,
            ),
        )
    )


Sink = Annotated[S3Sink | JdbcSink | KafkaSink, Field(discriminator="sink_type")]
