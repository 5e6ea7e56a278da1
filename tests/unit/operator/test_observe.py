"""Reading driver pods and classifying how runs end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from etl_job.contract import ETLPipelineSpec, RunMetrics
from etl_operator.naming import driver_pod_name, run_labels
from etl_operator.observe import ObservedRun, Outcome, classify, next_check_at, observe_pod, parse_metrics

NOW = datetime(2026, 11, 25, 22, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """NOW plus `seconds`, as the API writes times."""
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_spec(**overrides: Any) -> ETLPipelineSpec:
    spec: dict[str, Any] = {
        "extract": {"sourceType": "S3", "path": "file:///data/in", "format": "csv"},
        "load": {"sinkType": "S3", "path": "file:///data/out"},
    }
    spec.update(overrides)
    return ETLPipelineSpec.model_validate(spec)


def pod(
    run: int = 1,
    *,
    pipeline: str = "orders",
    generation: int = 1,
    phase: str = "Pending",
    created: float = -10,
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    message: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A driver pod as the API returns it in JSON."""
    metadata: dict[str, Any] = {
        "name": driver_pod_name(pipeline, run),
        "labels": run_labels(pipeline, run, generation),
        "creationTimestamp": at(created),
    }
    if deleting:
        metadata["deletionTimestamp"] = at(0)
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [
            {"name": "sidecar", "state": {"running": {"startedAt": at(-1)}}},
            {"name": "driver", "state": state},
        ]
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def running(started: float = -5) -> dict[str, Any]:
    return {"running": {"startedAt": at(started)}}


def terminated(
    exit_code: int, reason: str = "Error", message: str | None = None, finished: float = -1
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": at(-60),
        "finishedAt": at(finished),
    }
    if message is not None:
        state["message"] = message
    return {"terminated": state}


def metrics_message(**fields: Any) -> str:
    return json.dumps({"recordsExtracted": 10, "recordsLoaded": 9, "recordsFailed": 1, **fields})


def running_pod(run: int = 1, **kwargs: Any) -> dict[str, Any]:
    return pod(run, phase="Running", state=running(), **kwargs)


def succeeded_pod(run: int = 1, message: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return pod(
        run, phase="Succeeded", state=terminated(0, "Completed", message or metrics_message()), **kwargs
    )


def failed_pod(run: int = 1, exit_code: int = 4, reason: str = "Error", **kwargs: Any) -> dict[str, Any]:
    message = metrics_message(errors=[f"failure of run {run}"])
    return pod(run, phase="Failed", state=terminated(exit_code, reason, message), **kwargs)


def unschedulable(message: str = "0/3 nodes are available: 3 Insufficient memory.") -> list[dict[str, Any]]:
    return [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]


SPEC = make_spec(startTimeoutSeconds=300, activeDeadlineSeconds=3600)


def check(p: dict[str, Any], now: datetime = NOW, spec: ETLPipelineSpec = SPEC) -> Outcome | None:
    return classify(observe_pod(p), now, spec)


# --- observe_pod ----------------------------------------------------------------------------


def test_observe_reads_labels_times_and_the_driver_container() -> None:
    observed = observe_pod(succeeded_pod(7, generation=3))
    assert observed.run == 7
    assert observed.generation == 3
    assert observed.pod == "orders-run-7-driver"
    assert observed.phase == "Succeeded"
    assert observed.created_at == NOW - timedelta(seconds=10)
    assert observed.started_at == NOW - timedelta(seconds=60)
    assert observed.finished_at == NOW - timedelta(seconds=1)
    assert observed.exit_code == 0
    assert observed.terminated_reason == "Completed"
    assert observed.driver_terminated
    assert not observed.deleting


def test_observe_a_pending_pod_with_no_container_status() -> None:
    observed = observe_pod(pod(2, conditions=unschedulable(), deleting=True))
    assert observed.phase == "Pending"
    assert observed.started_at is None
    assert observed.exit_code is None
    assert observed.unschedulable
    assert observed.unschedulable_message == "0/3 nodes are available: 3 Insufficient memory."
    assert observed.deleting
    assert not observed.driver_terminated


def test_observe_waiting_reason_pod_reason_and_unknown_phase() -> None:
    observed = observe_pod(
        pod(phase="Weird", state=waiting("ErrImagePull", "not found"), reason="X", message="m")
    )
    assert (observed.phase, observed.waiting_reason, observed.waiting_message) == (
        "Unknown",
        "ErrImagePull",
        "not found",
    )
    assert (observed.pod_reason, observed.pod_message) == ("X", "m")


def test_observe_refuses_a_pod_without_a_run_label() -> None:
    with pytest.raises(ValueError, match=r"no etl\.sparkops\.io/run label"):
        observe_pod({"metadata": {"name": "stranger", "labels": {}}, "status": {}})


def test_observe_tolerates_bad_times_and_missing_sections() -> None:
    observed = observe_pod(
        {"metadata": {"name": "p", "labels": {"etl.sparkops.io/run": "1"}, "creationTimestamp": "x"}}
    )
    assert observed == ObservedRun(run=1, pod="p", generation=None, phase="Unknown")


# --- parse_metrics --------------------------------------------------------------------------


def test_parse_metrics_reads_camel_case_json_and_ignores_unknown_keys() -> None:
    metrics = parse_metrics(metrics_message(errors=["boom"], highWaterMark="2026-11-25", extra=1))
    assert metrics == RunMetrics(
        records_extracted=10,
        records_loaded=9,
        records_failed=1,
        errors=["boom"],
        high_water_mark="2026-11-25",
    )


@pytest.mark.parametrize("message", [None, "", "Killed", "[1, 2]", '{"recordsLoaded": "many"}', "{trunc"])
def test_parse_metrics_is_none_for_what_is_not_our_json(message: str | None) -> None:
    assert parse_metrics(message) is None


# --- classify: finished pods ----------------------------------------------------------------


def test_success() -> None:
    assert check(succeeded_pod()) == Outcome(True, "Succeeded", "run 1 succeeded", False, False)


def test_succeeded_phase_without_exit_code_is_success() -> None:
    outcome = check(pod(phase="Succeeded"))
    assert outcome is not None
    assert outcome.succeeded


@pytest.mark.parametrize(
    ("exit_code", "reason", "retryable", "infrastructure"),
    [
        (2, "ConfigurationError", False, False),
        (3, "DataError", True, False),
        (4, "InfrastructureError", True, True),
        (1, "JobFailed", True, False),
        (137, "JobFailed", True, False),
    ],
)
def test_job_exit_codes(exit_code: int, reason: str, retryable: bool, infrastructure: bool) -> None:
    outcome = check(failed_pod(exit_code=exit_code))
    assert outcome is not None
    assert (outcome.succeeded, outcome.reason, outcome.retryable, outcome.infrastructure) == (
        False,
        reason,
        retryable,
        infrastructure,
    )
    assert "failure of run 1" in outcome.message  # the job's first error names the cause


def test_failure_message_falls_back_to_the_raw_termination_message() -> None:
    outcome = check(pod(phase="Failed", state=terminated(1, "Error", "Traceback: KeyError 'x'")))
    assert outcome is not None
    assert outcome.message == "job failed (exit 1, Error): Traceback: KeyError 'x'"


def test_oom_killed() -> None:
    outcome = check(pod(phase="Failed", state=terminated(137, "OOMKilled")))
    assert outcome is not None
    assert (outcome.reason, outcome.retryable) == ("OOMKilled", True)
    assert "memory" in outcome.message


def test_evicted_is_retryable_infrastructure() -> None:
    evicted = pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")
    outcome = check(evicted)
    assert outcome == Outcome(
        False,
        "Evicted",
        "driver pod orders-run-1-driver was evicted: The node was low on resource: memory.",
        True,
        True,
    )
    still_running = pod(phase="Running", state=running(), reason="Evicted")
    assert check(still_running) is not None


def test_pod_deadline_exceeded_by_the_kubelet() -> None:
    outcome = check(pod(phase="Failed", reason="DeadlineExceeded", message="Pod was active too long"))
    assert outcome is not None
    assert (outcome.reason, outcome.retryable) == ("DeadlineExceeded", False)


def test_failed_pod_without_exit_code() -> None:
    outcome = check(pod(phase="Failed", message="node lost"))
    assert outcome is not None
    assert (outcome.reason, outcome.message) == (
        "JobFailed",
        "driver pod orders-run-1-driver failed: node lost",
    )


# --- classify: pods still going -------------------------------------------------------------


def test_running_fine_is_none_until_the_active_deadline() -> None:
    started_long_ago = pod(phase="Running", state=running(started=-3599))
    assert check(started_long_ago) is None
    outcome = check(started_long_ago, NOW + timedelta(seconds=1))
    assert outcome is not None
    assert (outcome.reason, outcome.retryable) == ("DeadlineExceeded", False)
    assert "3600s" in outcome.message


def test_streaming_drivers_have_no_deadline() -> None:
    spec = make_spec(
        mode="streaming", streaming={"checkpointLocation": "s3a://state/p/"}, activeDeadlineSeconds=10
    )
    assert check(pod(phase="Running", state=running(started=-100)), spec=spec) is None
    assert next_check_at(observe_pod(pod(phase="Running", state=running())), spec) is None


@pytest.mark.parametrize(
    ("waiting_reason", "reason", "retryable"),
    [
        ("ImagePullBackOff", "ImagePullBackOff", True),
        ("ErrImagePull", "ImagePullBackOff", True),
        ("InvalidImageName", "InvalidImageName", False),
        ("CreateContainerConfigError", "CreateContainerConfigError", False),
    ],
)
def test_bad_start_fails_after_a_short_grace(waiting_reason: str, reason: str, retryable: bool) -> None:
    kubelet_says = 'secret "pg-credentials" has no key "password"'
    young = pod(created=-59, state=waiting(waiting_reason, kubelet_says))
    assert check(young) is None
    outcome = check(young, NOW + timedelta(seconds=1))
    assert outcome is not None
    assert (outcome.reason, outcome.retryable, outcome.infrastructure) == (reason, retryable, True)
    assert kubelet_says in outcome.message


def test_bad_start_grace_is_never_longer_than_the_start_timeout() -> None:
    spec = make_spec(startTimeoutSeconds=20)
    outcome = check(pod(created=-20, state=waiting("ImagePullBackOff")), spec=spec)
    assert outcome is not None
    assert outcome.reason == "ImagePullBackOff"


def test_unschedulable_after_the_start_timeout() -> None:
    stuck = pod(created=-299, conditions=unschedulable())
    assert check(stuck) is None
    outcome = check(stuck, NOW + timedelta(seconds=1))
    assert outcome is not None
    assert (outcome.reason, outcome.retryable, outcome.infrastructure) == ("Unschedulable", True, True)
    assert "Insufficient memory" in outcome.message


def test_start_timeout_names_what_the_driver_waits_on() -> None:
    outcome = check(pod(created=-300, state=waiting("ContainerCreating", "mounting volume")))
    assert outcome is not None
    assert outcome.reason == "StartTimeout"
    assert "ContainerCreating: mounting volume" in outcome.message
    plain = check(pod(created=-300))
    assert plain is not None
    assert plain.message == "driver pod orders-run-1-driver not running after startTimeoutSeconds (300s)"


def test_next_check_at() -> None:
    created = NOW - timedelta(seconds=10)
    assert next_check_at(observe_pod(pod()), SPEC) == created + timedelta(seconds=300)
    assert next_check_at(observe_pod(pod(state=waiting("ErrImagePull"))), SPEC) == created + timedelta(
        seconds=60
    )
    assert next_check_at(observe_pod(running_pod()), SPEC) == NOW - timedelta(seconds=5) + timedelta(
        seconds=3600
    )
    assert next_check_at(observe_pod(succeeded_pod()), SPEC) is None
    assert next_check_at(observe_pod(running_pod()), make_spec()) is None
    no_time = observe_pod({"metadata": {"name": "p", "labels": {"etl.sparkops.io/run": "1"}}})
    assert next_check_at(no_time, SPEC) is None
