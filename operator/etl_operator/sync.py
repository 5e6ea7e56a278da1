"""One pass for one pipeline: read what the API says now, decide (reconcile, pure), act.

Everything here is I/O at the edges around reconcile(); it runs in a worker thread, one pass
per pipeline at a time (see workqueue.py)."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from etl_job.contract import ETLPipelineSpec, ETLPipelineStatus, Mode, RunRecord, field_path
from etl_operator import kube_io, logs, naming
from etl_operator.capacity import RunSlots
from etl_operator.driver_progress import fetch_progress
from etl_operator.metrics import OperatorMetrics, launch_due_at
from etl_operator.observe import ObservedRun, observe_pod, parse_time
from etl_operator.reconcile import (
    Decision,
    DeletePod,
    EmitEvent,
    LaunchRun,
    PipelineView,
    SpecProblem,
    reconcile,
)
from etl_operator.render import OperatorDefaults, PipelineRef, RenderError, render_run

log = logging.getLogger("etl_operator.sync")


@dataclass(frozen=True)
class SyncResult:
    #: Seconds until this pipeline needs another pass (a backoff, a schedule, a timeout).
    requeue_after: float | None
    launched: tuple[int, ...] = ()


def sync_pipeline(
    api: client.ApiClient,
    defaults: OperatorDefaults,
    namespace: str,
    name: str,
    now: datetime,
    rng: random.Random,
    slots: RunSlots | None = None,
    secrets_recheck_seconds: float = 60.0,
    metrics: OperatorMetrics | None = None,
) -> SyncResult:
    body = kube_io.read_pipeline(api, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        if metrics is not None:
            metrics.forget(namespace, name)
        return SyncResult(None)  # owned objects go with it through their ownerReferences
    spec, problems = parse_spec(body)
    secrets_version = None
    if spec is not None:
        problems += secret_problems(kube_io.missing_secret_keys(api, namespace, spec.secret_refs()))
        problems += render_problems(body, spec, defaults)
        if spec.mode == Mode.streaming and spec.secret_refs():
            secrets_version = kube_io.secret_fingerprint(api, namespace, spec.secret_refs())
    view = replace(
        pipeline_view(body, spec),
        secrets_version=secrets_version,
        secrets_recheck_seconds=secrets_recheck_seconds,
    )
    observed = []
    for pod in kube_io.list_run_pods(api, namespace, name):
        try:
            observed.append(observe_pod(pod))
        except ValueError as unreadable:  # a pod with our labels edited by hand: report, skip
            log.warning(
                "pipeline %s/%s: ignoring pod %s: %s", namespace, name, pod["metadata"]["name"], unreadable
            )
    if spec is not None and spec.spark.executors > 0 and any(not run.driver_terminated for run in observed):
        observed = with_executor_counts(observed, kube_io.list_executor_pods(api, namespace, name))
    if spec is not None and spec.mode == Mode.streaming and spec.streaming is not None:
        observed = with_stream_reports(observed, spec.streaming.health_port)
    decision = reconcile(view, observed, problems, now, rng)
    taken = _take_slots(slots, namespace, decision)
    if taken is None:
        decision = reconcile(replace(view, launch_allowed=False), observed, problems, now, rng)
        if slots is not None:
            slots.wait((namespace, name))
    launched: list[int] = []
    launch_latencies: list[float] = []
    due_at = launch_due_at(body, view.status, decision.status)
    for action in decision.actions:
        if isinstance(action, LaunchRun) and spec is not None:
            try:
                launch(api, body, spec, defaults, action)
            except ApiException as refused:
                # Nothing is recorded as launched: the pass fails and is retried, and the
                # reason (a missing ServiceAccount, a quota, an admission webhook) is an event.
                kube_io.emit_event(api, body, "Warning", "LaunchFailed", api_message(refused))
                if slots is not None:
                    for held in taken or ():
                        slots.give_back(held)
                raise
            launched.append(action.run)
            if due_at is not None:
                launch_latencies.append(max(0.0, (datetime.now(UTC) - due_at).total_seconds()))
        elif isinstance(action, DeletePod):
            kube_io.delete_pod(api, namespace, action.name)
        elif isinstance(action, EmitEvent):
            kube_io.emit_event(api, body, action.type, action.reason, action.message)
            record = _run_record(decision, action.run) if action.run is not None else None
            log.log(
                logging.WARNING if action.type == "Warning" else logging.INFO,
                "%s: %s",
                action.reason,
                action.message,
                extra=logs.run_labels(namespace, name, record, view.generation),
            )
    kube_io.patch_status(api, namespace, name, status_patch(decision.status))
    if metrics is not None:
        metrics.observe_pass(
            namespace, name, view.status, decision.status, observed, len(launched), launch_latencies
        )
    return SyncResult(decision.requeue_after, tuple(launched))


def _run_record(decision: Decision, run: int | None) -> RunRecord | None:
    return next((r for r in decision.status.runs if r.run == run), None)


def with_executor_counts(
    observed: Sequence[ObservedRun], executor_pods: Sequence[Mapping[str, Any]]
) -> list[ObservedRun]:
    """Each observed run with the number of its executor pods that run now."""
    running: dict[str, int] = {}
    for pod in executor_pods:
        if pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
            run = pod["metadata"].get("labels", {}).get(naming.LABEL_RUN, "")
            running[run] = running.get(run, 0) + 1
    return [replace(run, executors_running=running.get(str(run.run), 0)) for run in observed]


def with_stream_reports(observed: Sequence[ObservedRun], port: int) -> list[ObservedRun]:
    """Each running streaming driver with its answer to GET /progress."""
    return [
        replace(run, stream_report=fetch_progress(run.pod_ip, port))
        if run.phase == "Running" and run.pod_ip and not run.driver_terminated and not run.deleting
        else run
        for run in observed
    ]


def _take_slots(slots: RunSlots | None, namespace: str, decision: Decision) -> list[str] | None:
    """A slot for each driver the decision launches; None (and none kept) when they do not all fit."""
    pods = [
        f"{namespace}/{record.pod}"
        for action in decision.actions
        if isinstance(action, LaunchRun)
        for record in decision.status.runs
        if record.run == action.run
    ]
    if slots is None or not pods:
        return pods
    taken: list[str] = []
    for pod in pods:
        if not slots.try_take(pod):
            for held in taken:
                slots.give_back(held)
            return None
        taken.append(pod)
    return taken


def parse_spec(body: Mapping[str, Any]) -> tuple[ETLPipelineSpec | None, list[SpecProblem]]:
    """The spec, or the problems that name each bad field (the CRD catches most at apply)."""
    try:
        return ETLPipelineSpec.model_validate(body.get("spec") or {}), []
    except ValidationError as invalid:
        problems = [
            SpecProblem("InvalidSpec", "spec." + field_path(tuple(error["loc"])) if error["loc"] else "spec",
                        error["msg"].removeprefix("Value error, "))
            for error in invalid.errors()
        ]  # fmt: skip
        return None, problems


def secret_problems(messages: Sequence[str]) -> list[SpecProblem]:
    return [SpecProblem("SecretMissing", "credentialsRef", message) for message in messages]


def render_problems(
    body: Mapping[str, Any], spec: ETLPipelineSpec, defaults: OperatorDefaults
) -> list[SpecProblem]:
    """A pod template or Spark conf the operator refuses is a spec problem, found before any launch."""
    try:
        render_run(pipeline_ref(body, spec), 0, defaults)
    except RenderError as refused:
        return [SpecProblem("InvalidSpec", refused.field, str(refused))]
    return []


def pipeline_view(body: Mapping[str, Any], spec: ETLPipelineSpec | None) -> PipelineView:
    metadata = body["metadata"]
    created = metadata.get("creationTimestamp")
    return PipelineView(
        name=metadata["name"],
        namespace=metadata["namespace"],
        generation=int(metadata.get("generation", 1)),
        spec=spec,
        status=ETLPipelineStatus.model_validate(body.get("status") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        created_at=parse_time(created) if created else None,
        uid=str(metadata.get("uid", "")),
    )


def pipeline_ref(body: Mapping[str, Any], spec: ETLPipelineSpec) -> PipelineRef:
    metadata = body["metadata"]
    return PipelineRef(
        name=metadata["name"],
        namespace=metadata["namespace"],
        uid=metadata["uid"],
        generation=int(metadata.get("generation", 1)),
        spec=spec,
        high_water_mark=(body.get("status") or {}).get("highWaterMark"),
    )


def launch(
    api: client.ApiClient,
    body: Mapping[str, Any],
    spec: ETLPipelineSpec,
    defaults: OperatorDefaults,
    action: LaunchRun,
) -> None:
    """Create the run's objects; an existing one of the same name is ours already."""
    ref = pipeline_ref(body, spec)
    manifests = render_run(
        replace(ref, generation=action.generation, replay=action.replay), action.run, defaults
    )
    namespace = ref.namespace
    kube_io.create_if_absent(api, namespace, manifests.config_map)
    if manifests.service is not None:
        kube_io.create_if_absent(api, namespace, manifests.service)
    created = kube_io.create_if_absent(api, namespace, manifests.pod)
    labels = {
        "pipeline": ref.name,
        "namespace": namespace,
        "run": naming.run_name(ref.name, action.run),
        "generation": action.generation,
        "traceId": naming.trace_id(ref.uid, action.run),
    }
    log.info(
        "pipeline %s/%s: run %d %s",
        namespace,
        ref.name,
        action.run,
        "created" if created else "found",
        extra=labels,
    )


def status_patch(status: ETLPipelineStatus) -> dict[str, Any]:
    """The whole status; fields now empty are sent as null, which a merge patch removes."""
    return status.model_dump(mode="json", by_alias=True)


def api_message(refused: ApiException) -> str:
    """The API server's own message for a refused request, else its status line."""
    try:
        return str(json.loads(refused.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{refused.status} {refused.reason}"
