"""The pipeline contract: pydantic models of the ETLPipeline spec and status.

The single source of truth for both planes. The operator validates objects with it and the CRD's
OpenAPI schema is generated from it (etl_job.crd); the job parses its configuration with it.
This module imports nothing heavier than pydantic. Cross-field rules are written twice on
purpose, as a Python validator (for `etl validate` and the operator) and as a CEL rule in
`x-kubernetes-validations` (for `kubectl apply`); tests hold the two in agreement.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
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
SparkMemory = Annotated[
    str, Field(pattern=r"^[0-9]+[kmgtKMGT]?$", description='JVM memory such as "512m" or "2g".')
]


class SecretKeyRef(SpecModel):
    """A key of a Kubernetes Secret in the pipeline's namespace. Only the reference is stored."""

    name: Name = Field(description="Name of the Secret.")
    key: Name = Field(description="Key inside the Secret.")


class Connection(SpecModel):
    """Where a database listens. The password comes from `credentialsRef`, never from here."""

    host: Name = Field(description="Host name or address of the database server.")
    port: int = Field(ge=1, le=65535, description="TCP port of the database server.")
    database: Name = Field(description="Database (catalog) to connect to.")
    user: Name | None = Field(default=None, description="User to connect as; or give `userRef`.")
    user_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the user name; or give `user`."
    )
    options: dict[str, str] = Field(default_factory=dict, description="Extra JDBC connection properties.")

    @model_validator(mode="after")
    def _user_or_ref(self) -> Connection:
        if (self.user is None) == (self.user_ref is None):
            raise ValueError("give exactly one of user or userRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.user) != has(self.userRef)", "give exactly one of user or userRef")
        )
    )


class S3Connection(SpecModel):
    """How to reach an S3-compatible store. Set per bucket, so two blocks may name two stores.
    Without key references the default AWS credential chain applies (web identity, instance role)."""

    endpoint: str | None = Field(
        default=None,
        min_length=1,
        description="Endpoint URL, such as http://minio.storage:9000; default: AWS for the region.",
    )
    region: str | None = Field(default=None, min_length=1, description="Region, such as eu-west-1.")
    path_style_access: bool = Field(
        default=False, description="Address buckets as endpoint/bucket (most S3-compatible servers)."
    )
    access_key_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the access key id."
    )
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the secret access key."
    )
    session_token_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a session token (temporary credentials)."
    )

    @model_validator(mode="after")
    def _key_pair(self) -> S3Connection:
        if (self.access_key_ref is None) != (self.secret_key_ref is None):
            raise ValueError("give both accessKeyRef and secretKeyRef, or neither")
        if self.session_token_ref is not None and self.access_key_ref is None:
            raise ValueError("sessionTokenRef needs accessKeyRef and secretKeyRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.accessKeyRef) == has(self.secretKeyRef)",
                "give both accessKeyRef and secretKeyRef, or neither",
            ),
            cel(
                "!has(self.sessionTokenRef) || has(self.accessKeyRef)",
                "sessionTokenRef needs accessKeyRef and secretKeyRef",
            ),
        )
    )


class KafkaSecurity(SpecModel):
    """How to authenticate to the brokers. The SASL user and password come from a Secret."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="SASL_SSL", description="security.protocol of the Kafka clients."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism."
    )
    username_ref: SecretKeyRef | None = Field(default=None, description="Secret key holding the SASL user.")
    password_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the SASL password."
    )

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSecurity:
        if self.protocol.startswith("SASL") and (self.username_ref is None or self.password_ref is None):
            raise ValueError(f"protocol {self.protocol} needs usernameRef and passwordRef")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.protocol) && !self.protocol.startsWith('SASL')) || "
                "(has(self.usernameRef) && has(self.passwordRef))",
                "SASL protocols need usernameRef and passwordRef",
            ),
        )
    )


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


# --- sources --------------------------------------------------------------------------------


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


AVRO_NEEDS_SCHEMA = "valueFormat avro and avro-confluent need schemaName"


def _check_avro_schema(value_format: str, schema_name: str | None) -> None:
    if value_format != ValueFormat.json and schema_name is None:
        raise ValueError(AVRO_NEEDS_SCHEMA)


_AVRO_NEEDS_SCHEMA = cel(
    "!has(self.valueFormat) || self.valueFormat == 'json' || has(self.schemaName)",
    AVRO_NEEDS_SCHEMA,
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
        _check_avro_schema(self.value_format, self.schema_name)
        return self

    model_config = ConfigDict(json_schema_extra=cel_rules(_AVRO_NEEDS_SCHEMA))


Source = Annotated[S3Source | JdbcSource | KafkaSource, Field(discriminator="source_type")]


# --- transforms -----------------------------------------------------------------------------


class FilterTransform(SpecModel):
    """Keep the rows for which a Spark SQL condition holds."""

    transform_type: Literal["Filter"]
    condition: str = Field(min_length=1, description='A Spark SQL boolean expression: "amount > 0".')


class SelectTransform(SpecModel):
    """Keep, compute and rename columns."""

    transform_type: Literal["Select"]
    columns: list[str] = Field(
        default_factory=list, description="Columns or Spark SQL expressions to keep, in order."
    )
    rename: dict[str, str] = Field(default_factory=dict, description="old name: new name.")

    @model_validator(mode="after")
    def _something_to_do(self) -> SelectTransform:
        if not self.columns and not self.rename:
            raise ValueError("give columns, rename or both")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.columns) && size(self.columns) > 0) ||"
                " (has(self.rename) && size(self.rename) > 0)",
                "give columns, rename or both",
            ),
        )
    )


class SqlTransform(SpecModel):
    """A Spark SQL query over the rows so far, which it sees as the view `input`."""

    transform_type: Literal["SQL"]
    query: str = Field(min_length=1, description="SELECT ... FROM input ...")


class JoinType(StrEnum):
    inner = "inner"
    left = "left"
    right = "right"
    full = "full"
    semi = "semi"
    anti = "anti"


class JoinTransform(SpecModel):
    """Join the rows with a second source on equal key columns."""

    transform_type: Literal["Join"]
    right: Source | None = Field(default=None, description="The other side: any extract block.")
    on: list[ColumnName] = Field(default_factory=list, description="Key columns present on both sides.")
    join_type: JoinType = Field(default=JoinType.inner, description="Kind of join.")
    broadcast: bool = Field(default=False, description="Broadcast the right side (a small dimension).")
    # YAML 1.1 parsers (kubectl's among them) read an unquoted `on:` key as the boolean true, so
    # the object arrives with a "true" key. It is accepted as `on`; the field exists so the CRD
    # lets it through, and is always empty after parsing.
    on_as_yaml_boolean: list[ColumnName] | None = Field(
        default=None,
        alias="true",
        exclude=True,
        description='`on`, as YAML 1.1 reads an unquoted "on:" key. Prefer "on".',
    )

    @model_validator(mode="before")
    @classmethod
    def _unquoted_on_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "on" in data:
            return data
        for key in list(data):
            if key is True or key == "true":
                rest = {k: v for k, v in data.items() if k is not key}
                return {**rest, "on": data[key]}
        return data

    @model_validator(mode="after")
    def _needs_right_and_on(self) -> JoinTransform:
        if self.right is None:
            raise ValueError("a Join needs right")
        if not self.on:
            raise ValueError("a Join needs on")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.right)", "a Join needs right", ".right"),
            # An unquoted `on:` key arrives as "true" (see on_as_yaml_boolean); CEL spells it __true__.
            cel(
                "(has(self.on) && size(self.on) > 0) || (has(self.__true__) && size(self.__true__) > 0)",
                "a Join needs on",
                ".on",
            ),
        )
    )


AggregateFunction = Literal[
    "sum", "count", "count_distinct", "avg", "min", "max", "first", "last", "collect_list"
]


class Aggregate(SpecModel):
    """One output column of an aggregation."""

    column: ColumnName = Field(description='Input column; "*" with count counts rows.')
    function: AggregateFunction
    output: ColumnName | None = Field(
        default=None, alias="as", description="Output column name; default <function>_<column>."
    )

    @property
    def output_name(self) -> str:
        if self.output:
            return self.output
        column = "rows" if self.column == "*" else self.column
        return f"{self.function}_{column}"


def _aggregates_from_map_form(value: Any) -> Any:
    """Accept `{amount: sum}` beside the list form; the output column is then `sum_amount`."""
    if isinstance(value, dict):
        return [{"column": column, "function": function} for column, function in value.items()]
    return value


class AggregationTransform(SpecModel):
    """Group rows and aggregate each group."""

    transform_type: Literal["Aggregation"]
    group_by: list[ColumnName] = Field(default_factory=list, description="Grouping columns.")
    aggregations: list[Aggregate] = Field(
        min_length=1,
        description="List of {column, function, as}; the map form {amount: sum} is accepted too.",
        json_schema_extra={"x-etl-map-form": True},
    )

    _map_form = field_validator("aggregations", mode="before")(_aggregates_from_map_form)


WindowFunctionName = Literal[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "first",
    "last",
]


class OrderColumn(SpecModel):
    column: ColumnName
    descending: bool = False


class WindowFunction(SpecModel):
    """One column computed over a window of rows."""

    function: WindowFunctionName
    column: ColumnName | None = Field(default=None, description="Input column (not for ranking functions).")
    output: ColumnName = Field(alias="as", description="Output column name.")
    offset: int | None = Field(
        default=None, ge=1, description="For lag/lead: rows back or ahead; ntile: buckets."
    )

    @model_validator(mode="after")
    def _column_when_needed(self) -> WindowFunction:
        needs_column = self.function not in {
            "row_number",
            "rank",
            "dense_rank",
            "percent_rank",
            "cume_dist",
            "ntile",
            "count",
        }
        if needs_column and self.column is None:
            raise ValueError(f"window function {self.function} needs column")
        if self.function == "ntile" and self.offset is None:
            raise ValueError("window function ntile needs offset (the number of buckets)")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "self.function in ['row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist',"
                " 'ntile', 'count'] || has(self.column)",
                "this window function needs column",
                ".column",
            ),
            cel("self.function != 'ntile' || has(self.offset)", "ntile needs offset", ".offset"),
        )
    )


class WindowTransform(SpecModel):
    """Either analytic functions over partitions (partitionBy, orderBy, functions) or
    aggregations over time windows (timeColumn, windowDuration, groupBy, aggregations)."""

    transform_type: Literal["Window"]
    partition_by: list[ColumnName] = Field(default_factory=list)
    order_by: list[OrderColumn] = Field(default_factory=list)
    functions: list[WindowFunction] = Field(default_factory=list)
    time_column: ColumnName | None = Field(default=None, description="Event-time column of time windows.")
    window_duration: Duration | None = None
    slide_duration: Duration | None = Field(
        default=None, description="Sliding windows; tumbling when absent."
    )
    watermark: Duration | None = Field(default=None, description="How late an event may arrive (streaming).")
    group_by: list[ColumnName] = Field(
        default_factory=list, description="Extra grouping columns of time windows."
    )
    aggregations: list[Aggregate] = Field(default_factory=list, json_schema_extra={"x-etl-map-form": True})

    _map_form = field_validator("aggregations", mode="before")(_aggregates_from_map_form)

    @model_validator(mode="after")
    def _one_kind(self) -> WindowTransform:
        analytic, timed = bool(self.functions), self.time_column is not None
        if analytic == timed:
            raise ValueError("give functions (analytic window) or timeColumn (time window), not both")
        if (
            analytic
            and not self.order_by
            and any(
                f.function
                in {"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead"}
                for f in self.functions
            )
        ):
            raise ValueError("ranking and offset window functions need orderBy")
        if timed and (self.window_duration is None or not self.aggregations):
            raise ValueError("a time window needs windowDuration and aggregations")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "(has(self.functions) && size(self.functions) > 0) != has(self.timeColumn)",
                "give functions (analytic window) or timeColumn (time window), not both",
            ),
            # `aggregations` takes a list or a map, so its CRD node has no type and CEL cannot see
            # it: the API server checks windowDuration, pydantic checks both.
            cel(
                "!has(self.timeColumn) || has(self.windowDuration)",
                "a time window needs windowDuration and aggregations",
                ".windowDuration",
            ),
        )
    )


Transform = Annotated[
    FilterTransform | SelectTransform | SqlTransform | JoinTransform | AggregationTransform | WindowTransform,
    Field(discriminator="transform_type"),
]


# --- sinks ----------------------------------------------------------------------------------


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
    batch_size: int = Field(default=10000, ge=1, description="Rows per JDBC batch.")
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
        _check_avro_schema(self.value_format, self.schema_name)
        if self.value_format == ValueFormat.avro_confluent and self.schema_id is None:
            raise ValueError(CONFLUENT_NEEDS_SCHEMA_ID)
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            _AVRO_NEEDS_SCHEMA,
            cel(
                "!has(self.valueFormat) || self.valueFormat != 'avro-confluent' || has(self.schemaId)",
                CONFLUENT_NEEDS_SCHEMA_ID,
            ),
        )
    )


Sink = Annotated[S3Sink | JdbcSink | KafkaSink, Field(discriminator="sink_type")]


# --- error handling ----------------------------------------------------------------------


class Tolerance(StrEnum):
    none = "none"
    all = "all"


class RetryStrategy(StrEnum):
    exponential = "exponential"
    fixed = "fixed"
    none = "none"


class RetryPolicy(SpecModel):
    strategy: RetryStrategy = RetryStrategy.exponential
    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_delay_seconds: float = Field(default=1.0, ge=0)
    max_delay_seconds: float = Field(default=60.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    jitter: bool = True

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryPolicy:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("maxDelaySeconds must be >= initialDelaySeconds")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.maxDelaySeconds) || !has(self.initialDelaySeconds) || "
                "self.maxDelaySeconds >= self.initialDelaySeconds",
                "maxDelaySeconds must be >= initialDelaySeconds",
                ".maxDelaySeconds",
            ),
        )
    )


class CircuitBreakerPolicy(SpecModel):
    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout_seconds: int = Field(default=60, ge=1)
    half_open_max_attempts: int = Field(default=1, ge=1)


class KafkaDeadLetter(SpecModel):
    type: Literal["kafka"]
    bootstrap_servers: Name
    topic: Name
    security: KafkaSecurity | None = None


class S3DeadLetter(SpecModel):
    type: Literal["s3"]
    path: Name
    partition_by: Literal["date", "none"] = "date"
    buffer_size: int = Field(default=500, ge=1)
    format: Literal["parquet", "json"] = "parquet"
    s3: S3Connection | None = Field(
        default=None, description="Endpoint, region and credentials of the store."
    )


DeadLetter = Annotated[KafkaDeadLetter | S3DeadLetter, Field(discriminator="type")]


class ErrorHandling(SpecModel):
    tolerance: Tolerance = Field(
        default=Tolerance.none,
        description="none: a bad record fails the run; all: it goes to the dead-letter queue.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit_breaker: CircuitBreakerPolicy = Field(default_factory=CircuitBreakerPolicy)
    dead_letter: DeadLetter | None = None


# --- run settings ----------------------------------------------------------------------------


class Performance(SpecModel):
    batch_size: int = Field(default=10000, ge=1, description="Rows per write batch.")
    parallelism: int | None = Field(default=None, ge=1, description="Partitions to repartition to.")


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Logging(SpecModel):
    level: LogLevel = LogLevel.INFO
    structured: bool = Field(default=True, description="One JSON object per log line.")


class SparkResources(SpecModel):
    cores: int = Field(default=1, ge=1, le=64)
    memory: SparkMemory = "2g"


class SparkSettings(SpecModel):
    executors: int = Field(
        default=0, ge=0, le=1000, description="0: the job runs in local mode in the driver pod."
    )
    driver: SparkResources = Field(default_factory=SparkResources)
    executor: SparkResources = Field(default_factory=SparkResources)
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark configuration.")
    image: str | None = Field(default=None, description="Job image; the operator's default when absent.")
    service_account: Name | None = Field(
        default=None,
        description="ServiceAccount of the driver pod (it creates executor pods when executors > 0); "
        "the operator's default when absent.",
    )


class RestartPolicyType(StrEnum):
    never = "Never"
    on_failure = "OnFailure"
    always = "Always"


class RestartPolicy(SpecModel):
    """What happens after a run ends: restart it, with exponential backoff and jitter, or not."""

    type: RestartPolicyType = Field(
        default=RestartPolicyType.on_failure,
        description="Never: a failed run stays failed. OnFailure: a failed run is retried. "
        "Always: streaming drivers are restarted whenever they end.",
    )
    max_retries: int = Field(
        default=3, ge=0, le=1000, description="Retries of one run trigger (a generation, a schedule slot)."
    )
    initial_backoff_seconds: int = Field(default=10, ge=1, description="Delay before the first retry.")
    max_backoff_seconds: int = Field(default=300, ge=1, description="Cap of the growing delay.")
    backoff_multiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    @model_validator(mode="after")
    def _backoff_ordered(self) -> RestartPolicy:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("maxBackoffSeconds must be >= initialBackoffSeconds")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.maxBackoffSeconds) || !has(self.initialBackoffSeconds) || "
                "self.maxBackoffSeconds >= self.initialBackoffSeconds",
                "maxBackoffSeconds must be >= initialBackoffSeconds",
                ".maxBackoffSeconds",
            ),
        )
    )


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"  # upper case: `replace` would shadow str.replace
    ALLOW = "Allow"


class Mode(StrEnum):
    batch = "batch"
    streaming = "streaming"


class ETLPipelineSpec(SpecModel):
    """The desired pipeline: where data comes from, what happens to it, where it goes."""

    mode: Mode = Field(default=Mode.batch, description="batch or streaming.")
    schedule: str | None = Field(
        default=None,
        min_length=1,
        description="Cron schedule of batch runs; absent: once per spec generation.",
    )
    suspend: bool = Field(default=False, description="Pause scheduling new runs.")
    extract: Source
    transforms: list[Transform] = Field(default_factory=list)
    load: Sink
    error_handling: ErrorHandling = Field(default_factory=ErrorHandling)
    performance: Performance = Field(default_factory=Performance)
    logging: Logging = Field(default_factory=Logging)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="When a scheduled run is due while one runs: Forbid skips it, Replace stops "
        "the running one, Allow runs both.",
    )
    successful_runs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Driver pods of succeeded runs kept for their logs."
    )
    failed_runs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Driver pods of failed runs kept for their logs."
    )
    start_timeout_seconds: int = Field(
        default=600,
        ge=10,
        description="A driver not running after this long fails its run (image, scheduling).",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="A batch run still running after this long is stopped and failed."
    )
    pod_template: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged into the driver pod: metadata (labels, annotations) and spec (volumes, "
        "volumeMounts of the driver container via spec.containers[name=driver], tolerations, "
        "affinity, nodeSelector, priorityClassName, ...).",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ETLPipelineSpec:
        if self.schedule is not None and self.mode != Mode.batch:
            raise ValueError("schedule is only for batch pipelines")
        if self.error_handling.tolerance == Tolerance.all and self.error_handling.dead_letter is None:
            raise ValueError("errorHandling.tolerance all needs errorHandling.deadLetter")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.schedule) || !has(self.mode) || self.mode == 'batch'",
                "schedule is only for batch pipelines",
                ".schedule",
            ),
            cel(
                "!has(self.errorHandling) || !has(self.errorHandling.tolerance) || "
                "self.errorHandling.tolerance != 'all' || has(self.errorHandling.deadLetter)",
                "errorHandling.tolerance all needs errorHandling.deadLetter",
                ".errorHandling",
            ),
        )
    )

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every Secret key the pipeline reads, in spec order, for the operator to check and inject."""
        refs: list[SecretKeyRef] = []
        _collect_secret_refs(self, refs)
        return refs


def _collect_secret_refs(node: Any, refs: list[SecretKeyRef]) -> None:
    if isinstance(node, SecretKeyRef):
        refs.append(node)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            _collect_secret_refs(getattr(node, name), refs)
    elif isinstance(node, list | tuple):
        for item in node:
            _collect_secret_refs(item, refs)


# --- status --------------------------------------------------------------------------------


class RunMetrics(SpecModel):
    """What one run did, as the job reports it in its termination message."""

    records_extracted: int = 0
    records_transformed: int = 0
    records_filtered: int = 0
    records_loaded: int = 0
    records_failed: int = 0
    retry_count: int = 0
    duration_ms: int = 0
    success_rate: float = 1.0
    high_water_mark: str | None = None
    errors: list[str] = Field(default_factory=list)


class Condition(SpecModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class RunRecord(SpecModel):
    run: int = Field(description="Run number within the pipeline.")
    pod: str | None = None
    generation: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    phase: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    metrics: RunMetrics | None = None
    secrets_version: str | None = Field(
        default=None,
        description="Digest of the referenced Secrets' resourceVersions at launch (no values): a "
        "streaming driver is replaced when it changes.",
    )


class CircuitState(StrEnum):
    closed = "Closed"
    open = "Open"
    half_open = "HalfOpen"


class CircuitStatus(SpecModel):
    state: CircuitState = CircuitState.closed
    consecutive_failures: int = 0
    opened_at: str | None = None


class Phase(StrEnum):
    pending = "Pending"
    running = "Running"
    succeeded = "Succeeded"
    failed = "Failed"
    backoff = "Backoff"
    circuit_open = "CircuitOpen"
    suspended = "Suspended"


class ETLPipelineStatus(SpecModel):
    """What the operator observed. Written only by the operator, never by users."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    current_run: RunRecord | None = None
    last_run: RunRecord | None = None
    runs: list[RunRecord] = Field(default_factory=list, description="Most recent runs, newest first.")
    run_count: int = 0
    circuit: CircuitStatus | None = None
    next_run_at: str | None = None
    high_water_mark: str | None = None
    retries: int = Field(default=0, description="Retries so far of the current run trigger.")
    backoff_until: str | None = Field(default=None, description="No launch before this time.")
    rerun_token: str | None = Field(
        default=None, description="The last value of the etl.sparkops.io/rerun annotation acted on."
    )
    last_schedule_time: str | None = Field(default=None, description="The schedule slot last launched.")


class ETLPipeline(SpecModel):
    """A whole manifest, as `kubectl apply` takes it."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["etl.sparkops.io/v1alpha1"] = "etl.sparkops.io/v1alpha1"
    kind: Literal["ETLPipeline"] = "ETLPipeline"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ETLPipelineSpec
    status: ETLPipelineStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "pipeline"))
