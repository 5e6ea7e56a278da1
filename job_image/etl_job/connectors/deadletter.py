"""The dead-letter queue: records set aside by a run, written to Kafka or to files.

Each dead letter carries the seed format: timestamp, pipelineId, stage, errorType,
errorMessage, stackTrace, originalRecord, originalSchema, attemptNumber, context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etl_job.connectors.files.paths import resolve_path
from etl_job.connectors.files.s3 import describe_failure, failure_text, use_connection
from etl_job.contract import EtlError, KafkaDeadLetter, S3DeadLetter, SinkRejected, first_line
from etl_job.runtime.context import RunContext

#: The columns of a dead letter, in order.
DEAD_LETTER_COLUMNS = (
    "timestamp",
    "pipelineId",
    "stage",
    "errorType",
    "errorMessage",
    "stackTrace",
    "originalRecord",
    "originalSchema",
    "attemptNumber",
    "context",
)


def letters(
    invalid: Any,
    *,
    pipeline: str,
    stage: str,
    schema_name: str | None,
    attempt: int = 1,
    context: Mapping[str, str] | None = None,
) -> Any:
    """Dead letters from rows set aside (originalRecord, recordKey, field, errorType,
    errorMessage): one per row, in the seed format. `context`: entries every letter's context
    carries besides field and recordKey (the sink and the batch of a load)."""
    from pyspark.sql import functions as F

    shared = [part for key, value in (context or {}).items() for part in (F.lit(key), F.lit(value))]
    return invalid.select(
        F.current_timestamp().alias("timestamp"),
        F.lit(pipeline).alias("pipelineId"),
        F.lit(stage).alias("stage"),
        F.col("errorType"),
        F.col("errorMessage"),
        F.lit(None).cast("string").alias("stackTrace"),
        F.col("originalRecord"),
        F.lit(schema_name).cast("string").alias("originalSchema"),
        F.lit(attempt).alias("attemptNumber"),
        F.create_map(F.lit("field"), F.col("field"), F.lit("recordKey"), F.col("recordKey"), *shared).alias(
            "context"
        ),
    )


def write(frame: Any, target: KafkaDeadLetter | S3DeadLetter, stage: str, context: RunContext) -> None:
    """Append the dead letters in `frame` (DEAD_LETTER_COLUMNS) to the configured queue."""
    selected = frame.select(*DEAD_LETTER_COLUMNS)
    try:
        if isinstance(target, KafkaDeadLetter):
            _to_kafka(selected, target, context)
        else:
            _to_files(selected, target, context)
    except EtlError:
        raise  # already says what is wrong (a missing credential, a refused store)
    except Exception as failed:
        text = first_line(failed)
        raise SinkRejected(f"cannot write dead letters of {stage}: {text}", stage="deadLetter") from failed


def _to_kafka(letters: Any, target: KafkaDeadLetter, context: RunContext) -> None:
    """One JSON message per dead letter, keyed by the pipeline, through the Kafka sink's writer
    (security from the Secret values, the topic checked first, acks from all replicas)."""
    from pyspark.sql import functions as F

    from etl_job.connectors.kafka.connector import write_messages

    write_messages(
        letters.select(
            F.lit(context.pipeline).alias("key"),
            # Every field of the seed format, a null one (stackTrace of a rejected row) too.
            F.to_json(F.struct(*DEAD_LETTER_COLUMNS), {"ignoreNullFields": "false"}).alias("value"),
        ),
        bootstrap_servers=target.bootstrap_servers,
        topic=target.topic,
        security=target.security,
        extra={},
        context=context,
        stage="deadLetter",
    )


def _to_files(letters: Any, target: S3DeadLetter, context: RunContext) -> None:
    from pyspark.sql import functions as F

    writer_frame = letters
    if target.partition_by == "date":
        writer_frame = letters.withColumn("date", F.to_date("timestamp"))
    writer = (
        writer_frame.write.format(target.format)
        .mode("append")
        .option("maxRecordsPerFile", target.buffer_size)
    )
    if target.partition_by == "date":
        writer = writer.partitionBy("date")
    path = resolve_path(target.path, context.base_dir)
    bucket = use_connection(context.spark, path, target.s3, context.env, stage="deadLetter")
    try:
        writer.save(path)
    except Exception as failed:
        store_failure = bucket and describe_failure(failure_text(failed), bucket, target.s3)
        if store_failure:
            # write() adds the stage and the dead letters' own stage around it.
            raise SinkRejected(store_failure) from None
        raise
