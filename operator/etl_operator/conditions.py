"""The kstatus conditions of an ETLPipeline, `Reconciling` and `Stalled`, decided from its status.

kstatus (Flux, cli-utils, Argo CD's health script in helm/sparkops-etl/files/argocd-health.lua)
reads an object as InProgress while `Reconciling` is True or `status.observedGeneration` lags
`metadata.generation`, as Failed while `Stalled` is True, and as Current otherwise. Both are
"abnormal-true": False is the healthy state, and at most one of them is True. Pure: reconcile
calls `gitops_conditions` once the phase of a pass is known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from etl_job.contract import CircuitStatus, ETLPipelineStatus, Mode, Phase, RunRecord

#: Run record phases this module looks at (reconcile.py owns them).
_ALIVE = frozenset({"Pending", "Running"})
_STOPPING = "Stopping"


@dataclass(frozen=True)
class Verdict:
    """One condition's value: status True or False, a CamelCase reason and a message."""

    true: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Problem:
    """What keeps the spec from running: the first problem's kind and all their messages."""

    kind: str
    message: str


def _run_text(record: RunRecord) -> str:
    return f"run {record.run} {record.phase} ({record.reason}): {record.message}"


def stalled(status: ETLPipelineStatus, phase: Phase, problem: Problem | None) -> Verdict:
    """True when the pipeline cannot go on without a change: an invalid spec, a missing Secret,
    an open circuit, a failed run that is not retried (a new spec generation, the rerun
    annotation or the next schedule slot is the change), or a streaming driver whose query
    completes no micro-batch (its sink breaker open, or a batch hung past stallTimeoutSeconds)."""
    last = status.last_run
    if problem is not None:
        return Verdict(True, problem.kind, problem.message)
    stream = status.streaming
    running = [r.run for r in status.runs if r.phase == "Running"]
    if stream is not None and stream.stalled and stream.run in running:
        return Verdict(True, "StreamStalled", f"run {stream.run}: {stream.message}")
    if phase == Phase.circuit_open:
        circuit = status.circuit or CircuitStatus()
        last_text = f"; last {_run_text(last)}" if last is not None else ""
        return Verdict(
            True,
            "CircuitOpen",
            f"circuit open after {circuit.consecutive_failures} consecutive failed runs{last_text}",
        )
    if phase == Phase.failed and last is not None:
        return Verdict(True, last.reason or "RunFailed", f"last {_run_text(last)}; not retried")
    return Verdict(False, "AsExpected", "")


def reconciling(
    status: ETLPipelineStatus, phase: Phase, mode: Mode | None, queued: str | None, generation: int
) -> Verdict:
    """True while work is under way: a run pending or running (for streaming: a driver not yet
    running the current generation), a run stopping, a due run waiting for a slot, a retry in
    backoff."""
    if phase == Phase.suspended:
        return Verdict(False, "Suspended", "spec.suspend is true")
    stopping = [r for r in status.runs if r.phase == _STOPPING]
    alive = [r for r in status.runs if r.phase in _ALIVE]
    if stopping:
        record = stopping[0]
        message = f"run {record.run} is stopping ({record.reason}): {record.message}"
        return Verdict(True, "RunStopping", message)
    if alive:
        record = alive[0]
        steady = mode == Mode.streaming and record.phase == "Running" and record.generation == generation
        if not steady:
            return Verdict(True, f"Run{record.phase}", f"run {record.run} ({record.pod}) is {record.phase}")
    elif queued is not None:
        return Verdict(True, "Queued", f"{queued}: waiting for a free run slot")
    if phase == Phase.backoff:
        return Verdict(True, "Backoff", f"retry {status.retries} at {status.backoff_until}")
    return Verdict(False, "Reconciled", "")


def gitops_conditions(
    status: ETLPipelineStatus,
    phase: Phase,
    mode: Mode | None,
    problems: Sequence[Problem],
    queued: str | None,
    generation: int,
) -> tuple[Verdict, Verdict]:
    """(Reconciling, Stalled); Stalled wins, so the two are never True together."""
    problem = Problem(problems[0].kind, "; ".join(p.message for p in problems)) if problems else None
    stuck = stalled(status, phase, problem)
    if stuck.true:
        return Verdict(False, "Stalled", stuck.message), stuck
    return reconciling(status, phase, mode, queued, generation), stuck
