"""Kafka topics: the batch source and the sink, with JSON or Avro values.

The source reads a topic between two offsets, decodes the values into columns and sets aside
the messages that do not decode; the sink writes one message per row, keyed, with the pipeline
and run in its headers. Both look at the topic first with the admin client (kafka.admin),
so a missing topic or unreachable brokers fail at once, named."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from etl_job.connectors.kafka import codec
from etl_job.connectors.kafka import options as kafka_options
from etl_job.connectors.kafka.admin import (
    TopicProblem,
    TopicState,
    describe_causes,
    inspect_topic,
    java_causes,
)
from etl_job.connectors.registry import register_sink, register_source
from etl_job.contract import (
    ConfigurationError,
    DataError,
    KafkaSecurity,
    KafkaSink,
    KafkaSource,
    SinkRejected,
    SourceUnavailable,
    ValueFormat,
)
from etl_job.contract.credentials import secret_env_name, secret_value
from etl_job.quality.guard import record_violation
from etl_job.quality.setaside import set_aside
from etl_job.runtime.columns import named_column
from etl_job.runtime.context import RunContext

#: Message fields a source may add as columns kafka_<name>.
METADATA_PREFIX = "kafka_"
#: Headers of every message the sink writes.
PIPELINE_HEADER = "etl-pipeline"
RUN_HEADER = "etl-run"
#: Header of messages a streaming run writes: the micro-batch they belong to.
BATCH_HEADER = "etl-batch"
#: errorType of a dead letter for a message that does not decode.
UNDECODABLE = "UndecodableValue"


def resolve_security(security: KafkaSecurity | None, env: Mapping[str, str], stage: str) -> dict[str, str]:
    """The security options of a Kafka block, with the user and password read from the Secret
    values in the environment."""
    if security is None or not security.protocol.startswith("SASL"):
        return kafka_options.security_options(security)
    assert security.username_ref is not None and security.password_ref is not None  # the contract's rule
    username = secret_value(security.username_ref, env, stage=stage, field="security.usernameRef")
    password = secret_value(security.password_ref, env, stage=stage, field="security.passwordRef")
    return kafka_options.security_options(security, username, password)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced, for messages that quote a client's error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _secrets(security: KafkaSecurity | None, env: Mapping[str, str]) -> list[str]:
    """The Secret values a block uses, to be kept out of messages."""
    refs = [security.username_ref, security.password_ref] if security else []
    return [env.get(secret_env_name(ref), "") for ref in refs if ref is not None]


def _topic_state(
    spark: Any,
    options: Mapping[str, str],
    topic: str,
    *,
    latest_offsets: bool,
    failure: type[SourceUnavailable | SinkRejected],
    stage: str,
    secrets: Iterable[str],
) -> TopicState:
    """The topic as the admin client sees it with the reader's or writer's options; `failure`
    naming the topic and brokers when it does not exist or cannot be reached."""
    timeout_ms = kafka_options.admin_timeout_ms(options)
    config = kafka_options.admin_config(options, timeout_ms)
    brokers = options["kafka.bootstrap.servers"]
    try:
        return inspect_topic(spark, config, topic, timeout_ms, latest_offsets=latest_offsets)
    except TopicProblem as problem:
        if problem.missing:
            raise failure(
                f"topic {topic} does not exist at brokers {brokers}",
                stage=stage,
                field="topic",
                permanent=True,
            ) from None
        action = "read" if failure is SourceUnavailable else "write to"
        reason = redact(str(problem), secrets)
        raise failure(
            f"cannot {action} topic {topic} at brokers {brokers}: {reason}",
            stage=stage,
            permanent=problem.permanent,
        ) from None


@register_source("Kafka")
class KafkaTopicSource:
    """A batch read of a topic between startingOffsets and endingOffsets."""

    stage = "extract"

    def read(self, block: KafkaSource, context: RunContext) -> Any:
        kafka_options.refuse_owned(block.options, kafka_options.SOURCE_OWNED, self.stage)
        kafka_options.check_offsets(
            block.starting_offsets,
            block.topic,
            field="startingOffsets",
            names=("earliest", "latest"),
            stage=self.stage,
        )
        kafka_options.check_offsets(
            block.ending_offsets, block.topic, field="endingOffsets", names=("latest",), stage=self.stage
        )
        security = resolve_security(block.security, context.env, self.stage)
        secrets = _secrets(block.security, context.env)
        schema = context.schemas.get(block.schema_name, stage=self.stage) if block.schema_name else None
        probe = kafka_options.reader_options(block, security, "earliest", "latest")
        state = _topic_state(
            context.spark,
            probe,
            block.topic,
            latest_offsets=True,
            failure=SourceUnavailable,
            stage=self.stage,
            secrets=secrets,
        )
        # "latest" is pinned to the offsets of now, so the load and the dead letters read the same
        # messages even as the topic grows.
        starting, ending = (
            kafka_options.pinned_offsets(
                setting, block.topic, state.partitions, state.latest, field=field, stage=self.stage
            )
            for setting, field in (
                (block.starting_offsets, "startingOffsets"),
                (block.ending_offsets, "endingOffsets"),
            )
        )
        options = kafka_options.reader_options(block, security, starting, ending)
        try:
            raw = context.spark.read.format("kafka").options(**options).load()
        except Exception as failed:  # noqa: BLE001 - Spark and py4j raise many classes
            reason = redact(describe_causes(java_causes(failed), 0), secrets)
            raise SourceUnavailable(
                f"cannot read topic {block.topic} at brokers {block.bootstrap_servers}: {reason}",
                stage=self.stage,
            ) from None
        return self._decoded(raw, block, schema, context)

    def decoded(self, raw: Any, block: KafkaSource, context: RunContext) -> Any:
        """Messages as Spark's Kafka source gives them (a stream's micro-batch too), decoded and
        set aside as `read` does."""
        schema = context.schemas.get(block.schema_name, stage=self.stage) if block.schema_name else None
        return self._decoded(raw, block, schema, context)

    def _decoded(
        self, raw: Any, block: KafkaSource, schema: dict[str, Any] | None, context: RunContext
    ) -> Any:
        from pyspark.sql import functions as F

        decoding = _decoding(block, schema)
        _refuse_clashes(decoding, block)
        # Message fields under private names, so a value field called `timestamp` stays apart.
        frame = raw.select(
            *[F.col(name).alias(_RAW + name) for name in _RAW_COLUMNS],
            decoding.decoded.alias(codec.DECODED),
        )
        if decoding.broken is None:
            frame = frame.select(*[F.col(_RAW + name) for name in _RAW_COLUMNS], *decoding.columns)
        else:
            # Fields, flag and message in one projection: each value is parsed and converted once,
            # and what follows reads plain columns, in the same generated code.
            broken = decoding.broken
            message = F.format_string(
                "topic %s partition %d offset %d: %s",
                F.col(_RAW + "topic"),
                F.col(_RAW + "partition"),
                F.col(_RAW + "offset"),
                decoding.cause,
            )
            frame = frame.select(
                *[F.col(_RAW + name) for name in _RAW_COLUMNS],
                *decoding.columns,
                _kept_above_parsing(broken).alias(_BROKEN),
                F.when(broken, message).alias(_MESSAGE),
            )
            frame = self._set_aside(frame, decoding, block, context)
        metadata = [
            _raw(name).alias(METADATA_PREFIX + name) for name in dict.fromkeys(block.metadata_columns)
        ]
        return frame.select(*[named_column(name) for name in decoding.names], *metadata)

    def _set_aside(
        self, frame: Any, decoding: codec.Decoding, block: KafkaSource, context: RunContext
    ) -> Any:
        from pyspark.sql import functions as F

        kept, checkpoint = set_aside(
            frame,
            broken=F.col(_BROKEN),
            message=F.col(_MESSAGE),
            original=decoding.original,
            error_type=UNDECODABLE,
            stage=self.stage,
            tolerance=context.tolerance,
            pipeline=context.pipeline,
            schema_name=block.schema_name,
            context={name: F.col(_RAW + name) for name in ("topic", "partition", "offset")},
        )
        context.report.checkpoints.append(checkpoint)
        return kept


#: The raw message fields kept next to the decoded value, and the prefix of their private names.
_RAW_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")
_RAW = "_etl_kafka_"
_BROKEN = "_etl_undecodable"
_MESSAGE = "_etl_undecodable_message"


def _kept_above_parsing(flag: Any) -> Any:
    """`flag`, in a form Spark does not move. Spark pushes a filter below the projection that
    computes what it reads, down into the parsing, where each field it reads parses the value
    again (from_json once per use). Reading the task's partition id (never negative), which
    Spark counts as nondeterministic, stops that: the checks on the flag, and any filter merged
    with them, stay above the projection and run on its columns."""
    from pyspark.sql import functions as F

    return flag & (F.spark_partition_id() >= 0)


def _raw(name: str) -> Any:
    from pyspark.sql import functions as F

    column = F.col(_RAW + name)
    # Keys are nearly always text: a string column is what a user can group and join on.
    return column.cast("string") if name == "key" else column


def _decoding(block: KafkaSource, schema: dict[str, Any] | None) -> codec.Decoding:
    from pyspark.sql import functions as F

    value = F.col(_RAW + "value")
    if schema is None or block.schema_name is None:
        return codec.decode_text(value)
    if block.value_format == ValueFormat.json:
        return codec.decode_json(value, schema, block.schema_name)
    confluent = block.value_format == ValueFormat.avro_confluent
    return codec.decode_avro(value, schema, block.schema_name, confluent=confluent)


def _refuse_clashes(decoding: codec.Decoding, block: KafkaSource) -> None:
    clash = sorted({METADATA_PREFIX + name for name in block.metadata_columns} & set(decoding.names))
    if clash:
        raise ConfigurationError(
            f"field {clash[0]} of the value clashes with the metadata column of the same name",
            stage="extract",
            field="metadataColumns",
        )


@register_sink("Kafka")
class KafkaTopicSink:
    """One message per row: key from keyColumn, value JSON or Avro, pipeline and run as headers."""

    stage = "load"

    def write(self, frame: Any, block: KafkaSink, context: RunContext) -> None:
        kafka_options.refuse_owned(block.options, kafka_options.SINK_OWNED, self.stage)
        if block.key_column is not None and block.key_column not in frame.columns:
            raise ConfigurationError(
                f"key column {block.key_column} is not in the output (columns: {', '.join(frame.columns)})",
                stage=self.stage,
                field="keyColumn",
            )
        messages = frame.select(
            *_key(block), _value(frame, block, context).alias("value"), _headers(context).alias("headers")
        )
        write_messages(
            messages,
            bootstrap_servers=block.bootstrap_servers,
            topic=block.topic,
            security=block.security,
            extra=block.options,
            context=context,
            stage=self.stage,
        )


def write_messages(
    messages: Any,
    *,
    bootstrap_servers: str,
    topic: str,
    security: KafkaSecurity | None,
    extra: Mapping[str, str],
    context: RunContext,
    stage: str,
) -> None:
    """Write a frame of Kafka messages (value; key and headers optional) to a topic that must
    exist; SinkRejected naming the topic and brokers, never a credential, when that fails."""
    options = kafka_options.writer_options(
        bootstrap_servers, topic, extra, resolve_security(security, context.env, stage)
    )
    secrets = _secrets(security, context.env)
    _topic_state(
        context.spark,
        options,
        topic,
        latest_offsets=False,
        failure=SinkRejected,
        stage=stage,
        secrets=secrets,
    )
    try:
        # The frame's own session: a streaming micro-batch's is a clone of context.spark, made
        # when the query started, and the writer reads the V1 source list from it.
        with _written_through_v2(messages.sparkSession):
            messages.write.format("kafka").mode("append").options(**options).save()
    except Exception as failed:
        if record_violation(failed) is not None:
            raise  # a bad record met on the way: the run's, not the sink's
        causes = java_causes(failed)
        reason = redact(describe_causes(causes, 0), secrets)
        if any(name.endswith(".RecordTooLargeException") for name, _ in causes):
            # The record's fault, not the brokers': a retry sends the same bytes again.
            raise DataError(
                f"a message is too large for topic {topic} at brokers {bootstrap_servers}: {reason}",
                stage=stage,
            ) from None
        raise SinkRejected(
            f"cannot write to topic {topic} at brokers {bootstrap_servers}: {reason}", stage=stage
        ) from None


@contextmanager
def _written_through_v2(spark: Any) -> Iterator[None]:
    """Spark writes to Kafka through its V1 path by default, which runs the query apart from the
    write command: the run's row counters (Observations) on it then never report, and reading
    them waits forever. The V2 path runs the query as the write's own child."""
    before = spark.conf.get(kafka_options.V1_SOURCES)
    spark.conf.set(kafka_options.V1_SOURCES, kafka_options.without_kafka(before))
    try:
        yield
    finally:
        spark.conf.set(kafka_options.V1_SOURCES, before)


def _key(block: KafkaSink) -> list[Any]:
    if block.key_column is None:
        return []
    return [named_column(block.key_column).cast("string").alias("key")]


def _value(frame: Any, block: KafkaSink, context: RunContext) -> Any:
    if block.value_format == ValueFormat.json:
        return codec.encode_json(frame)
    assert block.schema_name is not None  # the contract's rule
    schema = context.schemas.get(block.schema_name, stage="load")
    schema_id = block.schema_id if block.value_format == ValueFormat.avro_confluent else None
    return codec.encode_avro(frame, schema, block.schema_name, schema_id=schema_id)


def _headers(context: RunContext) -> Any:
    from pyspark.sql import functions as F

    headers = [(PIPELINE_HEADER, context.pipeline), (RUN_HEADER, context.run_id)]
    if context.batch_id is not None:
        headers.append((BATCH_HEADER, str(context.batch_id)))
    return F.array(
        *[
            F.struct(F.lit(key).alias("key"), F.lit(value).cast("binary").alias("value"))
            for key, value in headers
        ]
    )
