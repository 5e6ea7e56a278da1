"""A streaming driver's figures in the Prometheus text format, for GET /metrics.

Built per scrape from the report that /progress also serves (etl_job.streaming), so the two never
disagree. One series per name and stage: the pod and namespace come from the scrape's target
labels (the chart's PodMonitor), the pipeline from here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["BREAKER_VALUES", "CONTENT_TYPE_LATEST", "stream_exposition"]

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


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
