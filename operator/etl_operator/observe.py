"""What a run's driver pod says about the run, and how a run ended: read from the pod's JSON, pure.

`observe_pod` turns a pod as the API returns it into an `ObservedRun`; `classify` decides whether
the run is over and why (the job's exit codes, OOM, image pulls, scheduling, eviction, timeouts).
Nothing here talks to a cluster or reads the clock: `now` is always passed in."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from etl_job.contract import ETLPipelineSpec, Mode, RunMetrics
from etl_operator.naming import DRIVER_CONTAINER, LABEL_GENERATION, LABEL_RUN

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]

#: How long a driver may wait on an image pull or a container config error before its run fails:
#: long enough for a registry blip, short enough that nobody waits for startTimeoutSeconds.
WAITING_GRACE_SECONDS = 60.0

#: Exit codes of the job (etl_job.cli).
EXIT_CONFIGURATION_ERROR = 2
EXIT_DATA_ERROR = 3
EXIT_INFRASTRUCTURE_ERROR = 4

_IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull"})
_BAD_START_REASONS = _IMAGE_PULL_REASONS | {"InvalidImageName", "CreateContainerConfigError"}
_POD_PHASES: frozenset[str] = frozenset({"Pending", "Running", "Succeeded", "Failed", "Unknown"})


@dataclass(frozen=True)
class ObservedRun:
    """One driver pod of a pipeline, as the API reported it."""

    run: int
    pod: str
    generation: int | None
    phase: PodPhase
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_reason: str | None = None
    termination_message: str | None = None
    pod_reason: str | None = None
    pod_message: str | None = None
    unschedulable: bool = False
    unschedulable_message: str | None = None
    deleting: bool = False
    #: Executor pods of the run in phase Running (None: not counted, a run in local mode).
    executors_running: int | None = None
    pod_ip: str | None = None
    #: A streaming driver's answer to GET /progress (None: not asked, or no answer yet).
    stream_report: Mapping[str, Any] | None = None

    @property
    def driver_terminated(self) -> bool:
        return self.exit_code is not None or self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class Outcome:
    """How a run ended. `retryable` says whether a restart may help; `infrastructure` whether the
    cause lies outside the pipeline (cluster, registry, source or sink)."""

    succeeded: bool
    reason: str
    message: str
    retryable: bool
    infrastructure: bool


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as the API writes it ("2026-11-25T22:00:00Z"), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second, as Kubernetes writes times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _driver_status(status: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = status.get("containerStatuses") or []
    for container in statuses:
        if _mapping(container).get("name") == DRIVER_CONTAINER:
            return _mapping(container)
    return {}


def observe_pod(pod: Mapping[str, Any]) -> ObservedRun:
    """Read a driver pod (the API's camelCase JSON). Raises ValueError for a pod without a run label,
    which is not one of ours."""
    metadata = _mapping(pod.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    run = _int_or_none(labels.get(LABEL_RUN))
    if run is None:
        raise ValueError(f"pod {metadata.get('name')} has no {LABEL_RUN} label")
    status = _mapping(pod.get("status"))
    phase = status.get("phase")
    state = _mapping(_driver_status(status).get("state"))
    waiting = _mapping(state.get("waiting"))
    running = _mapping(state.get("running"))
    terminated = _mapping(state.get("terminated"))
    scheduled = next(
        (_mapping(c) for c in status.get("conditions") or [] if _mapping(c).get("type") == "PodScheduled"),
        {},
    )
    unschedulable = scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
    return ObservedRun(
        run=run,
        pod=str(metadata.get("name", "")),
        generation=_int_or_none(labels.get(LABEL_GENERATION)),
        phase=phase if phase in _POD_PHASES else "Unknown",
        created_at=parse_time(metadata.get("creationTimestamp")),
        started_at=parse_time(running.get("startedAt") or terminated.get("startedAt")),
        finished_at=parse_time(terminated.get("finishedAt")),
        exit_code=_int_or_none(terminated.get("exitCode")),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        terminated_reason=terminated.get("reason"),
        termination_message=terminated.get("message"),
        pod_reason=status.get("reason"),
        pod_message=status.get("message"),
        unschedulable=unschedulable,
        unschedulable_message=scheduled.get("message") if unschedulable else None,
        deleting=metadata.get("deletionTimestamp") is not None,
        pod_ip=status.get("podIP") or None,
    )


def parse_metrics(message: str | None) -> RunMetrics | None:
    """The job's metrics from its termination message; None when it is absent or not our JSON
    (a kubelet's own message, a truncated log tail)."""
    if not message:
        return None
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    known = {k: v for k, v in data.items() if k in _METRIC_ALIASES}
    try:
        return RunMetrics.model_validate(known)
    except ValidationError:
        return None


_METRIC_ALIASES = frozenset(
    {field.alias or name for name, field in RunMetrics.model_fields.items()} | set(RunMetrics.model_fields)
)


def _job_failure_detail(run: ObservedRun) -> str:
    """The job's first error from its metrics, else the raw termination message, shortened."""
    metrics = parse_metrics(run.termination_message)
    if metrics is not None and metrics.errors:
        return metrics.errors[0]
    return (run.termination_message or "").strip()[:300]


def _with_detail(message: str, detail: str | None) -> str:
    return f"{message}: {detail}" if detail else message


def _finished(run: ObservedRun) -> Outcome:
    """How a pod whose driver has stopped ended."""
    if run.pod_reason == "Evicted":
        return Outcome(
            False, "Evicted", _with_detail(f"driver pod {run.pod} was evicted", run.pod_message), True, True
        )
    if run.pod_reason == "DeadlineExceeded":
        return Outcome(
            False, "DeadlineExceeded", _with_detail(f"driver pod {run.pod}", run.pod_message), False, False
        )
    if run.terminated_reason == "OOMKilled":
        return Outcome(
            False,
            "OOMKilled",
            f"driver of {run.pod} ran out of memory (OOMKilled, exit code {run.exit_code}); "
            "raise spark.driver.memory or its memoryOverhead",
            True,
            False,
        )
    code = run.exit_code
    if code == 0 or (code is None and run.phase == "Succeeded"):
        return Outcome(True, "Succeeded", f"run {run.run} succeeded", False, False)
    detail = _job_failure_detail(run)
    if code == EXIT_CONFIGURATION_ERROR:
        return Outcome(
            False, "ConfigurationError", _with_detail("configuration error (exit 2)", detail), False, False
        )
    if code == EXIT_DATA_ERROR:
        return Outcome(False, "DataError", _with_detail("data error (exit 3)", detail), True, False)
    if code == EXIT_INFRASTRUCTURE_ERROR:
        return Outcome(
            False,
            "InfrastructureError",
            _with_detail("source or sink unavailable (exit 4)", detail),
            True,
            True,
        )
    if code is None:
        cause = run.pod_message or run.pod_reason or "no exit code reported"
        return Outcome(False, "JobFailed", f"driver pod {run.pod} failed: {cause}", True, False)
    reason = f", {run.terminated_reason}" if run.terminated_reason else ""
    return Outcome(False, "JobFailed", _with_detail(f"job failed (exit {code}{reason})", detail), True, False)


def _stuck_waiting(run: ObservedRun) -> Outcome:
    reason = run.waiting_reason or ""
    detail = run.waiting_message
    if reason in _IMAGE_PULL_REASONS:
        return Outcome(
            False,
            "ImagePullBackOff",
            _with_detail(f"driver image cannot be pulled ({reason})", detail),
            True,
            True,
        )
    if reason == "InvalidImageName":
        return Outcome(
            False, "InvalidImageName", _with_detail("driver image name is invalid", detail), False, True
        )
    # Usually a Secret or ConfigMap key the pod references is missing: a restart will not help
    # until the spec or the Secret changes.
    return Outcome(
        False,
        "CreateContainerConfigError",
        _with_detail("driver container cannot be created", detail),
        False,
        True,
    )


def _age(since: datetime | None, now: datetime) -> float:
    return (now - since).total_seconds() if since is not None else 0.0


def classify(run: ObservedRun, now: datetime, spec: ETLPipelineSpec) -> Outcome | None:
    """None while the run is still going (or may still start); else how it ended."""
    if run.driver_terminated:
        return _finished(run)
    if run.pod_reason == "Evicted":
        return _finished(run)
    if run.started_at is not None:
        deadline = spec.active_deadline_seconds
        if deadline is not None and spec.mode == Mode.batch and _age(run.started_at, now) >= deadline:
            return Outcome(
                False,
                "DeadlineExceeded",
                f"run {run.run} still running after activeDeadlineSeconds ({deadline}s)",
                False,
                False,
            )
        return None
    waited = _age(run.created_at, now)
    start_timeout = float(spec.start_timeout_seconds)
    if run.waiting_reason in _BAD_START_REASONS and waited >= min(WAITING_GRACE_SECONDS, start_timeout):
        return _stuck_waiting(run)
    if waited < start_timeout:
        return None
    if run.unschedulable:
        return Outcome(
            False,
            "Unschedulable",
            _with_detail(
                f"driver pod {run.pod} not scheduled after {spec.start_timeout_seconds}s",
                run.unschedulable_message,
            ),
            True,
            True,
        )
    waiting = f"{run.waiting_reason}: {run.waiting_message}" if run.waiting_reason else None
    return Outcome(
        False,
        "StartTimeout",
        _with_detail(
            f"driver pod {run.pod} not running after startTimeoutSeconds ({spec.start_timeout_seconds}s)",
            waiting,
        ),
        True,
        True,
    )


def next_check_at(run: ObservedRun, spec: ETLPipelineSpec) -> datetime | None:
    """When `classify` may next change its answer for a run still going, for a timed re-check."""
    if run.driver_terminated:
        return None
    if run.started_at is not None:
        deadline = spec.active_deadline_seconds
        if deadline is None or spec.mode != Mode.batch:
            return None
        return run.started_at + timedelta(seconds=deadline)
    if run.created_at is None:
        return None
    start_timeout = float(spec.start_timeout_seconds)
    if run.waiting_reason in _BAD_START_REASONS:
        return run.created_at + timedelta(seconds=min(WAITING_GRACE_SECONDS, start_timeout))
    return run.created_at + timedelta(seconds=start_timeout)
