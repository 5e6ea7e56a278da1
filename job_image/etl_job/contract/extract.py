"""The `extract` block: sources, keyed by `sourceType`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from etl_job.contract.base import (
    AVRO_NEEDS_SCHEMA_RULE,
    ColumnName,
    FileFormat,
    KafkaMetadataColumn,
    Name,
    SpecModel,
    ValueFormat,
    cel,
    cel_rules,
    check_avro_schema,
)
from etl_job.contract.connections import Connection, KafkaSecurity, S3Connection, SecretKeyRef


class S3Source(SpecModel):
    """Files on any Hadoop filesystem: s3a://, file://, or a local path."""

    source_type: Literal["S3"] = Field(description="Kind of source.")
    path: Name = Field(description="A file or folder: s3a://bucket/prefix/, file:///data, data/x.csv.")
    format: FileFormat = Field(default=FileFormat.parquet, description="File format.")
    options: dict[str, str] = Field(
        default_factory=dict, description='Options passed to the Spark reader, such as header: "true".'
    )
    s3: S3Connection | None = Field(
        default=None, description="Endpoint, region and credentials of the store."
    )
    schema_name: Name | None = Field(default=None, description="Avro schema the extracted rows must satisfy.")


class IncrementalExtract(SpecModel):
    """Read only rows past the high-water mark of the last successful run."""

    column: ColumnName = Field(description="A monotonically growing column, such as updated_at.")


class JdbcSource(SpecModel):
    """A PostgreSQL or MySQL table or query, read in parallel over JDBC."""

    source_type: Literal["PostgreSQL", "MySQL"] = Field(description="Kind of source.")
    connection: Connection
    credentials_ref: SecretKeyRef = Field(description="Secret key holding the database password.")
    table: Name | None = Field(default=None, description="Table to read; or give `query`.")
    query: str | None = Field(default=None, min_length=1, description="SELECT to read; or give `table`.")
    partition_column: ColumnName | None = Field(
        default=None, description="Numeric or date column to split parallel reads on."
    )
    num_partitions: int | None = Field(default=None, ge=1, le=1024, description="Parallel reads.")
    lower_bound: str | None = Field(
        default=None, description="Lowest partitionColumn value; found when absent."
    )
    upper_bound: str | None = Field(
        default=None, description="Highest partitionColumn value; found when absent."
    )
    fetch_size: int = Field(default=10000, ge=1, description="Rows fetched per round trip.")
    incremental: IncrementalExtract | None = None
    schema_name: Name | None = Field(default=None, description="Avro schema the extracted rows must satisfy.")

    @model_validator(mode="after")
    def _table_or_query(self) -> JdbcSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.table) != has(self.query)", "give exactly one of table or query"),
        )
    )


class KafkaSource(SpecModel):
    """A Kafka topic, read between two offsets (batch) or continuously (streaming)."""

    source_type: Literal["Kafka"] = Field(description="Kind of source.")
    bootstrap_servers: Name = Field(description="host:port[,host:port...] of the brokers.")
    topic: Name = Field(description="Topic to read.")
    starting_offsets: str = Field(
        default="earliest", description='"earliest", "latest", or JSON offsets per partition.'
    )
    ending_offsets: str = Field(
        default="latest", description='"latest" or JSON offsets per partition (batch only).'
    )
    value_format: ValueFormat = Field(default=ValueFormat.json, description="Encoding of message values.")
    schema_name: Name | None = Field(
        default=None,
        description="Avro schema of the values; needed for the Avro value formats. With json, the "
        "values are parsed into its fields; without it, each value is one string column `value`.",
    )
    metadata_columns: list[KafkaMetadataColumn] = Field(
        default_factory=list,
        description="Message fields added as columns kafka_<name>: key, topic, partition, offset, timestamp.",
    )
    security: KafkaSecurity | None = None
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Extra options for the Kafka reader, such as kafka.max.poll.records; "
        "kafka.default.api.timeout.ms also bounds the check that the topic exists (default 30000).",
    )

    @model_validator(mode="after")
    def _avro_needs_schema(self) -> KafkaSource:
        check_avro_schema(self.value_format, self.schema_name)
        return self

    model_config = ConfigDict(json_schema_extra=cel_rules(AVRO_NEEDS_SCHEMA_RULE))


Source = Annotated[S3Source | JdbcSource | KafkaSource, Field(discriminator="source_type")]
