"""The run state machine of one ETLPipeline: (pipeline, observed pods, problems, now) -> decision.

Pure: no kube client, no kopf, no clock, no global randomness. The handler gathers the inputs
(the pipeline, a fresh list of its driver pods from the API, not a watch cache, and the problems it
found validating the spec and its Secrets), calls `reconcile`, patches `status` and applies the
actions. `status.runs` (newest first) is the per-run truth: a record is Pending or Running while
its driver is alive, Stopping while the operator stops it (spec change, Replace, suspend), then
Succeeded, Failed or Stopped. The operator never writes spec."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from croniter import croniter  # type: ignore[import-untyped]

from etl_job.contract import (
    CircuitState,
    CircuitStatus,
    ConcurrencyPolicy,
    Condition,
    ETLPipelineSpec,
    ETLPipelineStatus,
    ExecutorCounts,
    Mode,
    Phase,
    RestartPolicyType,
    RunRecord,
)
from etl_operator.backoff import backoff_delay
from etl_operator.breaker import may_launch, record_failure, record_success, reset_at
from etl_operator.conditions import Problem, gitops_conditions
from etl_operator.naming import ANNOTATION_REPLAY, ANNOTATION_RERUN, driver_pod_name, trace_id
from etl_operator.observe import (
    ObservedRun,
    Outcome,
    classify,
    format_time,
    next_check_at,
    parse_metrics,
    parse_time,
)
from etl_operator.stream_status import PROGRESS_INTERVAL_SECONDS, streaming_status

#: Records kept in status.runs besides the active ones.
RUNS_HISTORY_LIMIT = 10

#: A launched run whose pod is not listed yet is waited for this long (the list may lag the create).
POD_MISSING_GRACE_SECONDS = 30.0

#: A run waiting for a free slot (the operator's max concurrent runs) is looked at again this soon;
#: a run ending elsewhere wakes it sooner.
QUEUED_RECHECK_SECONDS = 10.0
#: How soon a run whose executors are not all running yet is looked at again.
EXECUTOR_RECHECK_SECONDS = 3.0

#: Run record phases beyond the pod phases.
RUN_PENDING, RUN_RUNNING, RUN_STOPPING = "Pending", "Running", "Stopping"
RUN_SUCCEEDED, RUN_FAILED, RUN_STOPPED = "Succeeded", "Failed", "Stopped"
_ALIVE = frozenset({RUN_PENDING, RUN_RUNNING})


# --- inputs and outputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class SpecProblem:
    """Something that keeps the pipeline from running, found before reconcile: an invalid spec
    (`kind` InvalidSpec, `field` the path) or a missing Secret or key (SecretMissing)."""

    kind: Literal["InvalidSpec", "SecretMissing"]
    field: str
    message: str


@dataclass(frozen=True)
class PipelineView:
    """The ETLPipeline as reconcile sees it. `spec` is None when it does not parse; `created_at`
    (metadata.creationTimestamp) anchors a schedule that has never fired."""

    name: str
    namespace: str
    generation: int
    spec: ETLPipelineSpec | None
    status: ETLPipelineStatus
    annotations: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    #: Digest of the referenced Secrets' resourceVersions now; None when not looked at.
    secrets_version: str | None = None
    #: False when the operator's limit of concurrent runs is reached: a due run waits.
    launch_allowed: bool = True
    #: How often a running streaming driver's Secrets are looked at (an operator setting).
    secrets_recheck_seconds: float = 60.0
    #: metadata.uid: with the run number, it names the run's trace.
    uid: str = ""


@dataclass(frozen=True)
class LaunchRun:
    run: int
    generation: int
    #: The run replays the dead letters (`etl replay`) instead of running the pipeline.
    replay: bool = False


@dataclass(frozen=True)
class DeletePod:
    name: str
    reason: str


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    #: The run the event is about, whose labels go on the operator's log line of it.
    run: int | None = None


Action = LaunchRun | DeletePod | EmitEvent


@dataclass(frozen=True)
class Decision:
    actions: list[Action]
    status: ETLPipelineStatus
    requeue_after: float | None


# --- working state --------------------------------------------------------------------------


@dataclass
class _Work:
    """What one reconcile accumulates: the status so far, actions, and times to wake up at."""

    pipeline: PipelineView
    now: datetime
    status: ETLPipelineStatus
    actions: list[Action] = field(default_factory=list)
    wakeups: list[datetime] = field(default_factory=list)
    #: Why a run is due but waits for a free slot; None when nothing waits.
    queued: str | None = None

    def event(
        self, type_: Literal["Normal", "Warning"], reason: str, message: str, run: int | None = None
    ) -> None:
        self.actions.append(EmitEvent(type_, reason, message, run))

    def delete(self, pod: str, reason: str) -> None:
        if not any(isinstance(a, DeletePod) and a.name == pod for a in self.actions):
            self.actions.append(DeletePod(pod, reason))

    def wake_at(self, when: datetime | None) -> None:
        if when is not None:
            self.wakeups.append(when)

    def update(self, **changes: object) -> None:
        self.status = self.status.model_copy(update=changes)

    def put_run(self, record: RunRecord) -> None:
        """Insert or replace a run record, keeping runs newest first and bounded."""
        others = [r for r in self.status.runs if r.run != record.run]
        self.update(runs=bounded_runs([record, *others]))


def bounded_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Newest first; every live or stopping run, and finished runs up to RUNS_HISTORY_LIMIT in all."""
    ordered = sorted(runs, key=lambda r: r.run, reverse=True)
    kept: list[RunRecord] = []
    for record in ordered:
        if record.phase in _ALIVE or record.phase == RUN_STOPPING or len(kept) < RUNS_HISTORY_LIMIT:
            kept.append(record)
    return kept


def _ceil_to_second(when: datetime) -> datetime:
    """Status times have whole seconds: round a deadline up, so it is never earlier than decided."""
    whole = when.replace(microsecond=0)
    return whole if whole == when else whole + timedelta(seconds=1)


def _seconds(value: float) -> str:
    return f"{value:.0f}s"


# --- schedule -------------------------------------------------------------------------------


def latest_slot(schedule: str, now: datetime) -> datetime:
    """The latest cron slot at or before `now`."""
    slot: datetime = croniter(schedule, now + timedelta(microseconds=1)).get_prev(datetime)
    return slot


def next_slot(schedule: str, now: datetime) -> datetime:
    """The first cron slot strictly after `now`."""
    slot: datetime = croniter(schedule, now).get_next(datetime)
    return slot


def due_slot(
    schedule: str,
    now: datetime,
    last_schedule_time: str | None,
    created_at: datetime | None,
    next_run_at: str | None,
) -> datetime | None:
    """The slot to launch now, if any: only the latest one, however many were missed (no backfill)."""
    slot = latest_slot(schedule, now)
    last = parse_time(last_schedule_time)
    if last is not None:
        return slot if slot > last else None
    if created_at is not None:
        return slot if slot > created_at else None
    first = parse_time(next_run_at)
    return slot if first is not None and slot >= first else None


def schedule_problem(spec: ETLPipelineSpec) -> SpecProblem | None:
    if spec.schedule is not None and not croniter.is_valid(spec.schedule):
        return SpecProblem(
            "InvalidSpec", "spec.schedule", f"spec.schedule {spec.schedule!r} is not a cron expression"
        )
    return None


# --- tracking the runs that are alive -------------------------------------------------------


def should_retry(outcome: Outcome, spec: ETLPipelineSpec, retries: int) -> tuple[bool, str]:
    """Whether a failed run is restarted, and why not when it is not."""
    policy = spec.restart_policy
    if policy.type == RestartPolicyType.never:
        return False, "restartPolicy is Never"
    if not outcome.retryable:
        return False, f"{outcome.reason} is not retried"
    if policy.type == RestartPolicyType.always:
        return True, ""
    if retries < policy.max_retries:
        return True, ""
    return False, f"maxRetries ({policy.max_retries}) reached"


def _track_runs(
    work: _Work, spec: ETLPipelineSpec, pods: Mapping[int, ObservedRun], rng: random.Random
) -> None:
    for record in list(work.status.runs):
        pod = pods.get(record.run)
        if record.phase == RUN_STOPPING:
            _track_stopping(work, record, pod)
        elif record.phase in _ALIVE:
            _track_alive(work, spec, record, pod, rng)


def _note_last_run(work: _Work, record: RunRecord) -> None:
    """lastRun is the newest run that ended: an older run ending later (Allow, Replace) does not take it."""
    last = work.status.last_run
    if last is None or record.run >= last.run:
        work.update(last_run=record)


def _track_stopping(work: _Work, record: RunRecord, pod: ObservedRun | None) -> None:
    if pod is not None and not pod.driver_terminated:
        if not pod.deleting:
            work.delete(pod.pod, record.reason or "Stopping")
        return
    end = pod.finished_at if pod is not None and pod.finished_at is not None else work.now
    stopped = record.model_copy(
        update={
            "phase": RUN_STOPPED,
            "end_time": format_time(end),
            "exit_code": pod.exit_code if pod is not None else None,
            "metrics": parse_metrics(pod.termination_message) if pod is not None else None,
        }
    )
    work.put_run(stopped)
    _note_last_run(work, stopped)
    work.event("Normal", "RunStopped", f"run {record.run} stopped ({record.reason})", record.run)


def _track_alive(
    work: _Work, spec: ETLPipelineSpec, record: RunRecord, pod: ObservedRun | None, rng: random.Random
) -> None:
    if pod is None:
        launched = parse_time(record.start_time)
        grace_end = launched + timedelta(seconds=POD_MISSING_GRACE_SECONDS) if launched else work.now
        if work.now < grace_end:
            work.wake_at(grace_end)  # the pod list may lag our create: look again, do not fail
            return
        outcome = Outcome(
            False,
            "PodMissing",
            f"driver pod {record.pod} of run {record.run} not found {_seconds(POD_MISSING_GRACE_SECONDS)} "
            "after launch: it was deleted or never created",
            True,
            True,
        )
    else:
        found = classify(pod, work.now, spec)
        if found is None:
            _note_progress(work, spec, record, pod)
            work.wake_at(next_check_at(pod, spec))
            return
        outcome = found
        if not pod.driver_terminated and not pod.deleting:
            work.delete(pod.pod, outcome.reason)
    _complete(work, spec, record, pod, outcome, rng)


def _note_progress(work: _Work, spec: ETLPipelineSpec, record: RunRecord, pod: ObservedRun) -> None:
    phase = RUN_RUNNING if pod.started_at is not None else RUN_PENDING
    if spec.mode == Mode.streaming and phase == RUN_RUNNING:
        if pod.stream_report is not None:
            streaming = streaming_status(work.status.streaming, record.run, pod.stream_report, work.now)
            work.update(streaming=streaming)
        # A driver sends no events as its batches go by: read its progress again soon.
        work.wake_at(work.now + timedelta(seconds=PROGRESS_INTERVAL_SECONDS))
    executors = executor_counts(spec, record, pod)
    if record.phase != phase or record.executors != executors:
        work.put_run(record.model_copy(update={"phase": phase, "executors": executors}))
        if record.phase != phase and phase == RUN_RUNNING:
            work.event("Normal", "RunStarted", f"run {record.run}: driver {pod.pod} is running", record.run)
    if executors is not None and phase == RUN_RUNNING and executors.running < executors.requested:
        # Executor pods send the operator no events: look again until all of them run.
        work.wake_at(work.now + timedelta(seconds=EXECUTOR_RECHECK_SECONDS))


def executor_counts(spec: ETLPipelineSpec, record: RunRecord, pod: ObservedRun) -> ExecutorCounts | None:
    """The run's executors as last seen; None for a run in local mode or not counted."""
    if spec.spark.executors == 0 or pod.executors_running is None:
        return record.executors
    seen = record.executors.max_running if record.executors is not None else 0
    return ExecutorCounts(
        requested=spec.spark.executors,
        running=pod.executors_running,
        max_running=max(seen, pod.executors_running),
    )


def _complete(
    work: _Work,
    spec: ETLPipelineSpec,
    record: RunRecord,
    pod: ObservedRun | None,
    outcome: Outcome,
    rng: random.Random,
) -> None:
    """A run ended: record it, move the circuit, and decide on a retry."""
    end = pod.finished_at if pod is not None and pod.finished_at is not None else work.now
    metrics = parse_metrics(pod.termination_message) if pod is not None else None
    finished = record.model_copy(
        update={
            "phase": RUN_SUCCEEDED if outcome.succeeded else RUN_FAILED,
            "end_time": format_time(end),
            "exit_code": pod.exit_code if pod is not None else None,
            "reason": outcome.reason,
            "message": outcome.message,
            "metrics": metrics,
        }
    )
    work.put_run(finished)
    _note_last_run(work, finished)
    circuit = work.status.circuit or CircuitStatus()
    breaker = spec.error_handling.circuit_breaker
    if outcome.succeeded:
        if circuit.state != CircuitState.closed:
            work.event("Normal", "CircuitClosed", f"run {record.run} succeeded: circuit closed", record.run)
        high_water_mark = metrics.high_water_mark if metrics and metrics.high_water_mark else None
        work.update(
            circuit=record_success(circuit),
            retries=0,
            backoff_until=None,
            high_water_mark=high_water_mark or work.status.high_water_mark,
        )
        loaded = f", {metrics.records_loaded} records loaded" if metrics else ""
        work.event("Normal", "RunSucceeded", f"run {record.run} succeeded{loaded}", record.run)
        return
    opened = record_failure(circuit, breaker, work.now)
    work.update(circuit=opened)
    if opened.state == CircuitState.open and circuit.state != CircuitState.open:
        until = reset_at(opened, breaker)
        work.event(
            "Warning",
            "CircuitOpened",
            f"circuit opened after {opened.consecutive_failures} consecutive failed runs; "
            f"no launches before {format_time(until) if until else 'reset'}",
        )
    retry, why_not = should_retry(outcome, spec, work.status.retries)
    if retry and record.run == work.status.run_count:
        delay = backoff_delay(work.status.retries, spec.restart_policy, rng)
        retries = work.status.retries + 1
        work.update(
            retries=retries, backoff_until=format_time(_ceil_to_second(work.now + timedelta(seconds=delay)))
        )
        limit = (
            ""
            if spec.restart_policy.type == RestartPolicyType.always
            else f" of {spec.restart_policy.max_retries}"
        )
        work.event(
            "Warning",
            "RunFailed",
            f"run {record.run} failed ({outcome.reason}): {outcome.message}; retry {retries}{limit} "
            f"in {_seconds(delay)}",
            record.run,
        )
    else:
        work.update(backoff_until=None)
        suffix = f"; not retried: {why_not}" if why_not else ""
        work.event(
            "Warning",
            "RunFailed",
            f"run {record.run} failed ({outcome.reason}): {outcome.message}{suffix}",
            record.run,
        )


# --- launching ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trigger:
    """Why a run is wanted. A fresh trigger (generation, rerun, slot) resets the retry count."""

    why: str
    fresh: bool
    user: bool = False
    slot: datetime | None = None
    rerun: str | None = None
    #: A replay run: `replay_token` is the annotation's new value (None for a replay's retry).
    replay: bool = False
    replay_token: str | None = None


def _stop(work: _Work, record: RunRecord, reason: str, message: str) -> None:
    work.put_run(record.model_copy(update={"phase": RUN_STOPPING, "reason": reason, "message": message}))
    if record.pod:
        work.delete(record.pod, reason)
    work.event("Normal", "RunStopping", f"stopping run {record.run} ({reason}): {message}", record.run)


def _launch(work: _Work, trigger: _Trigger) -> None:
    view = work.pipeline
    run = work.status.run_count + 1
    record = RunRecord(
        run=run,
        pod=driver_pod_name(view.name, run),
        generation=view.generation,
        start_time=format_time(work.now),
        phase=RUN_PENDING,
        secrets_version=view.secrets_version,
        trace_id=trace_id(view.uid, run),
        replay=True if trigger.replay else None,
    )
    work.put_run(record)
    changes: dict[str, object] = {"run_count": run, "backoff_until": None}
    if trigger.fresh:
        changes["retries"] = 0
    if trigger.slot is not None:
        changes["last_schedule_time"] = format_time(trigger.slot)
    if trigger.rerun is not None:
        changes["rerun_token"] = trigger.rerun
    if trigger.replay_token is not None:
        changes["replay_token"] = trigger.replay_token
    work.update(**changes)
    work.actions.append(LaunchRun(run=run, generation=view.generation, replay=trigger.replay))
    work.event("Normal", "RunLaunched", f"run {run} ({record.pod}) launched: {trigger.why}", run)
    work.wake_at(work.now + timedelta(seconds=POD_MISSING_GRACE_SECONDS))


def _slot_free(work: _Work, trigger: _Trigger) -> bool:
    """The operator's limit of concurrent runs: a due run waits for a slot, its trigger kept."""
    if work.pipeline.launch_allowed:
        return True
    work.queued = trigger.why
    work.wake_at(work.now + timedelta(seconds=QUEUED_RECHECK_SECONDS))
    return False


def _circuit_allows(work: _Work, spec: ETLPipelineSpec, trigger: _Trigger, active_trials: int) -> bool:
    """Ask the breaker. A user's action (new spec generation, rerun annotation) turns an open
    circuit half-open at once: the change is the fix being tried, so it gets its one trial run."""
    breaker = spec.error_handling.circuit_breaker
    circuit = work.status.circuit or CircuitStatus()
    if trigger.user and breaker.enabled and circuit.state == CircuitState.open:
        circuit = circuit.model_copy(update={"state": CircuitState.half_open})
        work.update(circuit=circuit)
        work.event("Normal", "CircuitHalfOpen", f"circuit half-open: one trial run for {trigger.why}")
        active_trials = 0
    allowed, circuit = may_launch(circuit, breaker, work.now, active_trials)
    work.update(circuit=circuit)
    if not allowed:
        work.wake_at(reset_at(circuit, breaker))
    return allowed


def _tick_circuit(work: _Work, spec: ETLPipelineSpec) -> None:
    """An open circuit whose resetTimeoutSeconds have passed is half-open, whether or not a run is due."""
    breaker = spec.error_handling.circuit_breaker
    circuit = work.status.circuit or CircuitStatus()
    _, after = may_launch(circuit, breaker, work.now)
    if after.state != circuit.state:
        work.update(circuit=after)
        work.event(
            "Normal",
            "CircuitHalfOpen",
            f"circuit half-open after {breaker.reset_timeout_seconds}s: one trial run allowed",
        )


def _retry_trigger(work: _Work) -> _Trigger | None:
    """A restart owed after a failure, once its backoff has passed."""
    until = parse_time(work.status.backoff_until)
    if until is None:
        return None
    if work.now < until:
        work.wake_at(until)
        return None
    # A failed replay is retried as a replay: it takes the letters it did not mark.
    last = work.status.runs[0] if work.status.runs else None
    return _Trigger(
        f"retry {work.status.retries} after backoff", fresh=False, replay=bool(last and last.replay)
    )


def _rerun_value(view: PipelineView) -> str | None:
    value = view.annotations.get(ANNOTATION_RERUN)
    return value if value and value != view.status.rerun_token else None


def _replay_value(view: PipelineView) -> str | None:
    value = view.annotations.get(ANNOTATION_REPLAY)
    return value if value and value != view.status.replay_token else None


def _launch_streaming(work: _Work, spec: ETLPipelineSpec, rerun: str | None) -> None:
    view = work.pipeline
    runs = work.status.runs
    alive = [r for r in runs if r.phase in _ALIVE]
    if alive:
        driver = alive[0]
        if driver.generation != view.generation:
            _stop(
                work,
                driver,
                "SpecChanged",
                f"spec generation {view.generation} replaces the driver gracefully",
            )
        elif rerun is not None:
            _stop(work, driver, "RerunRequested", f"{ANNOTATION_RERUN}={rerun} restarts the driver")
            work.update(rerun_token=rerun)
        elif _secrets_changed(driver, view):
            _stop(work, driver, "SecretChanged", "a referenced Secret changed: the driver restarts with it")
        elif spec.secret_refs():
            work.wake_at(work.now + timedelta(seconds=view.secrets_recheck_seconds))
        return
    if any(r.phase == RUN_STOPPING for r in runs):
        return  # one driver at a time: the old one finishes its graceful stop first
    newest = runs[0] if runs else None
    trigger: _Trigger | None
    if newest is None:
        trigger = _Trigger("first driver", fresh=True, user=True)
    elif newest.generation != view.generation:
        trigger = _Trigger(f"spec generation {view.generation}", fresh=True, user=True)
    elif rerun is not None:
        trigger = _Trigger(f"{ANNOTATION_RERUN}={rerun}", fresh=True, user=True, rerun=rerun)
    elif work.status.backoff_until is not None:
        trigger = _retry_trigger(work)
    elif newest.phase == RUN_STOPPED:
        trigger = _Trigger("driver restarted after it was stopped", fresh=True)
    elif newest.phase == RUN_SUCCEEDED and spec.restart_policy.type != RestartPolicyType.never:
        trigger = _Trigger("driver ended: a streaming pipeline keeps one driver running", fresh=False)
    else:
        trigger = None
    if trigger is not None and _slot_free(work, trigger) and _circuit_allows(work, spec, trigger, 0):
        _launch(work, trigger)


def _secrets_changed(driver: RunRecord, view: PipelineView) -> bool:
    """Both versions known and different; a driver launched before versions were kept is left be."""
    return None not in (driver.secrets_version, view.secrets_version) and (
        driver.secrets_version != view.secrets_version
    )


def _batch_trigger(work: _Work, spec: ETLPipelineSpec, rerun: str | None) -> _Trigger | None:
    view = work.pipeline
    if rerun is not None:
        return _Trigger(f"{ANNOTATION_RERUN}={rerun}", fresh=True, user=True, rerun=rerun)
    replay = _replay_value(view)
    if replay is not None:
        return _Trigger(
            f"{ANNOTATION_REPLAY}={replay}", fresh=True, user=True, replay=True, replay_token=replay
        )
    if spec.schedule is None:
        # A replay is no run of the spec: the generation still gets its own.
        newest = next((record for record in work.status.runs if not record.replay), None)
        if newest is None or newest.generation != view.generation:
            return _Trigger(f"spec generation {view.generation}", fresh=True, user=True)
    else:
        slot = due_slot(
            spec.schedule, work.now, work.status.last_schedule_time, view.created_at, view.status.next_run_at
        )
        if slot is not None:
            return _Trigger(f"schedule slot {format_time(slot)}", fresh=True, slot=slot)
    return _retry_trigger(work)


def _launch_batch(work: _Work, spec: ETLPipelineSpec, rerun: str | None) -> None:
    trigger = _batch_trigger(work, spec, rerun)
    if trigger is None:
        return
    alive = [r for r in work.status.runs if r.phase in _ALIVE]
    if alive and spec.concurrency_policy != ConcurrencyPolicy.ALLOW:
        if spec.concurrency_policy == ConcurrencyPolicy.REPLACE and trigger.fresh:
            for record in alive:
                _stop(work, record, "Replaced", f"concurrencyPolicy Replace: {trigger.why}")
        elif trigger.slot is not None:
            work.update(last_schedule_time=format_time(trigger.slot))
            work.event(
                "Normal",
                "RunSkipped",
                f"{trigger.why} skipped: run {alive[0].run} still runs (concurrencyPolicy Forbid)",
            )
            return
        else:
            return  # a spec generation or rerun waits for the running run to end
    if not _slot_free(work, trigger):
        return
    active_trials = len(alive) if spec.concurrency_policy == ConcurrencyPolicy.ALLOW else 0
    if _circuit_allows(work, spec, trigger, active_trials):
        _launch(work, trigger)
    elif trigger.slot is not None:
        work.update(last_schedule_time=format_time(trigger.slot))
        work.event("Warning", "RunSkipped", f"{trigger.why} skipped: circuit open")


# --- cleanup and the summary in status ------------------------------------------------------


def _clean_up_history(work: _Work, spec: ETLPipelineSpec, observed: Sequence[ObservedRun]) -> None:
    """Delete driver pods of finished runs beyond successfulRunsHistoryLimit / failedRunsHistoryLimit."""
    live = {r.run for r in work.status.runs if r.phase in _ALIVE or r.phase == RUN_STOPPING}
    finished = sorted(
        (p for p in observed if p.driver_terminated and not p.deleting and p.run not in live),
        key=lambda p: p.run,
        reverse=True,
    )
    succeeded = [p for p in finished if p.exit_code == 0 or (p.exit_code is None and p.phase == "Succeeded")]
    failed = [p for p in finished if p not in succeeded]
    for pods, limit in (
        (succeeded, spec.successful_runs_history_limit),
        (failed, spec.failed_runs_history_limit),
    ):
        for pod in pods[limit:]:
            work.delete(pod.pod, "HistoryLimit")


def _phase(work: _Work, spec: ETLPipelineSpec | None, problems: Sequence[SpecProblem]) -> Phase:
    status = work.status
    alive = [r for r in status.runs if r.phase in _ALIVE]
    circuit = status.circuit or CircuitStatus()
    if spec is not None and spec.suspend:
        return Phase.suspended
    if alive:
        return Phase.running if any(r.phase == RUN_RUNNING for r in alive) else Phase.pending
    if problems:
        return Phase.failed
    if work.queued is not None:
        return Phase.pending
    if circuit.state == CircuitState.open:
        return Phase.circuit_open
    if status.backoff_until is not None:
        return Phase.backoff
    last = status.last_run
    if last is None or last.phase == RUN_STOPPED:
        return Phase.pending
    return Phase.succeeded if last.phase == RUN_SUCCEEDED else Phase.failed


def _set_condition(
    conditions: Sequence[Condition],
    type_: str,
    true: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """Replace one condition, keeping lastTransitionTime unless its status changes."""
    status: Literal["True", "False"] = "True" if true else "False"
    old = next((c for c in conditions if c.type == type_), None)
    transition = old.last_transition_time if old is not None and old.status == status else format_time(now)
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    return [*(c for c in conditions if c.type != type_), new]


def _conditions(
    work: _Work, spec: ETLPipelineSpec | None, problems: Sequence[SpecProblem], phase: Phase
) -> list[Condition]:
    status, view, now = work.status, work.pipeline, work.now
    alive = [r for r in status.runs if r.phase in _ALIVE]
    last = status.last_run
    problem_message = "; ".join(p.message for p in problems)
    ready: tuple[bool, str, str]
    if problems:
        ready = (False, problems[0].kind, problem_message)
    elif work.queued is not None and not alive:
        ready = (False, "Queued", _queued_message(work.queued))
    elif spec is not None and spec.mode == Mode.streaming:
        running = next((r for r in alive if r.phase == RUN_RUNNING), None)
        stream = status.streaming
        if running is not None and stream is not None and stream.run == running.run and stream.stalled:
            ready = (False, "StreamStalled", f"run {running.run}: {stream.message}")
        elif running is not None:
            ready = (True, "DriverRunning", f"run {running.run}: driver {running.pod} is running")
        else:
            ready = (False, "DriverNotRunning", _why_not_ready(status, phase))
    elif (
        last is not None
        and last.phase == RUN_SUCCEEDED
        and ((spec is not None and spec.schedule is not None) or last.generation == view.generation)
    ):
        ready = (True, "RunSucceeded", f"run {last.run} succeeded")
    elif spec is not None and spec.schedule is not None and last is None and phase == Phase.pending:
        # Set up and waiting for its first slot: nothing to wait for (kstatus reads Ready=False
        # as InProgress, which would hold a Flux Kustomization until the first slot).
        ready = (True, "Scheduled", f"first run at {status.next_run_at}")
    else:
        ready = (False, "RunInProgress" if alive else phase.value, _why_not_ready(status, phase))
    conditions = _set_condition(status.conditions, "Ready", *ready, now, view.generation)
    running_condition: tuple[bool, str, str]
    if alive:
        newest = alive[0]
        running_condition = (True, "RunActive", f"run {newest.run} ({newest.pod}) is {newest.phase}")
    else:
        running_condition = (False, "NoActiveRun", "no run is active")
    conditions = _set_condition(conditions, "Running", *running_condition, now, view.generation)
    degraded: tuple[bool, str, str]
    if problems:
        degraded = (True, problems[0].kind, problem_message)
    elif phase == Phase.circuit_open:
        degraded = (True, "CircuitOpen", _why_not_ready(status, phase))
    elif phase in (Phase.backoff, Phase.failed) and last is not None:
        degraded = (True, last.reason or "RunFailed", _why_not_ready(status, phase))
    else:
        degraded = (False, "AsExpected", "")
    conditions = _set_condition(conditions, "Degraded", *degraded, now, view.generation)
    # kstatus' own pair, read by Flux and the Argo CD health script.
    reconciling, stalled = gitops_conditions(
        status,
        phase,
        spec.mode if spec is not None else None,
        [Problem(p.kind, p.message) for p in problems],
        work.queued,
        view.generation,
    )
    for type_, verdict in (("Reconciling", reconciling), ("Stalled", stalled)):
        conditions = _set_condition(
            conditions, type_, verdict.true, verdict.reason, verdict.message, now, view.generation
        )
    return conditions


def _queued_message(why: str) -> str:
    return f"{why}: waiting for a free run slot (the operator's limit of concurrent runs is reached)"


def _why_not_ready(status: ETLPipelineStatus, phase: Phase) -> str:
    last = status.last_run
    last_text = f"run {last.run} {last.phase} ({last.reason}): {last.message}" if last else "no run yet"
    if phase == Phase.circuit_open and status.circuit is not None:
        return (
            f"circuit open after {status.circuit.consecutive_failures} consecutive failed runs; {last_text}"
        )
    if phase == Phase.backoff:
        return f"retry {status.retries} at {status.backoff_until}; {last_text}"
    if phase == Phase.suspended:
        return "suspended"
    return last_text


def _settle(
    work: _Work, spec: ETLPipelineSpec | None, problems: Sequence[SpecProblem], previous: ETLPipelineStatus
) -> None:
    """Phase, conditions, current run and transition events, from the runs as they now stand."""
    phase = _phase(work, spec, problems)
    alive = [r for r in work.status.runs if r.phase in _ALIVE]
    work.update(
        phase=phase,
        current_run=alive[0] if alive else None,
        observed_generation=work.pipeline.generation,
        circuit=work.status.circuit or CircuitStatus(),
    )
    work.update(conditions=_conditions(work, spec, problems, phase))
    if phase == Phase.suspended and previous.phase != Phase.suspended:
        work.event("Normal", "Suspended", "spec.suspend is true: no new runs")
    elif previous.phase == Phase.suspended and phase != Phase.suspended:
        work.event("Normal", "Resumed", "spec.suspend is false: runs resume")
    old_ready = next((c for c in previous.conditions if c.type == "Ready"), None)
    reported = (old_ready.reason, old_ready.message) if old_ready is not None else None
    if problems and reported != (problems[0].kind, "; ".join(p.message for p in problems)):
        for problem in problems:
            work.event("Warning", problem.kind, problem.message)
    if work.queued is not None and (reported is None or reported[0] != "Queued"):
        work.event("Normal", "RunQueued", _queued_message(work.queued))
    work.wake_at(parse_time(work.status.backoff_until))
    if spec is not None:
        work.wake_at(reset_at(work.status.circuit or CircuitStatus(), spec.error_handling.circuit_breaker))
    work.wake_at(parse_time(work.status.next_run_at))


def _requeue_after(work: _Work) -> float | None:
    # Only times still ahead: whatever is due now has been acted on, and a past time would spin.
    future = [(when - work.now).total_seconds() for when in work.wakeups if when > work.now]
    return min(future) if future else None


# --- the entry point ------------------------------------------------------------------------


def reconcile(
    pipeline: PipelineView,
    observed: Sequence[ObservedRun],
    problems: Sequence[SpecProblem],
    now: datetime,
    rng: random.Random,
) -> Decision:
    """Decide what to do for one pipeline now. `observed` are its driver pods as the API lists them
    now; `problems` keep it from launching (Ready=False) but runs already alive are still tracked."""
    work = _Work(pipeline=pipeline, now=now, status=pipeline.status)
    spec = pipeline.spec
    problems = list(problems)
    if spec is None:
        if not problems:
            problems.append(SpecProblem("InvalidSpec", "spec", "spec does not match the ETLPipeline schema"))
        _settle(work, None, problems, pipeline.status)
        return Decision(work.actions, work.status, _requeue_after(work))
    cron_problem = schedule_problem(spec)
    if cron_problem is not None:
        problems.append(cron_problem)
    pods: dict[int, ObservedRun] = {}
    for pod in observed:
        pods.setdefault(pod.run, pod)
    _tick_circuit(work, spec)
    _track_runs(work, spec, pods, rng)
    if spec.schedule is not None and cron_problem is None:
        work.update(next_run_at=format_time(next_slot(spec.schedule, now)))
    elif spec.schedule is None:
        work.update(next_run_at=None)
    if problems:
        pass  # nothing launches until the spec or the Secret is fixed
    elif spec.suspend:
        if spec.mode == Mode.streaming:
            for record in [r for r in work.status.runs if r.phase in _ALIVE]:
                _stop(work, record, "Suspended", "spec.suspend is true")
    elif spec.mode == Mode.streaming:
        _launch_streaming(work, spec, _rerun_value(pipeline))
    else:
        _launch_batch(work, spec, _rerun_value(pipeline))
    _clean_up_history(work, spec, observed)
    _settle(work, spec, problems, pipeline.status)
    return Decision(work.actions, work.status, _requeue_after(work))
