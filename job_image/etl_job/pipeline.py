"""One batch run of a pipeline: extract -> validate -> transform* -> validate -> load -> metrics.

Everything up to the load is lazy: the load is the one pass over the data, and counts are
taken inside it (metrics.RowCounter). Bad records either fail that pass (tolerance none) or
are filtered out of it and dead-lettered afterwards (tolerance all); so are rows the sink
refuses, which it reports (RunReport.sink_refusals) instead of writing them."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from etl_job.connectors import catalog, deadletter
from etl_job.connectors.registry import read_source, sink_for
from etl_job.contract import (
    DataError,
    ETLPipeline,
    ETLPipelineSpec,
    JdbcSink,
    RunMetrics,
    SinkRejected,
    Tolerance,
)
from etl_job.quality.guard import record_violation
from etl_job.quality.schemas import SchemaRegistry
from etl_job.quality.validate import validate_rows
from etl_job.runtime.context import Checkpoint, RunContext
from etl_job.runtime.metrics import RowCounter, success_rate
from etl_job.runtime.retry import run_with_retry
from etl_job.transforms.stage import TransformContext, apply_transforms

log = logging.getLogger("etl_job.pipeline")

#: Every connector registers itself on import.
_CONNECTORS = catalog


def run_pipeline(
    pipeline: ETLPipeline,
    context: RunContext,
    schemas: SchemaRegistry,
    *,
    source: Any = None,
    write: Callable[[Any, Any], None] | None = None,
    read_join_side: Callable[[Any], Any] | None = None,
) -> RunMetrics:
    """Run the pipeline once; raise an EtlError subclass on failure.

    A streaming run (streaming.py) runs each micro-batch through here: `source` is the batch's
    rows as the extract block reads them, `write(frame, load_block)` its idempotent load, and
    `read_join_side(block)` the right side of a join, kept between batches (StaticSides)."""
    started = time.monotonic()
    spec = pipeline.spec
    tolerance = Tolerance(spec.error_handling.tolerance)
    if context.tolerance != tolerance.value:
        # Sinks read it from the context (the same report object goes on being filled).
        context = dataclasses.replace(context, tolerance=tolerance.value)

    # Each count is a Spark Observation, and each costs a little on every row (it sits outside
    # generated code), so a plan carries as few as the metrics need: a validation point counts
    # the rows it sees too, recordsTransformed is recordsLoaded unless output validation sits
    # between them, and one count serves the extract and the load when nothing between them
    # adds or removes a row.
    context.progress.begin("extract")
    frame = read_source(spec.extract, context) if source is None else source
    checkpoints: list[Checkpoint] = context.report.checkpoints
    # Records the source itself set aside (undecodable messages) were extracted too.
    source_rejects = list(checkpoints)
    if spec.extract.schema_name:
        # Counted past the check only where that count serves the load too (_validate says why).
        straight_to_load = not (spec.transforms or spec.load.schema_name or spec.performance.parallelism)
        frame, checkpoint = _validate(
            frame,
            schemas,
            spec.extract.schema_name,
            "extract",
            tolerance,
            pipeline.name,
            count_checked=straight_to_load,
        )
        checkpoints.append(checkpoint)
        extracted = checkpoint.counter
    else:
        extracted = RowCounter("extracted")
        frame = extracted.attach(frame)

    filter_counters: list[RowCounter] = []

    def count_filter(stage: str) -> RowCounter:
        filter_counters.append(RowCounter(stage))
        return filter_counters[-1]

    frame = apply_transforms(
        frame,
        spec.transforms,
        TransformContext(
            spark=context.spark,
            read_source=read_join_side or (lambda block: read_source(block, context)),
            pipeline=pipeline.name,
            filter_counter=count_filter,
        ),
    )
    loaded = RowCounter("loaded")
    transformed = loaded
    if spec.load.schema_name:
        frame, checkpoint = _validate(frame, schemas, spec.load.schema_name, "load", tolerance, pipeline.name)
        checkpoints.append(checkpoint)
        transformed = checkpoint.counter

    if spec.performance.parallelism:
        frame = frame.repartition(spec.performance.parallelism)
    if frame is extracted.observed:
        # Nothing between the extract's count and the load adds or removes a row (with
        # tolerance all, validation passes on fewer rows than it counts: another frame).
        loaded = transformed = extracted
    else:
        frame = loaded.attach(frame)

    load_block = load_settings(spec)
    sink = sink_for(load_block)
    context.progress.begin("load")
    attempts = run_with_retry(
        (lambda: _load(sink, frame, load_block, context))
        if write is None
        else (lambda: _load_with(write, frame, load_block, context)),
        spec.error_handling.retry,
        retry_on=(SinkRejected,),
        stage="load",
        on_retry=context.progress.retried,
    )
    context.progress.begin("dead-letter")

    failed_by_stage: dict[str, int] = {}
    for checkpoint in checkpoints:
        checkpoint.failed = checkpoint.counter.values().get("failed", 0)
        if checkpoint.failed:
            failed_by_stage[checkpoint.stage] = failed_by_stage.get(checkpoint.stage, 0) + checkpoint.failed
        if checkpoint.failed and spec.error_handling.dead_letter is not None:
            deadletter.write(checkpoint.rejected, spec.error_handling.dead_letter, checkpoint.stage, context)
    # Rows the sink refused reached it, and were counted there, but were not loaded.
    refused = context.report.sink_refusals
    if refused is not None:
        failed_by_stage["load"] = failed_by_stage.get("load", 0) + refused.count
        if spec.error_handling.dead_letter is not None:
            deadletter.write(refused.letters, spec.error_handling.dead_letter, "load", context)
    failed_records = sum(failed_by_stage.values())
    context.progress.end()

    return RunMetrics(
        records_extracted=extracted.rows + sum(checkpoint.failed for checkpoint in source_rejects),
        records_transformed=transformed.rows,
        records_filtered=sum(counter.values().get("removed", 0) for counter in filter_counters),
        records_loaded=loaded.rows - (refused.count if refused is not None else 0),
        records_failed=failed_records,
        records_failed_by_stage=failed_by_stage or None,
        retry_count=attempts - 1,
        duration_ms=int((time.monotonic() - started) * 1000),
        success_rate=success_rate(extracted.rows, failed_records),
        high_water_mark=context.report.high_water_mark,
    )


def load_settings(spec: ETLPipelineSpec) -> Any:
    """The load block with the run's settings it inherits: a database sink without its own
    batchSize writes in batches of performance.batchSize."""
    block = spec.load
    if isinstance(block, JdbcSink) and block.batch_size is None:
        return block.model_copy(update={"batch_size": spec.performance.batch_size})
    return block


def _load(sink: Any, frame: Any, block: Any, context: RunContext) -> None:
    """Write; a bad record met on the way (tolerance none) is a DataError, not the sink's fault."""
    context.report.sink_refusals = None  # what an earlier attempt found, it did not write
    try:
        sink.write(frame, block, context)
    except Exception as failed:
        violation = record_violation(failed)
        if violation:
            raise DataError(violation) from None
        raise


def _load_with(write: Callable[[Any, Any], None], frame: Any, block: Any, context: RunContext) -> None:
    context.report.sink_refusals = None
    try:
        write(frame, block)
    except Exception as failed:
        violation = record_violation(failed)
        if violation:
            raise DataError(violation) from None
        raise


def _validate(
    frame: Any,
    schemas: SchemaRegistry,
    schema_name: str,
    stage: str,
    tolerance: Tolerance,
    pipeline: str,
    *,
    count_checked: bool = True,
) -> tuple[Any, Checkpoint]:
    """Check the columns against the Avro schema now, and every row during the load."""
    avro_schema = schemas.get(schema_name, stage=stage)
    counter = RowCounter(f"{stage}-validation")
    if tolerance == Tolerance.none:
        # A run that ends met no bad row, so the rows checked are the rows past the check, and
        # may be counted on either side of it. A count is a plan node outside generated code:
        # past the check (count_checked) it counts the narrow conformed rows and can be shared
        # with the load; before it, it sits on the rows as read, where it costs least when
        # transforms follow (0.3 s of 4 on 5 M rows aggregated).
        if count_checked:
            checked = counter.attach(validate_rows(frame, avro_schema, stage).valid_or_fail)
        else:
            checked = validate_rows(counter.attach(frame), avro_schema, stage).valid_or_fail
        return checked, Checkpoint(stage, counter)
    result = validate_rows(frame, avro_schema, stage)
    # The rejected rows come from a second plan over the source, run only when there are any.
    letters = deadletter.letters(result.invalid, pipeline=pipeline, stage=stage, schema_name=schema_name)
    return result.keep_valid(counter.attach(result.checked, failed=result.invalid_count)), Checkpoint(
        stage, counter, letters
    )
