"""The dead-letter queue: records set aside by a run, written to Kafka or to files.

Each dead letter carries the seed format: timestamp, pipelineId, stage, errorType,
errorMessage, stackTrace, originalRecord, originalSchema, attemptNumber, context."""

from __future__ import annotations

from typing import Any

from etl_job.context import RunContext
from etl_job.errors import SinkRejected
from etl_job.paths import resolve_path
from etl_job.spec import KafkaDeadLetter, S3DeadLetter

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


def write(
    frame: Any, target: KafkaDeadLetter | S3DeadLetter, pipeline: str, stage: str, context: RunContext
) -> None:
    """Append the dead letters in `frame` (DEAD_LETTER_COLUMNS) to the configured queue."""
    letters = frame.select(*DEAD_LETTER_COLUMNS)
    try:
        if isinstance(target, KafkaDeadLetter):
            _to_kafka(letters, target, pipeline)
        else:
            _to_files(letters, target, context)
    except Exception as failed:
        text = str(failed).splitlines()[0] if str(failed) else type(failed).__name__
        raise SinkRejected(f"cannot write dead letters of {stage}: {text}", stage="deadLetter") from failed


def _to_kafka(letters: Any, target: KafkaDeadLetter, pipeline: str) -> None:
    from pyspark.sql import functions as F

    (
        letters.select(
            F.lit(pipeline).alias("key"),
            F.to_json(F.struct(*DEAD_LETTER_COLUMNS)).alias("value"),
        )
        .write.format("kafka")
        .option("kafka.bootstrap.servers", target.bootstrap_servers)
        .option("topic", target.topic)
        .option("kafka.acks", "all")
        .option("kafka.enable.idempotence", "true")
        .save()
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
    writer.save(resolve_path(target.path, context.base_dir))
