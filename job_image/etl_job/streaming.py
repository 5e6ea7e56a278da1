"""One streaming run of a pipeline: Kafka or S3 read as a stream, each micro-batch validated,
transformed and written in foreachBatch, idempotent by batch id, until SIGTERM (or, with
availableNow, until what was there is drained).

A pipeline without an aggregation runs each micro-batch through the batch run (pipeline.py):
decoding, validation, dead letters and counts are those of a batch run over the batch's rows.
With an aggregation or a time window, the stream carries decoding, validation and the transforms
up to it (Spark keeps the state in the checkpoint), and each micro-batch of updated rows goes
through the rest. Every sink write is idempotent by batch id, since Spark replays the batch a
crash interrupted: an upsert writes the same keys again, a database append records the batch
in the same transaction as its rows (connectors/jdbc/batches.py), a file append writes the
folder batch_id=N whole, and Kafka messages carry the batch id in a header."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from etl_job.connectors import catalog
from etl_job.connectors.files.paths import resolve_path
from etl_job.connectors.files.s3 import use_connection
from etl_job.connectors.kafka import options as kafka_options
from etl_job.connectors.kafka.connector import KafkaTopicSource, resolve_security
from etl_job.connectors.registry import sink_for
from etl_job.contract import (
    CircuitBreakerPolicy,
    ConfigurationError,
    DataError,
    ETLPipeline,
    JdbcSink,
    KafkaSource,
    RunMetrics,
    S3Sink,
    S3Source,
    SinkRejected,
    SourceUnavailable,
    StreamingSettings,
    duration_seconds,
)
from etl_job.quality.guard import record_violation
from etl_job.quality.schemas import SchemaRegistry, avro_to_spark_type
from etl_job.quality.validate import validate_rows
from etl_job.runtime import health
from etl_job.runtime.context import RunContext, RunReport
from etl_job.runtime.exposition import CONTENT_TYPE_LATEST, stream_exposition
from etl_job.runtime.metrics import success_rate, write_termination_message
from etl_job.transforms.stage import TransformContext, apply_transforms

log = logging.getLogger("etl_job.streaming")

#: Every connector registers itself on import.
_CONNECTORS = catalog
#: The stream's own count of the rows it read, in each batch's progress (stateful plans).
EXTRACTED_METRIC = "etl_extracted"


class StreamStopped(Exception):
    """Raised inside a micro-batch that waits on an open breaker when the run is asked to stop:
    the batch is not committed, and the restarted run replays it."""


# --- the sink's circuit breaker ----------------------------------------------------------------


class SinkBreaker:
    """Closed, open, half-open around the sink, inside the job: after failureThreshold failed
    loads in a row it opens, the batch waits resetTimeoutSeconds, then one half-open attempt
    closes it or opens it again. The query pauses meanwhile instead of dying."""

    def __init__(
        self,
        policy: CircuitBreakerPolicy,
        stop: threading.Event,
        sleep: Callable[[float], bool] | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.policy = policy
        self.state = "closed"
        self.failures = 0
        self.opened = 0
        self._stop = stop
        self._sleep = sleep or stop.wait
        self._on_change = on_change

    def call(self, attempt: Callable[[], RunMetrics]) -> RunMetrics:
        """`attempt` until it succeeds; a SinkRejected counts as a failure, anything else is raised."""
        while True:
            try:
                result = attempt()
            except SinkRejected as failed:
                if not self.policy.enabled:
                    raise
                self._failed(failed)
                if self.state == "open":
                    log.warning(
                        "sink breaker open: the stream pauses for %d s",
                        self.policy.reset_timeout_seconds,
                        extra={"breaker": self.state, "failures": self.failures},
                    )
                    if self._sleep(self.policy.reset_timeout_seconds) or self._stop.is_set():
                        raise StreamStopped("stopped while the sink was down") from failed
                    self._transition("half-open")
                continue
            if self.state != "closed":
                self._transition("closed")
            self.failures = 0
            return result

    def _failed(self, failed: SinkRejected) -> None:
        self.failures += 1
        log.warning("sink failed (%d in a row): %s", self.failures, failed, extra={"breaker": self.state})
        if self.state == "half-open" or self.failures >= self.policy.failure_threshold:
            self.opened += 1
            self._transition("open")

    def _transition(self, state: str) -> None:
        if state != self.state:
            log.warning("sink breaker %s -> %s", self.state, state, extra={"breaker": state})
        self.state = state
        # Told at once: the batch waits inside call() while open, and /progress and /readyz
        # must say so during the pause, not once the sink is back.
        if self._on_change is not None:
            self._on_change(state)


# --- progress and health -------------------------------------------------------------------------


@dataclasses.dataclass
class StreamProgress:
    """What the driver reports: the last batch, rates, totals, the breaker; read by /readyz."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    last_batch_id: int | None = None
    last_batch_at: float | None = None
    #: Last trigger Spark reported, with data or idle: an idle stream is not a stalled one.
    last_trigger_at: float | None = None
    input_rows_per_second: float = 0.0
    processed_rows_per_second: float = 0.0
    batch_duration_ms: int = 0
    watermark: str | None = None
    batches: int = 0
    replayed_batches: int = 0
    records_extracted: int = 0
    records_transformed: int = 0
    records_filtered: int = 0
    records_loaded: int = 0
    records_failed: int = 0
    #: Events behind the watermark, which Spark's windows drop by their rules.
    records_late: int = 0
    retry_count: int = 0
    breaker: str = "closed"
    active: bool = False
    errors: list[str] = dataclasses.field(default_factory=list)

    def add(self, batch: RunMetrics, events_counted_by_stream: bool) -> None:
        """One batch's counts. Behind an aggregation the batch's rows are aggregate rows, so the
        events read are counted from the stream's progress instead (`note_trigger`)."""
        if events_counted_by_stream:
            self.records_transformed += batch.records_extracted
        else:
            self.records_extracted += batch.records_extracted
            self.records_transformed += batch.records_transformed
        self.records_filtered += batch.records_filtered
        self.records_loaded += batch.records_loaded
        self.records_failed += batch.records_failed
        self.retry_count += batch.retry_count

    def note_trigger(self, progress: Any, events_counted_by_stream: bool) -> None:
        """One trigger's progress as Spark reports it (a StreamingQueryProgress), idle or not."""
        self.last_trigger_at = time.monotonic()
        self.input_rows_per_second = float(progress.inputRowsPerSecond or 0.0)
        self.processed_rows_per_second = float(progress.processedRowsPerSecond or 0.0)
        self.batch_duration_ms = int((progress.durationMs or {}).get("triggerExecution", 0))
        self.watermark = (progress.eventTime or {}).get("watermark") or self.watermark
        self.records_late += sum(int(s.numRowsDroppedByWatermark or 0) for s in progress.stateOperators or [])
        if events_counted_by_stream:
            observed = (progress.observedMetrics or {}).get(EXTRACTED_METRIC)
            self.records_extracted += int(observed["rows"]) if observed is not None else 0

    def stalled(self, stall_timeout: float, now: float | None = None) -> str | None:
        """Why the query makes no progress, or None: the sink breaker is open, or no trigger
        (with data or idle) has completed for stall_timeout, so a batch hangs."""
        now = time.monotonic() if now is None else now
        if self.breaker == "open":
            return "the sink breaker is open: the stream pauses until the sink answers"
        last = max(self.last_batch_at or 0.0, self.last_trigger_at or 0.0, self.started)
        if self.active and now - last > stall_timeout:
            return f"no micro-batch completed for {int(now - last)} s"
        return None

    def ready(self, stall_timeout: float, now: float | None = None) -> tuple[bool, str]:
        if not self.active:
            return False, "the query is not running"
        stalled = self.stalled(stall_timeout, now)
        return (False, stalled) if stalled else (True, "ok")

    def report(self, stall_timeout: float, now: float | None = None) -> dict[str, Any]:
        """What /progress answers and the operator copies into the pipeline's status."""
        now = time.monotonic() if now is None else now
        ready, reason = self.ready(stall_timeout, now)
        stalled = self.stalled(stall_timeout, now)
        age = None if self.last_batch_at is None else int(now - self.last_batch_at)
        return {
            "ready": ready,
            "stalled": stalled is not None,
            "message": stalled or reason,
            "lastBatchAgeSeconds": age,
            **self.summary(),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "lastBatchId": self.last_batch_id,
            "inputRowsPerSecond": round(self.input_rows_per_second, 1),
            "processedRowsPerSecond": round(self.processed_rows_per_second, 1),
            "batchDurationMs": self.batch_duration_ms,
            "watermark": self.watermark,
            "batches": self.batches,
            "recordsExtracted": self.records_extracted,
            "recordsLoaded": self.records_loaded,
            "recordsFailed": self.records_failed,
            "recordsLate": self.records_late,
            "retries": self.retry_count,
            "breaker": self.breaker,
        }

    def metrics(self, started: float) -> RunMetrics:
        return RunMetrics(
            records_extracted=self.records_extracted,
            records_transformed=self.records_transformed,
            records_filtered=self.records_filtered,
            records_loaded=self.records_loaded,
            records_failed=self.records_failed,
            records_late=self.records_late,
            retry_count=self.retry_count,
            duration_ms=int((time.monotonic() - started) * 1000),
            success_rate=success_rate(self.records_extracted, self.records_failed),
            errors=list(self.errors),
        )


def serve_health(
    progress: StreamProgress, port: int, stall_timeout: float, pipeline: str = ""
) -> ThreadingHTTPServer:
    """/healthz (the driver process answers), /readyz (the query runs and is not stalled),
    /progress (the figures the operator shows in the pipeline's status, always 200) and /metrics
    (the same figures for Prometheus)."""

    def answer(path: str) -> tuple[int, str, bytes]:
        report = progress.report(stall_timeout)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, stream_exposition(pipeline, report)
        if path == "/readyz":
            code = 200 if report["ready"] else 503
        elif path in ("/healthz", "/progress"):
            code = 200
        else:
            code, report = 404, {"message": "not found"}
        return code, "application/json", json.dumps(report).encode()

    return health.serve(port, answer)


# --- the static side of stream-static joins ---------------------------------------------------


def read_due(read_at: float | None, interval: float | None, now: float) -> bool:
    """Whether a join's right side is read again now: always without an interval, else once the
    interval has passed since it was last read."""
    return interval is None or read_at is None or now - read_at >= interval


class StaticSides:
    """The right sides of the joins each micro-batch runs, kept between batches and read again
    when their refreshInterval has passed; a join without one reads its side for every batch."""

    def __init__(
        self,
        read: Callable[[Any], Any],
        intervals: dict[str, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._intervals = intervals
        self._clock = clock
        self._kept: dict[str, tuple[Any, float]] = {}

    @classmethod
    def of(cls, pipeline: ETLPipeline, read: Callable[[Any], Any]) -> StaticSides:
        intervals = {
            _block_key(t.right): float(duration_seconds(t.refresh_interval))
            for t in pipeline.spec.transforms
            if t.transform_type == "Join" and t.right is not None and t.refresh_interval
        }
        return cls(read, intervals)

    def __call__(self, block: Any) -> Any:
        key = _block_key(block)
        interval = self._intervals.get(key)
        now = self._clock()
        kept = self._kept.get(key)
        if not read_due(kept[1] if kept else None, interval, now):
            assert kept is not None
            return kept[0]
        frame = self._read(block)
        if interval is None:
            return frame
        if kept is not None:
            kept[0].unpersist()
        # Kept in memory and read now, so every batch until the next refresh joins the same rows.
        frame = frame.persist()
        rows = frame.count()
        log.info("join side read: %d rows, kept for %d s", rows, interval, extra={"stage": "transform"})
        self._kept[key] = (frame, now)
        return frame


def _block_key(block: Any) -> str:
    return str(block.model_dump_json())


# --- the run ---------------------------------------------------------------------------------


def stateful_index(pipeline: ETLPipeline) -> int | None:
    """Index of the transform that keeps state across micro-batches (Aggregation, time Window)."""
    for index, transform in enumerate(pipeline.spec.transforms):
        if transform.transform_type == "Aggregation" or (
            transform.transform_type == "Window" and transform.time_column is not None
        ):
            return index
    return None


class StreamingRun:
    """The query, its foreachBatch, the breaker, the progress, and how it stops."""

    def __init__(
        self,
        pipeline: ETLPipeline,
        context: RunContext,
        schemas: SchemaRegistry,
        stop: threading.Event | None = None,
    ) -> None:
        spec = pipeline.spec
        if spec.streaming is None:
            raise ConfigurationError("mode streaming needs streaming", field="streaming")
        self.pipeline = pipeline
        self.settings: StreamingSettings = spec.streaming
        self.context = context
        self.schemas = schemas
        self.stop = stop or threading.Event()
        self.progress = StreamProgress()
        self.breaker = SinkBreaker(
            spec.error_handling.circuit_breaker, self.stop, on_change=self._breaker_changed
        )
        #: Held while a batch writes: stopping takes it, so a stop falls between batches.
        self.batch_lock = threading.Lock()
        self.split = stateful_index(pipeline)
        #: Bad records before an aggregation cannot leave its state, so with tolerance all a
        #: second query over the same source writes them to the dead-letter queue.
        self.letters_apart = self.split is not None and spec.error_handling.tolerance == "all"
        self.static_sides = StaticSides.of(pipeline, _static_source(context))
        self.failure: BaseException | None = None
        #: Batches completed when the query was last restarted after a Spark bug.
        self._batches_at_restart = 0
        #: Time of the last trigger whose progress is counted.
        self._last_trigger = ""

    def _breaker_changed(self, state: str) -> None:
        self.progress.breaker = state

    # -- building the query --

    def _raw_stream(self) -> Any:
        block = self.pipeline.spec.extract
        spark = self.context.spark
        if isinstance(block, KafkaSource):
            kafka_options.refuse_owned(block.options, kafka_options.SOURCE_OWNED, "extract")
            security = resolve_security(block.security, self.context.env, "extract")
            options = kafka_options.reader_options(block, security, block.starting_offsets, "latest")
            options.pop("endingOffsets")
            if self.settings.max_offsets_per_trigger:
                options["maxOffsetsPerTrigger"] = str(self.settings.max_offsets_per_trigger)
            return spark.readStream.format("kafka").options(**options).load()
        if isinstance(block, S3Source):
            path = resolve_path(block.path, self.context.base_dir)
            use_connection(spark, path, block.s3, self.context.env, stage="extract")
            reader = spark.readStream.format(block.format).schema(self._file_schema(block))
            for key, value in block.options.items():
                reader = reader.option(key, value)
            if self.settings.max_files_per_trigger:
                reader = reader.option("maxFilesPerTrigger", str(self.settings.max_files_per_trigger))
            return reader.load(path)
        raise ConfigurationError(
            f"a streaming pipeline reads Kafka or S3, not {block.source_type}",
            stage="extract",
            field="extract.sourceType",
        )

    def _file_schema(self, block: S3Source) -> Any:
        """A file stream needs its schema up front: the Avro schema's fields; all strings for CSV,
        which validation then casts and checks as it does in a batch run."""
        from pyspark.sql import types as T

        if block.schema_name is None:
            raise ConfigurationError(
                "a streaming S3 source needs schemaName: a file stream reads with a declared schema",
                stage="extract",
                field="extract.schemaName",
            )
        declared = avro_to_spark_type(self.schemas.get(block.schema_name, stage="extract"))
        if block.format == "csv":
            return T.StructType([T.StructField(f.name, T.StringType()) for f in declared.fields])
        return declared

    def _decoded(self, raw: Any, context: RunContext) -> Any:
        block = self.pipeline.spec.extract
        if isinstance(block, KafkaSource):
            return KafkaTopicSource().decoded(raw, block, context)
        return raw

    def _stateful_stream(self, raw: Any) -> Any:
        """Decoding, validation and the transforms up to the aggregation, on the stream. With
        tolerance all, bad records are left out of the aggregation here and dead-lettered by the
        letter query (`_letter_batch`), which reads the same source."""
        from pyspark.sql import functions as F

        assert self.split is not None
        spec = self.pipeline.spec
        tolerance = "all" if self.letters_apart else "none"
        # Its set-aside records are the letter query's to write: this report is dropped.
        context = dataclasses.replace(self.context, tolerance=tolerance, report=RunReport())
        frame = self._decoded(raw.observe(EXTRACTED_METRIC, F.count(F.lit(1)).alias("rows")), context)
        if spec.extract.schema_name:
            avro = self.schemas.get(spec.extract.schema_name, stage="extract")
            result = validate_rows(frame, avro, "extract")
            frame = result.valid if self.letters_apart else result.valid_or_fail
        return apply_transforms(
            frame,
            spec.transforms[: self.split + 1],
            TransformContext(
                spark=self.context.spark,
                read_source=_static_source(self.context),
                pipeline=self.pipeline.name,
                filter_counter=None,
            ),
        )

    def _per_batch_pipeline(self) -> ETLPipeline:
        """The pipeline each micro-batch runs through: all of it, or what follows the aggregation."""
        if self.split is None:
            return self.pipeline
        spec = self.pipeline.spec
        extract = spec.extract.model_copy(update={"schema_name": None})
        rest = spec.model_copy(update={"transforms": spec.transforms[self.split + 1 :], "extract": extract})
        return self.pipeline.model_copy(update={"spec": rest})

    def start(self) -> Any:
        spark = self.context.spark
        checkpoint = resolve_path(self.settings.checkpoint_location, self.context.base_dir)
        use_connection(spark, checkpoint, self.settings.s3, self.context.env, stage="checkpoint")
        raw = self._raw_stream()
        stream = raw if self.split is None else self._stateful_stream(raw)
        per_batch = self._per_batch_pipeline()
        query = self._start_query(
            stream.writeStream.foreachBatch(lambda frame, batch_id: self._batch(per_batch, frame, batch_id)),
            checkpoint,
            _query_name(self.pipeline.name),
            self._output_mode(),
        )
        self.progress.active = True
        return query

    def start_letters(self) -> Any:
        """The letter query of `letters_apart`: the same source, its own checkpoint beside the
        main one, each micro-batch's undecodable and invalid records dead-lettered."""
        checkpoint = letter_checkpoint(resolve_path(self.settings.checkpoint_location, self.context.base_dir))
        return self._start_query(
            self._raw_stream().writeStream.foreachBatch(self._letter_batch),
            checkpoint,
            _query_name(self.pipeline.name) + "_dead_letters",
            "append",
        )

    def _start_query(self, writer: Any, checkpoint: str, name: str, output_mode: str) -> Any:
        writer = writer.option("checkpointLocation", checkpoint).queryName(name).outputMode(output_mode)
        trigger = self.settings.trigger
        if trigger.available_now:
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=trigger.processing_time)
        try:
            return writer.start()
        except Exception as failed:  # noqa: BLE001 - Spark's analysis errors come in many classes
            raise ConfigurationError(
                f"Spark cannot run this pipeline on a stream: {_first_line(failed)}", stage="transform"
            ) from None

    def _output_mode(self) -> str:
        if self.split is None:
            return "append"
        return "update" if self.pipeline.spec.load.write_mode == "upsert" else "append"

    # -- each micro-batch --

    def _batch(self, pipeline: ETLPipeline, frame: Any, batch_id: int) -> None:
        from etl_job.pipeline import run_pipeline

        with self.batch_lock:
            if self.stop.is_set():
                raise StreamStopped(f"stopping before batch {batch_id}")
            started = time.monotonic()

            def attempt() -> RunMetrics:
                context = dataclasses.replace(self.context, batch_id=batch_id, report=RunReport())
                if self._committed_before(pipeline.spec.load, context, batch_id):
                    self.progress.replayed_batches += 1
                    return RunMetrics()
                source = self._decoded(frame, context) if self.split is None else frame
                return run_pipeline(
                    pipeline,
                    context,
                    self.schemas,
                    source=source,
                    write=lambda rows, block: self._write(rows, block, context, batch_id),
                    read_join_side=self.static_sides,
                )

            try:
                metrics = self.breaker.call(attempt)
            finally:
                self.progress.breaker = self.breaker.state
                _keep_active(frame.sparkSession)
            self.progress.add(metrics, events_counted_by_stream=self.split is not None)
            self.progress.batches += 1
            self.progress.last_batch_id = batch_id
            self.progress.last_batch_at = time.monotonic()
            log.info(
                "batch %d: %d in, %d loaded, %d failed, %d filtered in %d ms",
                batch_id,
                metrics.records_extracted,
                metrics.records_loaded,
                metrics.records_failed,
                metrics.records_filtered,
                int((time.monotonic() - started) * 1000),
                extra={
                    "pipeline": self.pipeline.name,
                    "batchId": batch_id,
                    "batch": metrics.model_dump(mode="json", exclude_none=True),
                },
            )

    def _letter_batch(self, frame: Any, batch_id: int) -> None:
        """Dead-letter one micro-batch's bad records (of a `letters_apart` run) and count them."""
        from etl_job.connectors import deadletter
        from etl_job.runtime.metrics import RowCounter

        with self.batch_lock:
            if self.stop.is_set():
                raise StreamStopped(f"stopping before dead-letter batch {batch_id}")
            context = dataclasses.replace(
                self.context, batch_id=batch_id, tolerance="all", report=RunReport()
            )
            decoded = self._decoded(frame, context)
            found = [(c.stage, c.rejected) for c in context.report.checkpoints if c.rejected is not None]
            schema_name = self.pipeline.spec.extract.schema_name
            if schema_name:
                avro = self.schemas.get(schema_name, stage="extract")
                invalid = validate_rows(decoded, avro, "extract").invalid
                found.append(
                    ("extract", deadletter.letters(invalid, pipeline=self.pipeline.name, stage="extract",
                                                   schema_name=schema_name,
                                                   context={"batch": str(batch_id)}))
                )  # fmt: skip
            target = self.pipeline.spec.error_handling.dead_letter
            failed = 0
            for stage, letters in found:
                counter = RowCounter(f"letters-{stage}")
                counted = counter.attach(letters)
                if target is not None:
                    deadletter.write(counted, target, stage, context)
                else:
                    counted.count()  # counted, as a batch run counts what it cannot letter
                failed += counter.rows
            self.progress.records_failed += failed
            if failed:
                log.info(
                    "dead-letter batch %d: %d records set aside",
                    batch_id,
                    failed,
                    extra={"pipeline": self.pipeline.name, "batchId": batch_id},
                )

    @staticmethod
    def _committed_before(block: Any, context: RunContext, batch_id: int) -> bool:
        """A database append that holds this batch already (Spark replays it after a crash)."""
        if not (isinstance(block, JdbcSink) and block.write_mode == "append"):
            return False
        from etl_job.connectors.jdbc.batches import committed_before

        return committed_before(block, context, batch_id)

    def _write(self, rows: Any, block: Any, context: RunContext, batch_id: int) -> None:
        """The load of one micro-batch, idempotent by batch id."""
        if isinstance(block, JdbcSink) and block.write_mode == "append":
            from etl_job.connectors.jdbc.batches import append_batch

            if not append_batch(rows, block, context, batch_id):
                self.progress.replayed_batches += 1
            return
        if isinstance(block, S3Sink):
            # The batch's own folder, replaced whole: a replayed batch rewrites the same files.
            folder = f"{block.path.rstrip('/')}/batch_id={batch_id}"
            block = block.model_copy(update={"path": folder, "write_mode": "overwrite"})
        sink_for(block).write(rows, block, context)

    # -- running until stopped --

    def run(self, termination_log: Path | None = None) -> RunMetrics:
        started = time.monotonic()
        restarts = 0
        while True:
            query = self._run_query()
            failure = query.exception()
            if failure is None or self.stop.is_set():
                break
            if not spark_bug_a_restart_passes(failure) or restarts >= MAX_QUERY_RESTARTS:
                raise _run_error(failure)
            # A restart from the checkpoint is what a new driver would do, without a new JVM.
            restarts = 0 if self.progress.batches > self._batches_at_restart else restarts
            restarts += 1
            self._batches_at_restart = self.progress.batches
            log.warning(
                "the query failed on a known Spark bug (%s); restarting it from the checkpoint (%d of %d)",
                _first_line(failure),
                restarts,
                MAX_QUERY_RESTARTS,
                extra={"pipeline": self.pipeline.name},
            )
        metrics = self.progress.metrics(started)
        if termination_log is not None:
            write_termination_message(termination_log, metrics)
        return metrics

    def _run_query(self) -> Any:
        """Start the query (and the letter query) and follow it until it ends, fails, or a stop
        is asked for; the query whose failure ends the run is returned."""
        letters = self.start_letters() if self.letters_apart else None
        query = self.start()
        try:
            while True:
                try:
                    finished = query.awaitTermination(1)
                except Exception:  # noqa: BLE001 - the query failed; query.exception() says how
                    finished = True
                self._note_progress(query)
                if self.stop.is_set():
                    # Looked at first: a batch that began after the request ends the query itself.
                    log.info("stop requested: stopping the query between micro-batches")
                    for running in (query, letters):
                        if running is not None and running.isActive:
                            _stop_between_batches(running, self.batch_lock)
                    break
                if letters is not None and not letters.isActive and letters.exception() is not None:
                    _stop_between_batches(query, self.batch_lock)
                    return letters
                if finished or not query.isActive:
                    break
            if letters is not None:
                # availableNow: the letter query drains the same source; else it stops with the query.
                if self.settings.trigger.available_now and letters.isActive:
                    letters.awaitTermination()
                _stop_between_batches(letters, self.batch_lock)
                if letters.exception() is not None and query.exception() is None:
                    return letters
        finally:
            self.progress.active = False
        self._note_progress(query)
        return query

    def _note_progress(self, query: Any) -> None:
        for progress in query.recentProgress or []:
            # By trigger time (ISO 8601 in UTC, so ordered as text): an idle trigger reports the
            # batch id of the batch still to come, so the id does not tell triggers apart.
            if progress.timestamp <= self._last_trigger:
                continue
            self._last_trigger = progress.timestamp
            self.progress.note_trigger(progress, events_counted_by_stream=self.split is not None)
            if progress.numInputRows:
                log.info(
                    "stream progress",
                    extra={"pipeline": self.pipeline.name, "progress": self.progress.summary()},
                )


#: Restarts of the query in a row (no batch completed between them) after a known Spark bug.
MAX_QUERY_RESTARTS = 3
#: Spark 4.1 bugs that fail a query which a restart from its checkpoint runs on past, each as
#: the texts its failure carries. The Kafka source reports the metrics of the first batch a
#: driver runs from an existing checkpoint (replayed or new) before it knows the latest offsets
#: (SPARK-55271): the batch is written and committed, then the query fails; restarted, it runs
#: on. Planning a stateful batch has met no active session on the stream's thread.
SPARK_BUGS = (
    ("NullPointerException", "KafkaMicroBatchStream"),
    ("NullPointerException", "SparkPlan.session()"),
)


def spark_bug_a_restart_passes(failure: Any) -> bool:
    """Whether the query's failure is one of SPARK_BUGS, by the messages and JVM stack traces of
    it and its causes (PySpark keeps a trace in _stackTrace and the cause in _cause)."""
    texts: list[str] = []
    while failure is not None and len(texts) < 20:
        texts += [str(failure), str(getattr(failure, "_stackTrace", "") or "")]
        failure = getattr(failure, "_cause", None) or failure.__cause__
    text = "\n".join(texts)
    return any(all(part in text for part in bug) for bug in SPARK_BUGS)


def _keep_active(session: Any) -> None:
    """Make the stream's session the active one of this thread again (the stream's own, where
    PySpark runs a foreachBatch's calls): calls in the batch may leave another session active or
    none, and Spark plans the next batch with whatever is."""
    session._jvm.org.apache.spark.sql.SparkSession.setActiveSession(session._jsparkSession)


def _stop_between_batches(query: Any, batch_lock: threading.Lock, poll_seconds: float = 0.1) -> None:
    """Stop the query where no batch is half done. Holding the batch lock keeps a new batch from
    writing; a trigger still active under it is one whose write is done and whose commit to the
    checkpoint is under way, which stopping now would lose (the restart would replay the batch
    the run has already counted). So wait for that commit, then stop."""
    while True:
        with batch_lock:
            if not query.isActive or not query.status.get("isTriggerActive", False):
                query.stop()
                return
        time.sleep(poll_seconds)


def _static_source(context: RunContext) -> Callable[[Any], Any]:
    from etl_job.connectors.registry import read_source

    return lambda block: read_source(block, context)


def letter_checkpoint(checkpoint: str) -> str:
    """The letter query's checkpoint: beside the main one, which Spark owns whole."""
    return checkpoint.rstrip("/") + "-dead-letters"


def _query_name(pipeline: str) -> str:
    return "etl_" + "".join(c if c.isalnum() else "_" for c in pipeline)


def _first_line(failed: BaseException) -> str:
    return next((line.strip() for line in str(failed).splitlines() if line.strip()), type(failed).__name__)


def _run_error(failure: Any) -> Exception:
    """The query's failure as the job's error class: a bad record, a sink, or the source."""
    text = str(failure)
    violation = record_violation(failure)
    if violation:
        return DataError(violation)
    for cause in (SinkRejected, ConfigurationError, DataError):
        if cause.__name__ in text:
            return cause(_first_line(failure).split(cause.__name__ + ":", 1)[-1].strip(), stage="load")
    return SourceUnavailable(f"the streaming query failed: {_first_line(failure)}", stage="extract")


def run_stream(
    pipeline: ETLPipeline,
    context: RunContext,
    schemas: SchemaRegistry,
    *,
    termination_log: Path | None = None,
) -> RunMetrics:
    """Run until SIGTERM (exit 0 at a batch boundary) or, with availableNow, until drained."""
    assert pipeline.spec.streaming is not None
    run = StreamingRun(pipeline, context, schemas)
    previous = signal.signal(signal.SIGTERM, lambda *_: run.stop.set())
    port = int(os.environ.get(health.HEALTH_PORT_ENV, pipeline.spec.streaming.health_port))
    stall_timeout = pipeline.spec.streaming.stall_timeout_seconds
    server = serve_health(run.progress, port, stall_timeout, pipeline.name) if port else None
    try:
        return run.run(termination_log)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.shutdown()
