"""The streaming run's pure parts: the sink breaker's states and readiness."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from etl_job.contract import CircuitBreakerPolicy, RunMetrics, SinkRejected
from etl_job.streaming import EXTRACTED_METRIC, SinkBreaker, StreamProgress, StreamStopped


def _flaky(failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def attempt() -> RunMetrics:
        calls.append(1)
        if len(calls) <= failures:
            raise SinkRejected("database down", stage="load")
        return RunMetrics(records_loaded=5)

    return calls, attempt


def _noted(pauses: list[float], seconds: float) -> bool:
    pauses.append(seconds)
    return False


def _stopped(stop: threading.Event) -> bool:
    stop.set()
    return True


def test_the_breaker_opens_pauses_half_opens_and_closes_when_the_sink_is_back() -> None:
    pauses: list[float] = []
    breaker = SinkBreaker(
        CircuitBreakerPolicy(failure_threshold=2, reset_timeout_seconds=30),
        threading.Event(),
        sleep=lambda seconds: _noted(pauses, seconds),
    )
    states: list[str] = []
    transition = breaker._transition

    def noted(state: str) -> None:
        states.append(state)
        transition(state)

    breaker._transition = noted  # type: ignore[method-assign]
    calls, attempt = _flaky(3)

    assert breaker.call(attempt).records_loaded == 5  # type: ignore[arg-type]

    # fail, fail -> open, pause, half-open, fail -> open, pause, half-open, succeed -> closed
    assert len(calls) == 4
    assert pauses == [30, 30]
    assert states == ["open", "half-open", "open", "half-open", "closed"]
    assert breaker.state == "closed" and breaker.failures == 0


def test_the_progress_reports_the_breaker_open_while_the_batch_pauses() -> None:
    progress = StreamProgress(active=True)
    seen_in_pause: list[tuple[str, bool]] = []

    def pause(seconds: float) -> bool:
        seen_in_pause.append((progress.breaker, progress.ready(300)[0]))
        return False

    breaker = SinkBreaker(
        CircuitBreakerPolicy(failure_threshold=1, reset_timeout_seconds=30),
        threading.Event(),
        sleep=pause,
        on_change=lambda state: setattr(progress, "breaker", state),
    )
    _, attempt = _flaky(2)

    breaker.call(attempt)  # type: ignore[arg-type]

    assert seen_in_pause == [("open", False), ("open", False)]
    assert progress.breaker == "closed"


def test_a_stop_while_the_breaker_is_open_ends_the_batch_uncommitted() -> None:
    stop = threading.Event()
    breaker = SinkBreaker(
        CircuitBreakerPolicy(failure_threshold=1, reset_timeout_seconds=30),
        stop,
        sleep=lambda seconds: _stopped(stop),
    )
    _, attempt = _flaky(10)
    with pytest.raises(StreamStopped):
        breaker.call(attempt)  # type: ignore[arg-type]


def test_a_disabled_breaker_lets_the_failure_through() -> None:
    breaker = SinkBreaker(CircuitBreakerPolicy(enabled=False, failure_threshold=1), threading.Event())
    _, attempt = _flaky(10)
    with pytest.raises(SinkRejected):
        breaker.call(attempt)  # type: ignore[arg-type]


def test_ready_while_batches_complete_and_not_when_stalled_or_the_breaker_is_open() -> None:
    progress = StreamProgress(started=0.0, active=True)
    assert progress.ready(60, now=30)[0]
    assert progress.ready(60, now=61) == (False, "no micro-batch completed for 61 s")
    progress.last_batch_at = 100.0
    assert progress.ready(60, now=130)[0]
    progress.breaker = "open"
    assert progress.ready(60, now=130) == (
        False,
        "the sink breaker is open: the stream pauses until the sink answers",
    )
    progress.active = False
    assert not progress.ready(60, now=130)[0]


def _trigger(rows: int, observed: int | None = None, late: int = 0, watermark: str | None = None) -> Any:
    """A StreamingQueryProgress as PySpark gives it, with only what the job reads."""
    return SimpleNamespace(
        inputRowsPerSecond=float(rows),
        processedRowsPerSecond=float(rows),
        durationMs={"triggerExecution": 1200},
        eventTime={"watermark": watermark} if watermark else {},
        stateOperators=[SimpleNamespace(numRowsDroppedByWatermark=late)],
        observedMetrics={} if observed is None else {EXTRACTED_METRIC: {"rows": observed}},
    )


def test_an_idle_stream_is_ready_and_a_hung_batch_is_stalled() -> None:
    progress = StreamProgress(started=0.0, active=True)
    # No data for 10 minutes, yet Spark's idle triggers keep reporting: not stalled.
    for second in range(0, 600, 10):
        progress.note_trigger(_trigger(0), events_counted_by_stream=False)
        progress.last_trigger_at = float(second)
    assert progress.stalled(60, now=600.0) is None
    report = progress.report(60, now=600.0)
    assert report["ready"] and not report["stalled"] and report["lastBatchAgeSeconds"] is None
    # A batch that hangs: no trigger completes.
    report = progress.report(60, now=700.0)
    assert report["stalled"] and not report["ready"]
    assert report["message"] == "no micro-batch completed for 110 s"


def test_behind_an_aggregation_events_are_counted_from_the_stream_and_late_ones_apart() -> None:
    progress = StreamProgress(started=0.0, active=True)
    progress.note_trigger(_trigger(40, observed=40, watermark="2026-12-06T05:00:00.000Z"), True)
    progress.note_trigger(_trigger(40, observed=40, late=3), True)
    # The batch itself saw 12 updated aggregate rows, loaded 12.
    progress.add(RunMetrics(records_extracted=12, records_transformed=12, records_loaded=12), True)
    metrics = progress.metrics(started=0.0)
    assert (metrics.records_extracted, metrics.records_transformed, metrics.records_loaded) == (80, 12, 12)
    assert metrics.records_late == 3
    assert progress.summary()["watermark"] == "2026-12-06T05:00:00.000Z"  # kept across idle triggers
    # Without an aggregation the batch's own counts are the events.
    plain = StreamProgress(started=0.0, active=True)
    plain.note_trigger(_trigger(40, observed=None), False)
    plain.add(RunMetrics(records_extracted=40, records_transformed=40, records_loaded=40), False)
    assert plain.metrics(started=0.0).records_extracted == 40


def test_a_query_is_restarted_on_the_known_spark_bugs_only() -> None:
    from etl_job.streaming import spark_bug_a_restart_passes

    class Failure(Exception):
        def __init__(self, message: str, trace: str, cause: Exception | None = None) -> None:
            super().__init__(message)
            self._stackTrace = trace
            self._cause = cause

    replayed = Failure(
        'java.lang.NullPointerException: Cannot invoke "scala.collection.IterableOps.map"',
        "at org.apache.spark.sql.kafka010.KafkaMicroBatchStream$.metrics(KafkaMicroBatchStream.scala:520)",
    )
    assert spark_bug_a_restart_passes(replayed)
    # As query.exception() gives it: the query's own trace, and Spark's failure as its cause.
    assert spark_bug_a_restart_passes(Failure("[STREAM_FAILED] Query terminated", "at runStream", replayed))
    assert not spark_bug_a_restart_passes(Failure("SinkRejected: database down", "at foreachBatch"))
    assert not spark_bug_a_restart_passes(ValueError("no trace here"))


class _Query:
    """A streaming query whose trigger stays active for `active` looks at its status."""

    def __init__(self, active: int) -> None:
        self.active = active
        self.isActive = True
        self.stopped_while_active = False

    @property
    def status(self) -> dict[str, object]:
        self.active -= 1
        return {"isTriggerActive": self.active >= 0}

    def stop(self) -> None:
        self.stopped_while_active = self.active >= 0
        self.isActive = False


def test_a_stop_waits_for_the_commit_of_a_batch_already_written() -> None:
    from etl_job.streaming import _stop_between_batches

    query = _Query(active=3)
    lock = threading.Lock()
    _stop_between_batches(query, lock, poll_seconds=0)
    assert not query.isActive and not query.stopped_while_active and not lock.locked()


class _Frame:
    """What StaticSides asks of a DataFrame: persist, count, unpersist."""

    def __init__(self, version: int) -> None:
        self.version, self.persisted = version, False

    def persist(self) -> _Frame:
        self.persisted = True
        return self

    def count(self) -> int:
        return 3

    def unpersist(self) -> None:
        self.persisted = False


def test_a_join_side_is_read_again_once_its_refresh_interval_has_passed() -> None:
    from etl_job.contract import S3Source
    from etl_job.streaming import StaticSides, _block_key, read_due

    assert read_due(None, 60.0, 0.0) and read_due(10.0, None, 11.0)
    assert not read_due(10.0, 60.0, 69.0) and read_due(10.0, 60.0, 70.0)

    reads: list[_Frame] = []
    now = [0.0]
    dimension = S3Source.model_validate({"sourceType": "S3", "path": "dims/", "format": "csv"})
    facts = S3Source.model_validate({"sourceType": "S3", "path": "other/", "format": "csv"})

    def read(block: Any) -> _Frame:
        reads.append(_Frame(len(reads)))
        return reads[-1]

    sides = StaticSides(read, {_block_key(dimension): 60.0}, clock=lambda: now[0])
    first = sides(dimension)
    now[0] = 59.0
    assert sides(dimension) is first and len(reads) == 1  # kept between micro-batches
    now[0] = 60.0
    second = sides(dimension)
    assert second is not first and second.persisted and not first.persisted  # the old copy let go
    # A join without refreshInterval reads its side for every micro-batch, keeping nothing.
    assert sides(facts) is not sides(facts) and not reads[-1].persisted
