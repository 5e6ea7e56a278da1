"""Setting bad records aside inside the one pass over the data.

Validation and connectors (an undecodable Kafka message) find bad records the same way: as a
condition over a DataFrame. With tolerance `none` the first one fails the run, named; with
`all` it is filtered out of the load, counted, and written to the dead-letter queue afterwards."""

from __future__ import annotations

from typing import Any

from etl_job.quality.guard import fail_where
from etl_job.runtime.context import Checkpoint
from etl_job.runtime.metrics import RowCounter


def set_aside(
    frame: Any,
    *,
    broken: Any,
    message: Any,
    original: Any,
    error_type: str,
    stage: str,
    tolerance: str,
    pipeline: str,
    schema_name: str | None,
    context: dict[str, Any] | None = None,
) -> tuple[Any, Checkpoint]:
    """`frame` without the rows where the Column `broken` holds, and the checkpoint of them.

    `message` names the record and the cause; `original` is the record as received (a string);
    `context` maps names to Columns kept with the dead letter (topic, partition, offset...)."""
    from pyspark.sql import functions as F

    counter = RowCounter(f"{stage}-decoding")
    if tolerance == "none":
        # A run that ends met no such record, so there is nothing to count: no counter, whose
        # node would cut the generated code of the stage in two and copy every row between.
        return fail_where(frame, broken, F.lit(stage), F.array(message)), Checkpoint(stage, counter)
    if frame.isStreaming:
        # Before a streaming aggregation: the letter query of the run (etl_job.streaming) reads
        # the same records, and counts and writes these; Spark cannot observe a stream here.
        return frame.where(~broken), Checkpoint(stage, counter)
    checked = counter.attach(frame, failed=F.count_if(broken))
    pairs = [
        part for name, column in (context or {}).items() for part in (F.lit(name), column.cast("string"))
    ]
    letters = frame.where(broken).select(
        F.current_timestamp().alias("timestamp"),
        F.lit(pipeline).alias("pipelineId"),
        F.lit(stage).alias("stage"),
        F.lit(error_type).alias("errorType"),
        message.alias("errorMessage"),
        F.lit(None).cast("string").alias("stackTrace"),
        original.cast("string").alias("originalRecord"),
        F.lit(schema_name).cast("string").alias("originalSchema"),
        F.lit(1).alias("attemptNumber"),
        (F.create_map(*pairs) if pairs else F.create_map().cast("map<string,string>")).alias("context"),
    )
    return checked.where(~broken), Checkpoint(stage, counter, letters)
