"""The operator's Prometheus metrics, derived from what each pass decided (its actions and the
status before and after), never from inside reconcile. Low cardinality: no run ids as labels,
and `pipeline` only on the circuit gauge and the run records (a few series per pipeline, dropped
when it is deleted). A batch driver lives too briefly to be scraped: the records its runs report
in their termination messages are counted here."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from etl_job.contract import CircuitState, ETLPipelineStatus, Phase, RunRecord
from etl_operator.observe import ObservedRun, parse_time

__all__ = ["CONTENT_TYPE_LATEST", "OperatorMetrics", "finished_runs", "launch_due_at", "started_runs"]

#: Run record phases that end a run (reconcile.py owns them).
_ENDED = {"Succeeded": "succeeded", "Failed": "failed", "Stopped": "stopped"}
CIRCUIT_VALUES = {CircuitState.closed: 0, CircuitState.half_open: 1, CircuitState.open: 2}
#: Stage label of etl_operator_run_records_total, and the run metric behind it.
RECORD_STAGES = {
    "extracted": "records_extracted",
    "filtered": "records_filtered",
    "loaded": "records_loaded",
    "failed": "records_failed",
    "late": "records_late",
}
#: Seconds: a launch is quick, a driver may wait for an image pull or a node.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def finished_runs(previous: ETLPipelineStatus, current: ETLPipelineStatus) -> list[RunRecord]:
    """Runs that ended in this pass: ended now, and not already ended before it."""
    before = {record.run: record.phase for record in previous.runs}
    return [r for r in current.runs if r.phase in _ENDED and before.get(r.run) not in _ENDED]


def started_runs(
    previous: ETLPipelineStatus, current: ETLPipelineStatus, observed: Sequence[ObservedRun]
) -> list[float]:
    """Seconds from pod creation to the driver running, for each run first seen started in this pass."""
    before = {record.run: record.phase for record in previous.runs}
    pods = {pod.run: pod for pod in observed}
    latencies = []
    for record in current.runs:
        pod = pods.get(record.run)
        if before.get(record.run) not in (None, "Pending") or record.phase == "Pending" or pod is None:
            continue
        if pod.created_at is not None and pod.started_at is not None:
            latencies.append(max(0.0, (pod.started_at - pod.created_at).total_seconds()))
    return latencies


def launch_due_at(
    body: Mapping[str, Any], previous: ETLPipelineStatus, current: ETLPipelineStatus
) -> datetime | None:
    """When the launch of this pass became due: its schedule slot, the end of its backoff, else
    the last change of the pipeline object by anyone but the status writer (managedFields)."""
    if current.last_schedule_time and current.last_schedule_time != previous.last_schedule_time:
        return parse_time(current.last_schedule_time)
    if previous.backoff_until:
        return parse_time(previous.backoff_until)
    metadata = body.get("metadata") or {}
    changes = [
        parse_time(entry.get("time"))
        for entry in metadata.get("managedFields") or []
        if entry.get("subresource") != "status"
    ]
    known = [when for when in changes if when is not None]
    return max(known) if known else parse_time(metadata.get("creationTimestamp"))


class OperatorMetrics:
    """One registry of the operator's metrics; thread-safe (passes run in worker threads)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs_started = Counter(
            "etl_operator_runs_started", "Driver pods the operator launched.", registry=self.registry
        )
        self.runs_finished = Counter(
            "etl_operator_runs_finished",
            "Runs that ended, by result (succeeded, failed, stopped).",
            ["result"],
            registry=self.registry,
        )
        self.run_failures = Counter(
            "etl_operator_run_failures",
            "Failed runs by failure class (ConfigurationError, InfrastructureError, OOMKilled, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.run_records = Counter(
            "etl_operator_run_records",
            "Records of ended runs by stage, as each driver reported them.",
            ["pipeline", "stage"],
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "etl_operator_circuit_state",
            "Circuit breaker of each pipeline: 0 closed, 1 half-open, 2 open.",
            ["pipeline"],
            registry=self.registry,
        )
        self.launch_latency = Histogram(
            "etl_operator_launch_latency_seconds",
            "From the pipeline change (or schedule slot, or end of backoff) to its driver pod created.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.driver_start_latency = Histogram(
            "etl_operator_driver_start_latency_seconds",
            "From a driver pod created to its driver container running.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "etl_operator_reconcile_duration_seconds",
            "One pass over one pipeline: read, decide, act.",
            registry=self.registry,
        )
        self.pipelines = Gauge(
            "etl_operator_pipelines",
            "Pipelines the operator handles, by phase.",
            ["phase"],
            registry=self.registry,
        )
        # Series exist at 0 before their first run: increase() and rate() miss the increment of a
        # series that first appears at 1. Failure classes are open-ended and appear when seen.
        for result in _ENDED.values():
            self.runs_finished.labels(result)
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._count_phases()

    def observe_pass(
        self,
        namespace: str,
        name: str,
        previous: ETLPipelineStatus,
        current: ETLPipelineStatus,
        observed: Sequence[ObservedRun],
        launched: int,
        launch_latencies: Iterable[float],
    ) -> None:
        """What one applied pass shows: launches, runs ended and started, the circuit and phase."""
        self.runs_started.inc(launched)
        for latency in launch_latencies:
            self.launch_latency.observe(latency)
        for record in finished_runs(previous, current):
            self.runs_finished.labels(_ENDED[record.phase or ""]).inc()
            if record.phase == "Failed":
                self.run_failures.labels(record.reason or "Unknown").inc()
            if record.metrics is not None:
                for stage, field in RECORD_STAGES.items():
                    self.run_records.labels(f"{namespace}/{name}", stage).inc(getattr(record.metrics, field))
        for latency in started_runs(previous, current, observed):
            self.driver_start_latency.observe(latency)
        for stage in RECORD_STAGES:
            self.run_records.labels(f"{namespace}/{name}", stage)  # at 0 from the pipeline's first pass
        circuit = current.circuit.state if current.circuit is not None else CircuitState.closed
        self.circuit_state.labels(f"{namespace}/{name}").set(CIRCUIT_VALUES[circuit])
        with self._lock:
            self._phases[namespace, name] = (current.phase or Phase.pending).value
            self._count_phases()

    def forget(self, namespace: str, name: str) -> None:
        """A deleted pipeline: its series go."""
        with contextlib.suppress(KeyError):
            self.circuit_state.remove(f"{namespace}/{name}")
        for stage in RECORD_STAGES:
            with contextlib.suppress(KeyError):
                self.run_records.remove(f"{namespace}/{name}", stage)
        with self._lock:
            self._phases.pop((namespace, name), None)
            self._count_phases()

    def _count_phases(self) -> None:
        counts = dict.fromkeys((phase.value for phase in Phase), 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            self.pipelines.labels(phase).set(count)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
