"""Names and labels of what the operator creates for a pipeline's runs.

Names are derived from the pipeline and the run number only, so an operator that restarts
finds the pods it made (AlreadyExists means "already mine") instead of creating twins."""

from __future__ import annotations

import hashlib

GROUP = "etl.sparkops.io"

#: Labels on every object the operator creates for a run.
LABEL_PIPELINE = f"{GROUP}/pipeline"
LABEL_RUN = f"{GROUP}/run"
LABEL_GENERATION = f"{GROUP}/generation"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "sparkops-etl"

#: Annotations users set on an ETLPipeline.
ANNOTATION_RERUN = f"{GROUP}/rerun"
#: A new value starts one replay run: `etl replay` of the pipeline's dead letters.
ANNOTATION_REPLAY = f"{GROUP}/replay"

#: Name of the driver container in the pod; a pod template addresses it by this name.
DRIVER_CONTAINER = "driver"

_MAX_NAME = 63


def _bounded(name: str, limit: int = _MAX_NAME) -> str:
    """`name` if it fits a DNS label, else a prefix and a stable hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def run_name(pipeline: str, run: int) -> str:
    """Base name of one run's objects: `<pipeline>-run-<n>`, bounded to 63 characters
    with the suffixes below added."""
    return _bounded(f"{pipeline}-run-{run}", _MAX_NAME - len("-driver-svc"))


def trace_id(pipeline_uid: str, run: int) -> str:
    """The run's trace id, a W3C trace-id (32 hex digits): derived from the pipeline's uid and the
    run number, so every operator replica, before and after a restart, names a run alike."""
    return hashlib.sha256(f"{pipeline_uid}/{run}".encode()).hexdigest()[:32]


def driver_pod_name(pipeline: str, run: int) -> str:
    return f"{run_name(pipeline, run)}-driver"


def driver_service_name(pipeline: str, run: int) -> str:
    return f"{run_name(pipeline, run)}-driver-svc"


def config_map_name(pipeline: str, run: int) -> str:
    return f"{run_name(pipeline, run)}-config"


def run_labels(pipeline: str, run: int, generation: int) -> dict[str, str]:
    return {
        LABEL_PIPELINE: _bounded(pipeline),
        LABEL_RUN: str(run),
        LABEL_GENERATION: str(generation),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: "driver",
    }


def executor_labels(pipeline: str, run: int) -> dict[str, str]:
    """Labels of a run's executor pods. Without the managed-by label: Spark manages them, and
    the operator watches only the pods it made."""
    return {LABEL_PIPELINE: _bounded(pipeline), LABEL_RUN: str(run), LABEL_COMPONENT: "executor"}


def executor_selector(pipeline: str) -> str:
    """Label selector of the executor pods of every run of one pipeline."""
    return f"{LABEL_PIPELINE}={_bounded(pipeline)},{LABEL_COMPONENT}=executor"


def pipeline_selector(pipeline: str) -> str:
    """Label selector of every run object of one pipeline."""
    return f"{LABEL_PIPELINE}={_bounded(pipeline)},{LABEL_MANAGED_BY}={MANAGED_BY}"
