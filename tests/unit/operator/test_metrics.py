"""The operator's metrics, fed the statuses reconcile really decides, and read back as Prometheus text."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from etl_job.contract import ETLPipelineStatus
from etl_operator.metrics import OperatorMetrics, finished_runs, launch_due_at, started_runs
from etl_operator.observe import observe_pod
from tests.unit.operator.phases import every_phase
from tests.unit.operator.test_observe import NOW, failed_pod, running_pod, succeeded_pod
from tests.unit.operator.test_reconcile import BATCH, BREAKER, decide, launched, open_circuit


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_run_launched_started_and_succeeded_is_counted_once() -> None:
    metrics = OperatorMetrics()
    empty = ETLPipelineStatus()
    first = launched()
    metrics.observe_pass("analytics", "orders", empty, first.status, [], 1, [0.4])
    pods = [running_pod(1)]
    running = decide(BATCH, first.status, pods, NOW + timedelta(seconds=20))
    metrics.observe_pass(
        "analytics", "orders", first.status, running.status, [observe_pod(p) for p in pods], 0, []
    )
    again = decide(BATCH, running.status, pods, NOW + timedelta(seconds=25))
    metrics.observe_pass(
        "analytics", "orders", running.status, again.status, [observe_pod(p) for p in pods], 0, []
    )
    done = decide(BATCH, again.status, [succeeded_pod(1)], NOW + timedelta(minutes=2))
    metrics.observe_pass("analytics", "orders", again.status, done.status, [], 0, [])
    metrics.observe_pass("analytics", "orders", done.status, done.status, [], 0, [])  # a quiet pass
    seen = samples(metrics)
    assert seen["etl_operator_runs_started_total", ()] == 1
    assert seen["etl_operator_runs_finished_total", (("result", "succeeded"),)] == 1
    assert ("etl_operator_run_failures_total", (("reason", "InfrastructureError"),)) not in seen
    assert seen["etl_operator_launch_latency_seconds_count", ()] == 1
    assert seen["etl_operator_launch_latency_seconds_sum", ()] == 0.4
    assert seen["etl_operator_driver_start_latency_seconds_count", ()] == 1
    assert seen["etl_operator_circuit_state", (("pipeline", "analytics/orders"),)] == 0
    assert seen["etl_operator_pipelines", (("phase", "Succeeded"),)] == 1
    assert seen["etl_operator_pipelines", (("phase", "Running"),)] == 0
    # The driver's termination message (recordsExtracted 10, loaded 9, failed 1), counted once.
    orders = ("pipeline", "analytics/orders")
    assert seen["etl_operator_run_records_total", (orders, ("stage", "extracted"))] == 10
    assert seen["etl_operator_run_records_total", (orders, ("stage", "loaded"))] == 9
    assert seen["etl_operator_run_records_total", (orders, ("stage", "failed"))] == 1
    metrics.forget("analytics", "orders")
    assert ("etl_operator_run_records_total", (orders, ("stage", "loaded"))) not in samples(metrics)


def test_failures_by_reason_the_open_circuit_and_a_deleted_pipeline() -> None:
    metrics = OperatorMetrics()
    opened, _ = open_circuit()
    metrics.observe_pass("analytics", "flaky", launched(BREAKER).status, opened.status, [], 0, [])
    failed = decide(BATCH, launched().status, [failed_pod(1, exit_code=2)], NOW + timedelta(minutes=1))
    metrics.observe_pass("analytics", "orders", launched().status, failed.status, [], 0, [])
    seen = samples(metrics)
    assert seen["etl_operator_runs_finished_total", (("result", "failed"),)] == 3
    assert seen["etl_operator_run_failures_total", (("reason", "InfrastructureError"),)] == 2
    assert seen["etl_operator_run_failures_total", (("reason", "ConfigurationError"),)] == 1
    assert seen["etl_operator_circuit_state", (("pipeline", "analytics/flaky"),)] == 2
    assert seen["etl_operator_pipelines", (("phase", "CircuitOpen"),)] == 1
    assert seen["etl_operator_pipelines", (("phase", "Failed"),)] == 1
    metrics.forget("analytics", "flaky")
    metrics.forget("analytics", "never-seen")
    seen = samples(metrics)
    assert ("etl_operator_circuit_state", (("pipeline", "analytics/flaky"),)) not in seen
    assert seen["etl_operator_pipelines", (("phase", "CircuitOpen"),)] == 0


def test_every_phase_is_a_series_and_no_run_id_is_a_label() -> None:
    metrics = OperatorMetrics()
    for name, shown in every_phase().items():
        metrics.observe_pass("a", name, ETLPipelineStatus(), shown.status, [], 0, [])
    labels = {label for (_, pairs) in samples(metrics) for label, _ in pairs}
    assert labels <= {"result", "reason", "pipeline", "stage", "phase", "le"}
    phases = {dict(pairs)["phase"] for (name, pairs) in samples(metrics) if name == "etl_operator_pipelines"}
    assert phases == {"Pending", "Running", "Succeeded", "Failed", "Backoff", "CircuitOpen", "Suspended"}


def test_finished_and_started_runs_are_the_transitions_of_one_pass() -> None:
    first = launched()
    done = decide(BATCH, first.status, [succeeded_pod(1)], NOW + timedelta(minutes=2))
    assert [r.run for r in finished_runs(first.status, done.status)] == [1]
    assert finished_runs(done.status, done.status) == []
    started = started_runs(first.status, done.status, [observe_pod(succeeded_pod(1))])
    assert len(started) == 1 and started[0] >= 0
    assert started_runs(done.status, done.status, [observe_pod(succeeded_pod(1))]) == []


def test_a_launch_is_due_from_its_slot_its_backoff_or_the_last_change_of_the_object() -> None:
    body = {"metadata": {"creationTimestamp": "2026-11-25T21:00:00Z", "managedFields": [
        {"manager": "kubectl", "time": "2026-11-25T21:50:00Z"},
        {"manager": "etl-operator", "subresource": "status", "time": "2026-11-25T21:59:00Z"},
    ]}}  # fmt: skip
    empty = ETLPipelineStatus()
    assert launch_due_at(body, empty, empty) == NOW - timedelta(minutes=10)
    assert launch_due_at({"metadata": {"creationTimestamp": "2026-11-25T21:00:00Z"}}, empty, empty) == (
        NOW - timedelta(hours=1)
    )
    backoff = ETLPipelineStatus(backoff_until="2026-11-25T21:58:00Z")
    assert launch_due_at(body, backoff, empty) == NOW - timedelta(minutes=2)
    slot = ETLPipelineStatus(last_schedule_time="2026-11-25T22:00:00Z")
    assert launch_due_at(body, empty, slot) == NOW
