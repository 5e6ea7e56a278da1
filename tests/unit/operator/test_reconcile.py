"""The run state machine of one pipeline, driven with fixed times, seeded randomness and pod JSON."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from etl_job.contract import CircuitState, CircuitStatus, ETLPipelineSpec, ETLPipelineStatus, Phase, RunRecord
from etl_operator.naming import trace_id
from etl_operator.observe import format_time, observe_pod
from etl_operator.reconcile import (
    Action,
    Decision,
    DeletePod,
    EmitEvent,
    LaunchRun,
    PipelineView,
    SpecProblem,
    reconcile,
)
from tests.unit.operator.test_observe import (
    NOW,
    at,
    failed_pod,
    make_spec,
    pod,
    running_pod,
    succeeded_pod,
    waiting,
)

Pod = dict[str, Any]
PIPELINE_UID = "5d6f0c1e-7d8a-4e59-9b1c-2f3a4b5c6d7e"


def decide(
    spec: ETLPipelineSpec | None,
    status: ETLPipelineStatus | None = None,
    pods: Sequence[Pod] = (),
    now: datetime = NOW,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    problems: Sequence[SpecProblem] = (),
    created_at: datetime | None = None,
    seed: int = 7,
    secrets_version: str | None = None,
    launch_allowed: bool = True,
    stream_reports: Mapping[int, dict[str, Any]] | None = None,
) -> Decision:
    """One reconcile; `stream_reports` are streaming drivers' answers to /progress, by run."""
    view = PipelineView(
        name="orders",
        namespace="analytics",
        generation=generation,
        spec=spec,
        status=status or ETLPipelineStatus(),
        annotations=annotations or {},
        created_at=created_at,
        secrets_version=secrets_version,
        launch_allowed=launch_allowed,
        uid=PIPELINE_UID,
    )
    observed = [observe_pod(p) for p in pods]
    reports = stream_reports or {}
    observed = [replace(run, stream_report=reports.get(run.run)) for run in observed]
    return reconcile(view, observed, problems, now, random.Random(seed))


def launches(decision: Decision) -> list[LaunchRun]:
    return [a for a in decision.actions if isinstance(a, LaunchRun)]


def deletes(decision: Decision) -> list[DeletePod]:
    return [a for a in decision.actions if isinstance(a, DeletePod)]


def events(decision: Decision) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, EmitEvent)]


def condition(status: ETLPipelineStatus, type_: str) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == type_)
    return found.status, found.reason


def only(actions: list[Action], kind: type[Any]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


BATCH = make_spec(restartPolicy={"type": "OnFailure", "maxRetries": 2, "initialBackoffSeconds": 10})


def launched(spec: ETLPipelineSpec = BATCH, **kwargs: Any) -> Decision:
    """The first reconcile of a new pipeline: run 1 launched."""
    return decide(spec, **kwargs)


# --- batch, once per generation -------------------------------------------------------------


def test_first_reconcile_launches_run_1() -> None:
    decision = launched()
    assert launches(decision) == [LaunchRun(run=1, generation=1)]
    status = decision.status
    assert status.run_count == 1
    assert status.phase == Phase.pending
    assert status.observed_generation == 1
    assert status.current_run == RunRecord(
        run=1,
        pod="orders-run-1-driver",
        generation=1,
        start_time="2026-11-25T22:00:00Z",
        phase="Pending",
        trace_id=trace_id(PIPELINE_UID, 1),
    )
    assert condition(status, "Ready") == ("False", "RunInProgress")
    assert condition(status, "Running") == ("True", "RunActive")
    assert condition(status, "Degraded") == ("False", "AsExpected")
    assert events(decision) == ["RunLaunched"]
    assert decision.requeue_after == 30.0  # look for the pod again after the grace


def test_no_second_launch_while_running_and_started_is_announced_once() -> None:
    first = launched()
    later = NOW + timedelta(seconds=20)
    running = decide(BATCH, first.status, [running_pod(1)], later)
    assert launches(running) == []
    assert running.status.phase == Phase.running
    assert events(running) == ["RunStarted"]
    again = decide(BATCH, running.status, [running_pod(1)], later + timedelta(seconds=5))
    assert again.actions == []
    assert again.status == running.status
    assert again.requeue_after is None


def test_success_records_metrics_and_makes_the_pipeline_ready() -> None:
    first = launched()
    done = decide(BATCH, first.status, [succeeded_pod(1)], NOW + timedelta(minutes=2))
    status = done.status
    assert status.phase == Phase.succeeded
    assert status.current_run is None
    assert status.last_run is not None
    assert status.last_run.phase == "Succeeded"
    assert status.last_run.exit_code == 0
    assert status.last_run.end_time == at(-1)
    assert status.last_run.metrics is not None
    assert (status.last_run.metrics.records_extracted, status.last_run.metrics.records_loaded) == (10, 9)
    assert status.runs == [status.last_run]
    assert condition(status, "Ready") == ("True", "RunSucceeded")
    assert condition(status, "Running") == ("False", "NoActiveRun")
    assert events(done) == ["RunSucceeded"]
    assert launches(done) == []
    quiet = decide(BATCH, status, [succeeded_pod(1)], NOW + timedelta(minutes=3))
    assert quiet.actions == []


def test_ready_keeps_its_transition_time_while_it_holds() -> None:
    done = decide(BATCH, launched().status, [succeeded_pod(1)], NOW + timedelta(minutes=2))
    again = decide(BATCH, done.status, [succeeded_pod(1)], NOW + timedelta(minutes=9))
    ready = next(c for c in again.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == "2026-11-25T22:02:00Z"


def test_high_water_mark_is_copied_from_a_successful_run() -> None:
    message = '{"recordsLoaded": 3, "highWaterMark": "2026-11-25T21:00:00"}'
    done = decide(BATCH, launched().status, [succeeded_pod(1, message=message)], NOW + timedelta(minutes=1))
    assert done.status.high_water_mark == "2026-11-25T21:00:00"


def test_configuration_error_is_not_retried() -> None:
    failed = decide(BATCH, launched().status, [failed_pod(1, exit_code=2)], NOW + timedelta(minutes=1))
    status = failed.status
    assert status.phase == Phase.failed
    assert status.backoff_until is None
    assert status.last_run is not None
    assert status.last_run.reason == "ConfigurationError"
    assert condition(status, "Degraded") == ("True", "ConfigurationError")
    assert condition(status, "Ready") == ("False", "Failed")
    message = only(failed.actions, EmitEvent)[0].message
    assert "not retried: ConfigurationError is not retried" in message
    assert launches(decide(BATCH, status, [failed_pod(1, exit_code=2)], NOW + timedelta(hours=1))) == []


def run_until_settled(spec: ETLPipelineSpec, exit_code: int, rounds: int) -> list[Decision]:
    """Launch, fail every run with `exit_code`, wait out each backoff; the decisions in order."""
    decisions = [decide(spec)]
    now = NOW
    pods: list[Pod] = []
    for _ in range(rounds):
        status = decisions[-1].status
        for launch in launches(decisions[-1]):
            pods.append(failed_pod(launch.run, exit_code=exit_code))
        now = now + timedelta(seconds=1)
        decisions.append(decide(spec, status, pods, now))
        until = decisions[-1].status.backoff_until
        if until is None:
            break
        now = datetime.fromisoformat(until)
        decisions.append(decide(spec, decisions[-1].status, pods, now))
    return decisions


def test_infrastructure_error_is_retried_with_growing_delays_then_fails() -> None:
    decisions = run_until_settled(BATCH, exit_code=4, rounds=5)
    backoffs = [d for d in decisions if d.status.phase == Phase.backoff]
    assert [d.status.retries for d in backoffs] == [1, 2]
    delays = [d.requeue_after for d in backoffs]
    assert delays[0] is not None and 5 <= delays[0] <= 10
    assert delays[1] is not None and 10 <= delays[1] <= 20
    assert [launch.run for d in decisions for launch in launches(d)] == [1, 2, 3]
    final = decisions[-1].status
    assert final.phase == Phase.failed
    assert final.retries == 2
    assert final.last_run is not None
    assert final.last_run.reason == "InfrastructureError"
    assert "maxRetries (2) reached" in only(decisions[-1].actions, EmitEvent)[-1].message
    assert condition(backoffs[0].status, "Degraded") == ("True", "InfrastructureError")
    assert [r.run for r in final.runs] == [3, 2, 1]


def test_backoff_holds_launches_until_it_ends() -> None:
    failed = decide(BATCH, launched().status, [failed_pod(1, exit_code=3)], NOW + timedelta(seconds=1))
    assert failed.status.phase == Phase.backoff
    until = datetime.fromisoformat(failed.status.backoff_until or "")
    early = decide(BATCH, failed.status, [failed_pod(1, exit_code=3)], until - timedelta(seconds=1))
    assert launches(early) == []
    assert early.requeue_after == 1.0
    retry = decide(BATCH, failed.status, [failed_pod(1, exit_code=3)], until)
    assert launches(retry) == [LaunchRun(run=2, generation=1)]
    assert retry.status.retries == 1
    assert retry.status.backoff_until is None


def test_never_policy_stays_failed() -> None:
    spec = make_spec(restartPolicy={"type": "Never"})
    failed = decide(spec, launched(spec).status, [failed_pod(1, exit_code=4)], NOW + timedelta(seconds=1))
    assert failed.status.phase == Phase.failed
    assert "restartPolicy is Never" in only(failed.actions, EmitEvent)[-1].message


def test_new_generation_launches_a_new_run_and_resets_retries() -> None:
    decisions = run_until_settled(BATCH, exit_code=4, rounds=5)
    final = decisions[-1].status
    edited = decide(BATCH, final, [], NOW + timedelta(hours=1), generation=2)
    assert launches(edited) == [LaunchRun(run=4, generation=2)]
    assert edited.status.retries == 0
    assert edited.status.observed_generation == 2
    old_success = decide(BATCH, launched().status, [succeeded_pod(1)], NOW + timedelta(minutes=1))
    assert condition(old_success.status, "Ready") == ("True", "RunSucceeded")
    waiting_for_gen2 = decide(
        BATCH, old_success.status, [succeeded_pod(1)], NOW + timedelta(minutes=2), generation=2
    )
    assert condition(waiting_for_gen2.status, "Ready") == ("False", "RunInProgress")


def test_a_new_generation_waits_for_the_running_run_under_forbid() -> None:
    running = decide(BATCH, launched().status, [running_pod(1)], NOW + timedelta(seconds=5))
    edited = decide(BATCH, running.status, [running_pod(1)], NOW + timedelta(seconds=6), generation=2)
    assert launches(edited) == []
    assert edited.status.observed_generation == 2
    done = decide(BATCH, edited.status, [succeeded_pod(1)], NOW + timedelta(seconds=9), generation=2)
    assert launches(done) == [LaunchRun(run=2, generation=2)]


def test_rerun_annotation_runs_again_once_per_value() -> None:
    done = decide(BATCH, launched().status, [succeeded_pod(1)], NOW + timedelta(minutes=1))
    asked = {"etl.sparkops.io/rerun": "2026-11-25-a"}
    rerun = decide(BATCH, done.status, [succeeded_pod(1)], NOW + timedelta(minutes=2), annotations=asked)
    assert launches(rerun) == [LaunchRun(run=2, generation=1)]
    assert rerun.status.rerun_token == "2026-11-25-a"
    pods = [succeeded_pod(1), succeeded_pod(2)]
    after = decide(BATCH, rerun.status, pods, NOW + timedelta(minutes=3), annotations=asked)
    assert launches(after) == []
    again = decide(
        BATCH, after.status, pods, NOW + timedelta(minutes=4), annotations={"etl.sparkops.io/rerun": "b"}
    )
    assert launches(again) == [LaunchRun(run=3, generation=1)]


# --- missing pods ---------------------------------------------------------------------------


def test_a_missing_pod_is_waited_for_then_failed_as_pod_missing() -> None:
    first = launched()
    soon = decide(BATCH, first.status, [], NOW + timedelta(seconds=29))
    assert soon.actions == []
    assert soon.requeue_after == 1.0
    lost = decide(BATCH, first.status, [], NOW + timedelta(seconds=30))
    assert lost.status.last_run is not None
    assert lost.status.last_run.reason == "PodMissing"
    assert lost.status.phase == Phase.backoff


# --- stuck and timed-out pods ---------------------------------------------------------------


def test_stuck_image_pull_fails_the_run_and_deletes_the_pod() -> None:
    stuck = pod(1, created=-61, state=waiting("ImagePullBackOff", 'Back-off pulling image "etl:nope"'))
    decision = decide(BATCH, launched().status, [stuck], NOW)
    assert deletes(decision) == [DeletePod("orders-run-1-driver", "ImagePullBackOff")]
    assert decision.status.last_run is not None
    assert decision.status.last_run.reason == "ImagePullBackOff"
    assert "etl:nope" in (decision.status.last_run.message or "")


def test_create_container_config_error_is_not_retried() -> None:
    stuck = pod(1, created=-61, state=waiting("CreateContainerConfigError", 'secret "pg" not found'))
    decision = decide(BATCH, launched().status, [stuck], NOW)
    assert decision.status.phase == Phase.failed
    assert decision.status.backoff_until is None


def test_run_deadline_stops_the_run() -> None:
    spec = make_spec(activeDeadlineSeconds=60)
    long_running = pod(1, phase="Running", state={"running": {"startedAt": at(-61)}})
    decision = decide(spec, launched(spec).status, [long_running], NOW)
    assert deletes(decision) == [DeletePod("orders-run-1-driver", "DeadlineExceeded")]
    assert decision.status.phase == Phase.failed


def test_a_pending_pod_is_rechecked_at_its_start_timeout() -> None:
    decision = decide(BATCH, launched().status, [pod(1, created=-10)], NOW)
    assert decision.requeue_after == 590.0


# --- circuit breaker ------------------------------------------------------------------------

BREAKER = make_spec(
    restartPolicy={"type": "OnFailure", "maxRetries": 10, "initialBackoffSeconds": 1, "maxBackoffSeconds": 1},
    errorHandling={"circuitBreaker": {"failureThreshold": 2, "resetTimeoutSeconds": 120}},
)


def open_circuit() -> tuple[Decision, list[Pod]]:
    pods = [failed_pod(1, exit_code=4)]
    first = decide(BREAKER, launched(BREAKER).status, pods, NOW + timedelta(seconds=1))
    assert launches(decide(BREAKER, first.status, pods, NOW + timedelta(seconds=1))) == []
    retry = decide(BREAKER, first.status, pods, NOW + timedelta(seconds=2))
    assert launches(retry) == [LaunchRun(run=2, generation=1)]
    pods.append(failed_pod(2, exit_code=4))
    return decide(BREAKER, retry.status, pods, NOW + timedelta(seconds=3)), pods


def test_circuit_opens_after_the_threshold_and_blocks_launches() -> None:
    opened, pods = open_circuit()
    status = opened.status
    assert status.circuit is not None
    assert (status.circuit.state, status.circuit.consecutive_failures) == (CircuitState.open, 2)
    assert status.circuit.opened_at == "2026-11-25T22:00:03Z"
    assert status.phase == Phase.circuit_open
    assert condition(status, "Degraded") == ("True", "CircuitOpen")
    assert "CircuitOpened" in events(opened)
    blocked = decide(BREAKER, status, pods, NOW + timedelta(seconds=60))
    assert launches(blocked) == []
    assert blocked.requeue_after == 63.0
    assert blocked.status.phase == Phase.circuit_open
    assert "CircuitOpened" not in events(blocked)


def test_half_open_trial_success_closes_the_circuit() -> None:
    opened, pods = open_circuit()
    trial = decide(BREAKER, opened.status, pods, NOW + timedelta(seconds=123))
    assert launches(trial) == [LaunchRun(run=3, generation=1)]
    assert trial.status.circuit is not None
    assert trial.status.circuit.state == CircuitState.half_open
    assert events(trial) == ["CircuitHalfOpen", "RunLaunched"]
    pods.append(succeeded_pod(3))
    closed = decide(BREAKER, trial.status, pods, NOW + timedelta(seconds=200))
    assert closed.status.circuit == CircuitStatus()
    assert closed.status.phase == Phase.succeeded
    assert events(closed) == ["CircuitClosed", "RunSucceeded"]


def test_half_open_trial_failure_reopens_the_circuit() -> None:
    opened, pods = open_circuit()
    trial = decide(BREAKER, opened.status, pods, NOW + timedelta(seconds=123))
    pods.append(failed_pod(3, exit_code=4))
    reopened = decide(BREAKER, trial.status, pods, NOW + timedelta(seconds=200))
    assert reopened.status.circuit is not None
    assert reopened.status.circuit.state == CircuitState.open
    assert reopened.status.circuit.opened_at == "2026-11-25T22:03:20Z"
    assert reopened.status.phase == Phase.circuit_open
    assert launches(reopened) == []


def test_a_spec_change_gets_one_trial_while_the_circuit_is_open() -> None:
    opened, pods = open_circuit()
    edited = decide(BREAKER, opened.status, pods, NOW + timedelta(seconds=10), generation=2)
    assert launches(edited) == [LaunchRun(run=3, generation=2)]
    assert edited.status.circuit is not None
    assert edited.status.circuit.state == CircuitState.half_open


# --- schedules ------------------------------------------------------------------------------

HOURLY = make_spec(schedule="0 * * * *")


def test_schedule_waits_for_its_first_slot_and_sets_next_run_at() -> None:
    decision = decide(HOURLY, now=NOW - timedelta(minutes=5), created_at=NOW - timedelta(minutes=10))
    assert launches(decision) == []
    assert decision.status.next_run_at == "2026-11-25T22:00:00Z"
    assert decision.requeue_after == 300.0


def test_schedule_launches_once_for_the_latest_missed_slot() -> None:
    status = ETLPipelineStatus(last_schedule_time="2026-11-25T17:00:00Z")
    decision = decide(HOURLY, status, now=NOW + timedelta(seconds=5))
    assert launches(decision) == [LaunchRun(run=1, generation=1)]
    assert decision.status.last_schedule_time == "2026-11-25T22:00:00Z"
    again = decide(HOURLY, decision.status, [running_pod(1)], NOW + timedelta(seconds=20))
    assert launches(again) == []


def test_schedule_without_history_uses_next_run_at() -> None:
    first = decide(HOURLY, now=NOW - timedelta(minutes=5))
    assert first.status.next_run_at == "2026-11-25T22:00:00Z"
    due = decide(HOURLY, first.status, now=NOW)
    assert launches(due) == [LaunchRun(run=1, generation=1)]


def scheduled_and_running(spec: ETLPipelineSpec) -> Decision:
    status = ETLPipelineStatus(last_schedule_time="2026-11-25T21:00:00Z")
    started = decide(spec, status, now=NOW)
    return decide(spec, started.status, [running_pod(1)], NOW + timedelta(hours=1))


def test_forbid_skips_a_slot_while_a_run_runs() -> None:
    decision = scheduled_and_running(HOURLY)
    assert launches(decision) == []
    assert events(decision) == ["RunStarted", "RunSkipped"]
    assert decision.status.last_schedule_time == "2026-11-25T23:00:00Z"


def test_replace_stops_the_running_run_and_launches() -> None:
    decision = scheduled_and_running(make_spec(schedule="0 * * * *", concurrencyPolicy="Replace"))
    assert deletes(decision) == [DeletePod("orders-run-1-driver", "Replaced")]
    assert launches(decision) == [LaunchRun(run=2, generation=1)]
    stopping = next(r for r in decision.status.runs if r.run == 1)
    assert stopping.phase == "Stopping"
    gone = decide(
        make_spec(schedule="0 * * * *", concurrencyPolicy="Replace"), decision.status, [running_pod(2)], NOW
    )
    stopped = next(r for r in gone.status.runs if r.run == 1)
    assert stopped.phase == "Stopped"
    assert "RunStopped" in events(gone)


def test_allow_runs_both() -> None:
    decision = scheduled_and_running(make_spec(schedule="0 * * * *", concurrencyPolicy="Allow"))
    assert launches(decision) == [LaunchRun(run=2, generation=1)]
    assert deletes(decision) == []
    assert [r.phase for r in decision.status.runs] == ["Pending", "Running"]


def test_invalid_cron_is_an_invalid_spec() -> None:
    decision = decide(make_spec(schedule="every hour"))
    assert launches(decision) == []
    assert condition(decision.status, "Ready") == ("False", "InvalidSpec")


# --- suspend --------------------------------------------------------------------------------


def test_suspend_pauses_launches_and_lets_a_batch_run_finish() -> None:
    suspended_spec = make_spec(suspend=True)
    decision = decide(suspended_spec)
    assert launches(decision) == []
    assert decision.status.phase == Phase.suspended
    assert events(decision) == ["Suspended"]
    running = decide(BATCH, launched().status, [running_pod(1)], NOW)
    paused = decide(suspended_spec, running.status, [running_pod(1)], NOW)
    assert deletes(paused) == []
    assert paused.status.phase == Phase.suspended
    resumed = decide(BATCH, decision.status)
    assert "Resumed" in events(resumed)
    assert launches(resumed) == [LaunchRun(run=1, generation=1)]


# --- streaming ------------------------------------------------------------------------------

STREAMING = make_spec(
    mode="streaming",
    streaming={"checkpointLocation": "s3a://state/p/"},
    extract={"sourceType": "Kafka", "bootstrapServers": "k:9092", "topic": "events"},
)


def test_streaming_keeps_one_driver_and_is_ready_while_it_runs() -> None:
    first = decide(STREAMING)
    assert launches(first) == [LaunchRun(run=1, generation=1)]
    running = decide(STREAMING, first.status, [running_pod(1)], NOW + timedelta(seconds=5))
    assert launches(running) == []
    assert condition(running.status, "Ready") == ("True", "DriverRunning")


def stream_report(batch: int, **changes: Any) -> dict[str, Any]:
    """A driver's answer to GET /progress (etl_job.streaming.StreamProgress.report)."""
    return {
        "ready": True, "stalled": False, "message": "ok", "lastBatchAgeSeconds": 2,
        "lastBatchId": batch, "inputRowsPerSecond": 150.0, "processedRowsPerSecond": 400.5,
        "batchDurationMs": 900, "watermark": "2026-11-25T21:50:00.000Z", "batches": batch + 1,
        "recordsExtracted": 40 * (batch + 1), "recordsLoaded": 12 * (batch + 1), "recordsFailed": 1,
        "recordsLate": 3, "breaker": "closed", **changes,
    }  # fmt: skip


def test_a_streaming_drivers_progress_is_shown_and_read_again_every_few_seconds() -> None:
    started = decide(STREAMING, decide(STREAMING).status, [running_pod(1)], NOW)
    shown = decide(STREAMING, started.status, [running_pod(1)], NOW, stream_reports={1: stream_report(4)})
    stream = shown.status.streaming
    assert stream is not None
    assert (stream.run, stream.last_batch_id, stream.batches) == (1, 4, 5)
    assert (stream.records_extracted, stream.records_loaded, stream.records_failed) == (200, 60, 1)
    assert (stream.records_late, stream.sink_breaker) == (3, "closed")
    assert stream.watermark == "2026-11-25T21:50:00.000Z"
    assert stream.input_rows_per_second == 150.0 and stream.batch_duration_ms == 900
    assert stream.last_batch_time == format_time(NOW - timedelta(seconds=2))
    assert stream.observed_at == format_time(NOW)
    assert shown.requeue_after is not None and shown.requeue_after <= 5
    assert condition(shown.status, "Ready") == ("True", "DriverRunning")
    # The same figures later: the status is left as it was, so an idle stream writes nothing.
    idle = decide(
        STREAMING, shown.status, [running_pod(1)], NOW + timedelta(seconds=30),
        stream_reports={1: stream_report(4, lastBatchAgeSeconds=32)},
    )  # fmt: skip
    assert idle.status.streaming == stream
    # No answer (the driver is busy or restarting): the last figures stay.
    silent = decide(STREAMING, shown.status, [running_pod(1)], NOW + timedelta(seconds=35))
    assert silent.status.streaming == stream


def test_a_stalled_stream_is_stalled_and_not_ready_until_batches_complete_again() -> None:
    started = decide(STREAMING, decide(STREAMING).status, [running_pod(1)], NOW)
    message = "the sink breaker is open: the stream pauses until the sink answers"
    stuck = decide(
        STREAMING, started.status, [running_pod(1)], NOW,
        stream_reports={1: stream_report(4, ready=False, stalled=True, breaker="open", message=message)},
    )  # fmt: skip
    assert condition(stuck.status, "Stalled") == ("True", "StreamStalled")
    assert condition(stuck.status, "Ready") == ("False", "StreamStalled")
    assert stuck.status.streaming is not None and stuck.status.streaming.sink_breaker == "open"
    assert launches(stuck) == [] and deletes(stuck) == []  # the job's breaker waits; nothing restarts
    resumed = decide(
        STREAMING, stuck.status, [running_pod(1)], NOW + timedelta(seconds=60),
        stream_reports={1: stream_report(5)},
    )  # fmt: skip
    assert condition(resumed.status, "Stalled") == ("False", "AsExpected")
    assert condition(resumed.status, "Ready") == ("True", "DriverRunning")


def test_a_progress_report_that_does_not_parse_keeps_the_last_figures() -> None:
    started = decide(STREAMING, decide(STREAMING).status, [running_pod(1)], NOW)
    shown = decide(STREAMING, started.status, [running_pod(1)], NOW, stream_reports={1: stream_report(1)})
    garbled = decide(
        STREAMING, shown.status, [running_pod(1)], NOW, stream_reports={1: {"lastBatchId": "many"}}
    )
    assert garbled.status.streaming == shown.status.streaming


def test_streaming_spec_change_replaces_the_driver_gracefully() -> None:
    running = decide(STREAMING, decide(STREAMING).status, [running_pod(1)], NOW)
    changed = decide(STREAMING, running.status, [running_pod(1)], NOW + timedelta(seconds=5), generation=2)
    assert deletes(changed) == [DeletePod("orders-run-1-driver", "SpecChanged")]
    assert launches(changed) == []  # one driver at a time: the old one stops first
    terminating = decide(STREAMING, changed.status, [running_pod(1, deleting=True)], NOW, generation=2)
    assert terminating.actions == []
    gone = decide(STREAMING, changed.status, [], NOW + timedelta(seconds=20), generation=2)
    assert launches(gone) == [LaunchRun(run=2, generation=2)]


def test_streaming_rerun_restarts_the_driver() -> None:
    running = decide(STREAMING, decide(STREAMING).status, [running_pod(1)], NOW)
    asked = {"etl.sparkops.io/rerun": "now"}
    restart = decide(STREAMING, running.status, [running_pod(1)], NOW, annotations=asked)
    assert deletes(restart) == [DeletePod("orders-run-1-driver", "RerunRequested")]
    assert restart.status.rerun_token == "now"
    ended = pod(1, phase="Succeeded", state={"terminated": {"exitCode": 0, "finishedAt": at(3)}})
    relaunch = decide(STREAMING, restart.status, [ended], NOW + timedelta(seconds=5), annotations=asked)
    assert launches(relaunch) == [LaunchRun(run=2, generation=1)]


def test_streaming_always_restarts_a_failed_driver_past_max_retries() -> None:
    spec = STREAMING.model_copy(
        update={
            "restart_policy": STREAMING.restart_policy.model_copy(update={"type": "Always", "max_retries": 0})
        }
    )
    failed = decide(spec, decide(spec).status, [failed_pod(1, exit_code=4)], NOW + timedelta(seconds=1))
    assert failed.status.phase == Phase.backoff
    restart = decide(spec, failed.status, [failed_pod(1, exit_code=4)], NOW + timedelta(minutes=10))
    assert launches(restart) == [LaunchRun(run=2, generation=1)]


def test_streaming_driver_that_ends_cleanly_is_started_again() -> None:
    ended = decide(STREAMING, decide(STREAMING).status, [succeeded_pod(1)], NOW + timedelta(seconds=1))
    assert launches(ended) == [LaunchRun(run=2, generation=1)]


STREAMING_WITH_SECRET = make_spec(
    mode="streaming",
    streaming={"checkpointLocation": "s3a://state/p/"},
    extract={
        "sourceType": "Kafka",
        "bootstrapServers": "k:9092",
        "topic": "events",
        "security": {
            "protocol": "SASL_SSL",
            "usernameRef": {"name": "kafka-user", "key": "user"},
            "passwordRef": {"name": "kafka-user", "key": "password"},
        },
    },
)


def test_streaming_driver_is_replaced_when_a_referenced_secret_changes() -> None:
    spec = STREAMING_WITH_SECRET
    first = decide(spec, secrets_version="v1")
    assert first.status.runs[0].secrets_version == "v1"
    running = decide(spec, first.status, [running_pod(1)], NOW, secrets_version="v1")
    assert deletes(running) == []
    assert running.requeue_after == 5.0  # progress is read again in 5 s, and the Secrets with it
    rotated = decide(
        spec, running.status, [running_pod(1)], NOW + timedelta(seconds=60), secrets_version="v2"
    )
    assert deletes(rotated) == [DeletePod("orders-run-1-driver", "SecretChanged")]
    assert launches(rotated) == []
    gone = decide(spec, rotated.status, [], NOW + timedelta(seconds=70), secrets_version="v2")
    assert launches(gone) == [LaunchRun(run=2, generation=1)]
    assert gone.status.runs[0].secrets_version == "v2"


def test_a_driver_launched_without_a_known_secret_version_is_left_running() -> None:
    running = decide(STREAMING_WITH_SECRET, decide(STREAMING_WITH_SECRET).status, [running_pod(1)], NOW)
    later = decide(STREAMING_WITH_SECRET, running.status, [running_pod(1)], NOW, secrets_version="v9")
    assert deletes(later) == []


def test_a_due_run_waits_for_a_free_slot_and_keeps_its_trigger() -> None:
    waiting_run = decide(BATCH, launch_allowed=False)
    assert launches(waiting_run) == []
    assert waiting_run.status.phase == Phase.pending
    assert condition(waiting_run.status, "Ready") == ("False", "Queued")
    assert "RunQueued" in events(waiting_run)
    assert waiting_run.requeue_after == 10.0
    again = decide(BATCH, waiting_run.status, launch_allowed=False, now=NOW + timedelta(seconds=10))
    assert "RunQueued" not in events(again)  # one event per wait, not one per look
    freed = decide(BATCH, again.status, now=NOW + timedelta(seconds=12))
    assert launches(freed) == [LaunchRun(run=1, generation=1)]


def test_a_scheduled_slot_waiting_for_a_free_slot_is_not_skipped() -> None:
    spec = make_spec(schedule="*/5 * * * *")
    created = NOW - timedelta(minutes=7)
    queued = decide(spec, created_at=created, launch_allowed=False)
    assert launches(queued) == [] and queued.status.last_schedule_time is None
    launched = decide(spec, queued.status, created_at=created, now=NOW + timedelta(seconds=10))
    assert len(launches(launched)) == 1


def test_suspending_a_streaming_pipeline_stops_its_driver() -> None:
    running = decide(STREAMING, decide(STREAMING).status, [running_pod(1)], NOW)
    spec = STREAMING.model_copy(update={"suspend": True})
    paused = decide(spec, running.status, [running_pod(1)], NOW)
    assert deletes(paused) == [DeletePod("orders-run-1-driver", "Suspended")]
    assert paused.status.phase == Phase.suspended


# --- history --------------------------------------------------------------------------------


def test_history_limits_delete_old_pods() -> None:
    spec = make_spec(successfulRunsHistoryLimit=1, failedRunsHistoryLimit=2)
    status = ETLPipelineStatus(run_count=6, runs=[RunRecord(run=6, generation=1, phase="Succeeded")])
    pods = [succeeded_pod(1), succeeded_pod(2), failed_pod(3), failed_pod(4), failed_pod(5), succeeded_pod(6)]
    decision = decide(spec, status, pods)
    assert sorted(d.name for d in deletes(decision)) == [
        "orders-run-1-driver",
        "orders-run-2-driver",
        "orders-run-3-driver",
    ]
    assert {d.reason for d in deletes(decision)} == {"HistoryLimit"}


def test_status_runs_history_is_bounded() -> None:
    runs = [RunRecord(run=n, phase="Succeeded", generation=1) for n in range(20, 0, -1)]
    status = ETLPipelineStatus(runs=runs, run_count=20, last_run=runs[0])
    decision = decide(BATCH, status, generation=2)
    assert [r.run for r in decision.status.runs] == list(range(21, 11, -1))


# --- problems -------------------------------------------------------------------------------


def test_missing_secret_is_ready_false_without_a_launch_and_announced_once() -> None:
    problem = SpecProblem(
        "SecretMissing", "spec.load.credentialsRef", "Secret pg-credentials has no key password"
    )
    decision = decide(BATCH, problems=[problem])
    assert launches(decision) == []
    assert condition(decision.status, "Ready") == ("False", "SecretMissing")
    assert condition(decision.status, "Degraded") == ("True", "SecretMissing")
    ready = next(c for c in decision.status.conditions if c.type == "Ready")
    assert ready.message == "Secret pg-credentials has no key password"
    assert decision.status.phase == Phase.failed
    assert events(decision) == ["SecretMissing"]
    again = decide(BATCH, decision.status, problems=[problem], now=NOW + timedelta(minutes=1))
    assert again.actions == []
    fixed = decide(BATCH, again.status, now=NOW + timedelta(minutes=2))
    assert launches(fixed) == [LaunchRun(run=1, generation=1)]


def test_a_spec_that_does_not_parse_is_invalid() -> None:
    problem = SpecProblem("InvalidSpec", "spec.load.port", "spec.load.port: must be <= 65535")
    decision = decide(None, problems=[problem], generation=4)
    assert decision.actions == [EmitEvent("Warning", "InvalidSpec", "spec.load.port: must be <= 65535")]
    assert condition(decision.status, "Ready") == ("False", "InvalidSpec")
    assert decision.status.observed_generation == 4
    bare = decide(None)
    assert condition(bare.status, "Ready") == ("False", "InvalidSpec")


def test_a_problem_does_not_abandon_a_run_in_flight() -> None:
    problem = SpecProblem("InvalidSpec", "spec.extract.path", "spec.extract.path is empty")
    running = decide(BATCH, launched().status, [running_pod(1)], NOW)
    decision = decide(BATCH, running.status, [succeeded_pod(1)], NOW, generation=2, problems=[problem])
    assert decision.status.last_run is not None
    assert decision.status.last_run.phase == "Succeeded"
    assert launches(decision) == []


def test_an_older_run_ending_later_does_not_become_the_last_run() -> None:
    replace = make_spec(schedule="0 * * * *", concurrencyPolicy="Replace")
    decision = scheduled_and_running(replace)
    done = decide(replace, decision.status, [running_pod(1, deleting=True), succeeded_pod(2)], NOW)
    assert done.status.last_run is not None
    assert done.status.last_run.run == 2
    stopped = decide(replace, done.status, [succeeded_pod(2)], NOW)
    assert stopped.status.last_run is not None
    assert stopped.status.last_run.run == 2
    assert [r.phase for r in stopped.status.runs] == ["Succeeded", "Stopped"]


# --- executors -------------------------------------------------------------------------------

DISTRIBUTED = make_spec(spark={"executors": 2, "executor": {"cores": 1, "memory": "1g"}})


def counted(executors_running: int, run: int = 1) -> Any:
    return replace(observe_pod(running_pod(run)), executors_running=executors_running)


def decide_observed(status: ETLPipelineStatus, observed: list[Any], now: datetime) -> Decision:
    view = PipelineView(
        name="orders", namespace="analytics", generation=1, spec=DISTRIBUTED, status=status, annotations={}
    )
    return reconcile(view, observed, (), now, random.Random(7))


def test_a_distributed_run_reports_its_executors_and_looks_again_until_all_run() -> None:
    first = decide(DISTRIBUTED)
    later = NOW + timedelta(seconds=20)
    one = decide_observed(first.status, [counted(1)], later)
    assert one.status.current_run is not None
    executors = one.status.current_run.executors
    assert executors is not None
    assert (executors.requested, executors.running, executors.max_running) == (2, 1, 1)
    assert one.requeue_after == 3.0  # executor pods send no events: look again soon
    both = decide_observed(one.status, [counted(2)], later + timedelta(seconds=3))
    assert both.status.current_run is not None and both.status.current_run.executors is not None
    assert both.status.current_run.executors.running == 2
    assert both.requeue_after is None or both.requeue_after > 3.0
    # Executors stopping as the driver finishes leave the most seen at once on record.
    ending = decide_observed(both.status, [counted(0)], later + timedelta(seconds=30))
    assert ending.status.current_run is not None and ending.status.current_run.executors is not None
    assert ending.status.current_run.executors.max_running == 2


def test_a_local_mode_run_reports_no_executors() -> None:
    first = launched()
    running = decide(BATCH, first.status, [running_pod(1)], NOW + timedelta(seconds=20))
    assert running.status.current_run is not None
    assert running.status.current_run.executors is None


def test_executor_pods_are_counted_per_run_when_running() -> None:
    from etl_operator.sync import with_executor_counts

    def executor(run: int, phase: str, deleting: bool = False) -> dict[str, Any]:
        metadata: dict[str, Any] = {"labels": {"etl.sparkops.io/run": str(run)}}
        if deleting:
            metadata["deletionTimestamp"] = "2026-11-25T22:00:00Z"
        return {"metadata": metadata, "status": {"phase": phase}}

    observed = [observe_pod(running_pod(1)), observe_pod(running_pod(2))]
    pods = [
        executor(1, "Running"),
        executor(1, "Pending"),
        executor(2, "Running"),
        executor(2, "Running", True),
    ]
    assert [run.executors_running for run in with_executor_counts(observed, pods)] == [1, 1]
