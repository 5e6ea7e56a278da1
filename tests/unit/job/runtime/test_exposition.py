"""A driver's /metrics, streaming and batch, read back with Prometheus' own text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from etl_job.runtime.exposition import run_exposition, stream_exposition
from etl_job.runtime.run_progress import RunProgress


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


REPORT = {
    "ready": False, "stalled": True, "message": "the sink breaker is open", "lastBatchId": 41,
    "batches": 42, "inputRowsPerSecond": 1500.5, "processedRowsPerSecond": 2100.0,
    "batchDurationMs": 850, "watermark": "2026-12-06T05:00:00.000Z", "recordsExtracted": 63000,
    "recordsLoaded": 2100, "recordsFailed": 3, "recordsLate": 12, "breaker": "open", "retries": 4,
}  # fmt: skip


def test_every_figure_of_the_report_is_a_series_of_its_pipeline() -> None:
    seen = samples(stream_exposition("orders", REPORT))
    pipeline = (("pipeline", "orders"),)
    for stage, count in (("extracted", 63000), ("loaded", 2100), ("failed", 3), ("late", 12)):
        assert seen["etl_job_records_total", (("pipeline", "orders"), ("stage", stage))] == count
    assert seen["etl_job_batches_total", pipeline] == 42
    assert seen["etl_job_retries_total", pipeline] == 4
    assert seen["etl_job_last_batch_id", pipeline] == 41
    assert seen["etl_job_input_rows_per_second", pipeline] == 1500.5
    assert seen["etl_job_batch_duration_seconds", pipeline] == 0.85
    assert seen["etl_job_sink_breaker_state", pipeline] == 2
    assert seen["etl_job_stalled", pipeline] == 1 and seen["etl_job_ready", pipeline] == 0
    assert seen["etl_job_watermark_timestamp_seconds", pipeline] == 1796533200.0


def test_a_driver_that_has_not_run_a_batch_yet_reports_zeros_and_no_watermark() -> None:
    seen = samples(stream_exposition("orders", {"ready": False, "breaker": "closed"}))
    assert seen["etl_job_last_batch_id", (("pipeline", "orders"),)] == -1
    assert seen["etl_job_records_total", (("pipeline", "orders"), ("stage", "loaded"))] == 0
    assert not any(name == "etl_job_watermark_timestamp_seconds" for name, _ in seen)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_batch_run_shows_each_phase_its_time_so_far_and_the_one_under_way() -> None:
    clock = Clock()
    progress = RunProgress(clock)
    progress.begin("start")
    clock.now += 9.5
    progress.begin("extract")
    clock.now += 0.5
    progress.begin("load")
    progress.retried()
    clock.now += 30
    seen = samples(run_exposition("orders", progress, rows_read=120_000))

    def by_stage(name: str) -> dict[str, float]:
        return {dict(labels)["stage"]: value for (series, labels), value in seen.items() if series == name}

    assert by_stage("etl_job_stage_duration_seconds") == {
        "start": 9.5, "extract": 0.5, "load": 30.0, "dead-letter": 0.0,
    }  # fmt: skip
    assert by_stage("etl_job_stage_active") == {"start": 0, "extract": 0, "load": 1, "dead-letter": 0}
    assert seen["etl_job_rows_read_total", (("pipeline", "orders"),)] == 120_000
    assert seen["etl_job_retries_total", (("pipeline", "orders"),)] == 1
    assert by_stage("etl_job_records_total") == {"extracted": 0, "loaded": 0, "failed": 0}  # not yet known

    progress.begin("dead-letter")
    clock.now += 2
    progress.end()
    progress.records = {"recordsExtracted": 1000, "recordsLoaded": 990, "recordsFailed": 10}
    clock.now += 60  # ended phases keep their length
    seen = samples(run_exposition("orders", progress, rows_read=1000))
    assert by_stage("etl_job_stage_duration_seconds")["load"] == 30.0
    assert by_stage("etl_job_stage_duration_seconds")["dead-letter"] == 2.0
    assert set(by_stage("etl_job_stage_active").values()) == {0}
    assert by_stage("etl_job_records_total") == {"extracted": 1000, "loaded": 990, "failed": 10}
