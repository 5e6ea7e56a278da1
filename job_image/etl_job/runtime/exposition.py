"""A driver's figures in the Prometheus text format, for GET /metrics.

Built per scrape: a streaming driver's from the report that /progress also serves
(etl_job.streaming), so the two never disagree; a batch driver's from its RunProgress and Spark's
count of the rows read so far. One series per name and stage: the pod and namespace come from the
scrape's target labels (the chart's PodMonitor), the pipeline from here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from etl_job.runtime.run_progress import PHASES, RunProgress

__all__ = ["BREAKER_VALUES", "CONTENT_TYPE_LATEST", "run_exposition", "stream_exposition"]

#: The sink breaker's states as numbers, as the operator's etl_operator_circuit_state has them.
BREAKER_VALUES = {"closed": 0, "half-open": 1, "open": 2}
#: Stage label of etl_job_records_total, and the report's count behind it.
RECORD_STAGES = {
    "extracted": "recordsExtracted",
    "loaded": "recordsLoaded",
    "failed": "recordsFailed",
    "late": "recordsLate",
}


def stream_exposition(pipeline: str, report: Mapping[str, Any]) -> bytes:
    registry = CollectorRegistry()
    labels = {"pipeline": pipeline}

    def gauge(name: str, help_text: str, value: float) -> None:
        Gauge(name, help_text, list(labels), registry=registry).labels(**labels).set(value)

    records = Counter(
        "etl_job_records", "Records of the run so far, by stage.", ["pipeline", "stage"], registry=registry
    )
    for stage, key in RECORD_STAGES.items():
        records.labels(pipeline, stage).inc(max(0, int(report.get(key) or 0)))
    batches = Counter("etl_job_batches", "Micro-batches completed.", list(labels), registry=registry)
    batches.labels(**labels).inc(max(0, int(report.get("batches") or 0)))
    retries = Counter(
        "etl_job_retries", "Retried attempts of reads and writes.", list(labels), registry=registry
    )
    retries.labels(**labels).inc(max(0, int(report.get("retries") or 0)))
    last = report.get("lastBatchId")
    gauge(
        "etl_job_last_batch_id",
        "Id of the last micro-batch completed (-1: none yet).",
        -1 if last is None else last,
    )
    gauge(
        "etl_job_input_rows_per_second",
        "Rows read per second in the last trigger.",
        report.get("inputRowsPerSecond") or 0.0,
    )
    gauge(
        "etl_job_processed_rows_per_second",
        "Rows processed per second in the last trigger.",
        report.get("processedRowsPerSecond") or 0.0,
    )
    gauge(
        "etl_job_batch_duration_seconds",
        "Duration of the last trigger.",
        (report.get("batchDurationMs") or 0) / 1000,
    )
    gauge(
        "etl_job_sink_breaker_state",
        "The job's breaker around the sink: 0 closed, 1 half-open, 2 open.",
        BREAKER_VALUES.get(str(report.get("breaker", "closed")), 0),
    )
    gauge(
        "etl_job_stalled",
        "1 while no micro-batch completes within stallTimeoutSeconds.",
        1 if report.get("stalled") else 0,
    )
    gauge(
        "etl_job_ready",
        "1 while the query runs and is not stalled (/readyz).",
        1 if report.get("ready") else 0,
    )
    watermark = _epoch(report.get("watermark"))
    if watermark is not None:
        gauge("etl_job_watermark_timestamp_seconds", "Event-time watermark of a windowed stream.", watermark)
    return generate_latest(registry)


def run_exposition(pipeline: str, progress: RunProgress, rows_read: int) -> bytes:
    """A batch run's figures: each phase's duration and the one under way, rows read so far,
    retries, and the record counts by stage once the load has them (0 before)."""
    registry = CollectorRegistry()
    durations, running = progress.durations(), progress.running()
    duration = Gauge(
        "etl_job_stage_duration_seconds",
        "Seconds each phase of the run took, or has taken so far.",
        ["pipeline", "stage"],
        registry=registry,
    )
    active = Gauge(
        "etl_job_stage_active", "1 for the phase under way.", ["pipeline", "stage"], registry=registry
    )
    for phase in PHASES:
        duration.labels(pipeline, phase).set(durations.get(phase, 0.0))
        active.labels(pipeline, phase).set(1 if phase == running else 0)
    Counter(
        "etl_job_rows_read", "Rows Spark has read so far, over every stage.", ["pipeline"], registry=registry
    ).labels(pipeline).inc(max(0, rows_read))
    Counter(
        "etl_job_retries", "Retried attempts of reads and writes.", ["pipeline"], registry=registry
    ).labels(pipeline).inc(progress.retries)
    records = Counter(
        "etl_job_records", "Records of the run, by stage.", ["pipeline", "stage"], registry=registry
    )
    for stage, key in RECORD_STAGES.items():
        if key != "recordsLate":  # a batch run has no watermark
            records.labels(pipeline, stage).inc(max(0, int(progress.records.get(key) or 0)))
    return generate_latest(registry)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
