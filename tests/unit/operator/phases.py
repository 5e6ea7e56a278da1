"""Statuses reconcile really produces, one per state a GitOps tool must tell apart, with what
Flux (kstatus) and Argo CD (the chart's health script) are expected to make of each. The unit
tests check the conditions; tests/integration/health runs the real kstatus and Lua on them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from etl_job.contract import ETLPipelineSpec, ETLPipelineStatus
from etl_operator.reconcile import Decision, SpecProblem
from tests.unit.operator.test_observe import NOW, failed_pod, make_spec, running_pod, succeeded_pod
from tests.unit.operator.test_reconcile import (
    BATCH,
    BREAKER,
    STREAMING,
    decide,
    launched,
    open_circuit,
    stream_report,
)


@dataclass(frozen=True)
class Shown:
    """One pipeline as the API would serve it, and how each tool should judge it."""

    spec: ETLPipelineSpec | None
    status: ETLPipelineStatus
    #: (status, reason) of Reconciling and of Stalled.
    reconciling: tuple[str, str]
    stalled: tuple[str, str]
    kstatus: str
    argocd: str
    generation: int = 1

    def manifest(self, name: str) -> dict[str, Any]:
        spec = self.spec.model_dump(mode="json", by_alias=True, exclude_none=True) if self.spec else {}
        return {
            "apiVersion": "etl.sparkops.io/v1alpha1",
            "kind": "ETLPipeline",
            "metadata": {"name": name, "namespace": "analytics", "generation": self.generation},
            "spec": spec,
            "status": self.status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }


def _shown(
    decision: Decision,
    spec: ETLPipelineSpec | None,
    reconciling: tuple[str, str],
    stalled: tuple[str, str],
    kstatus: str,
    argocd: str,
    generation: int = 1,
) -> Shown:
    return Shown(spec, decision.status, reconciling, stalled, kstatus, argocd, generation)


NOT_RECONCILING = ("False", "Reconciled")
NOT_STALLED = ("False", "AsExpected")


def every_phase() -> dict[str, Shown]:
    later = NOW + timedelta(minutes=2)
    first = launched()
    running = decide(BATCH, first.status, [running_pod(1)], later)
    succeeded = decide(BATCH, first.status, [succeeded_pod(1)], later)
    backoff = decide(BATCH, first.status, [failed_pod(1, exit_code=3)], later)
    not_retried = decide(BATCH, first.status, [failed_pod(1, exit_code=2)], later)
    opened, pods = open_circuit()
    trial = decide(BREAKER, opened.status, pods, NOW + timedelta(seconds=123))
    suspended_spec = make_spec(suspend=True)
    missing = SpecProblem("SecretMissing", "spec.load.credentialsRef", "Secret pg-credentials is missing")
    invalid = SpecProblem("InvalidSpec", "spec.load.port", "spec.load.port: must be <= 65535")
    stream = decide(STREAMING)
    streaming = decide(STREAMING, stream.status, [running_pod(1)], NOW + timedelta(seconds=5))
    replacing = decide(STREAMING, streaming.status, [running_pod(1)], later, generation=2)
    stalled_report = stream_report(3, ready=False, stalled=True, message="no micro-batch completed for 400 s")
    stalled = decide(STREAMING, streaming.status, [running_pod(1)], later, stream_reports={1: stalled_report})
    hourly = make_spec(schedule="0 * * * *")
    scheduled = decide(hourly, now=NOW - timedelta(minutes=5), created_at=NOW - timedelta(minutes=10))
    not_observed = succeeded.status.model_copy(update={"observed_generation": 1})
    return {
        "launched": _shown(first, BATCH, ("True", "RunPending"), NOT_STALLED, "InProgress", "Progressing"),
        "running": _shown(running, BATCH, ("True", "RunRunning"), NOT_STALLED, "InProgress", "Progressing"),
        "succeeded": _shown(succeeded, BATCH, NOT_RECONCILING, NOT_STALLED, "Current", "Healthy"),
        "backoff": _shown(backoff, BATCH, ("True", "Backoff"), NOT_STALLED, "InProgress", "Progressing"),
        "failed": _shown(
            not_retried, BATCH, ("False", "Stalled"), ("True", "ConfigurationError"), "Failed", "Degraded"
        ),
        "circuit-open": _shown(
            opened, BREAKER, ("False", "Stalled"), ("True", "CircuitOpen"), "Failed", "Degraded"
        ),
        "half-open-trial": _shown(
            trial, BREAKER, ("True", "RunPending"), NOT_STALLED, "InProgress", "Progressing"
        ),
        "suspended": _shown(
            # Ready stays False until a run succeeds: kstatus has no word for suspended.
            decide(suspended_spec), suspended_spec, ("False", "Suspended"), NOT_STALLED, "InProgress",
            "Suspended",
        ),
        "secret-missing": _shown(
            decide(BATCH, problems=[missing]), BATCH, ("False", "Stalled"), ("True", "SecretMissing"),
            "Failed", "Degraded",
        ),
        "invalid-spec": _shown(
            decide(None, problems=[invalid]), None, ("False", "Stalled"), ("True", "InvalidSpec"),
            "Failed", "Degraded",
        ),
        "queued": _shown(
            decide(BATCH, launch_allowed=False), BATCH, ("True", "Queued"), NOT_STALLED, "InProgress",
            "Progressing",
        ),
        "streaming-running": _shown(streaming, STREAMING, NOT_RECONCILING, NOT_STALLED, "Current", "Healthy"),
        "streaming-stalled": _shown(
            stalled, STREAMING, ("False", "Stalled"), ("True", "StreamStalled"), "Failed", "Degraded"
        ),
        "streaming-replacing": _shown(
            replacing, STREAMING, ("True", "RunStopping"), NOT_STALLED, "InProgress", "Progressing", 2
        ),
        "scheduled-waiting": _shown(scheduled, hourly, NOT_RECONCILING, NOT_STALLED, "Current", "Healthy"),
        "generation-not-observed": Shown(
            BATCH, not_observed, NOT_RECONCILING, NOT_STALLED, "InProgress", "Progressing", generation=2
        ),
    }  # fmt: skip
