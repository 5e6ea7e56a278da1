"""The job's logging: one JSON object per line in pods, short text lines on a terminal.

Every JSON line carries the run's labels (pipeline, namespace, run, generation, traceId), which the
operator hands the driver in its environment, so the operator's lines about a run and the driver's
own, Python's and the JVM's alike (log4j2/json.properties), are found by one query."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LogFormat = Literal["json", "text"]

#: The operator's environment of a driver pod (etl_operator.render.driver_env).
ENV_FORMAT = "ETL_LOG_FORMAT"
ENV_PIPELINE = "ETL_PIPELINE"
ENV_NAMESPACE = "POD_NAMESPACE"
ENV_RUN = "ETL_RUN_ID"
ENV_GENERATION = "ETL_GENERATION"
ENV_TRACE = "ETL_TRACE_ID"

#: Spark's log4j2 settings, shipped in this package: JSON lines with every label (a pod), JSON
#: lines with the labels a local run has, and text.
JVM_LOG_CONFIGS = {
    name: Path(__file__).parent / "log4j2" / f"{name}.properties" for name in ("json", "json-local", "text")
}

#: Fields a log call may pass in `extra`, copied into the JSON line under these names.
_EXTRA_FIELDS = {
    "pipeline": "pipelineId",
    "stage": "stage",
    "recordsLoaded": "recordsLoaded",
    "duration": "duration",
    "metrics": "metrics",
    "exitCode": "exitCode",
    "reason": "reason",
    "batchId": "batchId",
    "batch": "batch",
    "progress": "progress",
    "breaker": "breaker",
}


@dataclass(frozen=True)
class RunLabels:
    """What names a run on every line: the operator's labels, or the pipeline's name alone."""

    pipeline: str
    namespace: str | None = None
    run: str | None = None
    generation: str | None = None
    trace_id: str | None = None

    @classmethod
    def from_env(cls, pipeline: str, env: Mapping[str, str], run: str | None = None) -> RunLabels:
        return cls(
            pipeline=env.get(ENV_PIPELINE) or pipeline,
            namespace=env.get(ENV_NAMESPACE) or None,
            run=env.get(ENV_RUN) or run,
            generation=env.get(ENV_GENERATION) or None,
            trace_id=env.get(ENV_TRACE) or None,
        )

    def fields(self) -> dict[str, str]:
        named = {
            "pipeline": self.pipeline,
            "namespace": self.namespace,
            "run": self.run,
            "generation": self.generation,
            "traceId": self.trace_id,
        }
        return {key: value for key, value in named.items() if value}

    def env(self) -> dict[str, str]:
        """The labels as the environment the JVM's log layout reads (json.properties)."""
        named = {
            ENV_PIPELINE: self.pipeline,
            ENV_NAMESPACE: self.namespace,
            ENV_RUN: self.run,
            ENV_GENERATION: self.generation,
            ENV_TRACE: self.trace_id,
        }
        return {key: value for key, value in named.items() if value}


def jvm_log_config(log_format: LogFormat, labels: RunLabels) -> Path:
    """Spark's log4j2 settings for the run: a label in the JVM's layout may not come out blank,
    so JSON lines name every label only where the operator has set them all."""
    if log_format == "text":
        return JVM_LOG_CONFIGS["text"]
    complete = labels.run and labels.namespace and labels.generation and labels.trace_id
    return JVM_LOG_CONFIGS["json" if complete else "json-local"]


def choose_format(flag: str | None, env: Mapping[str, str], structured: bool | None, tty: bool) -> LogFormat:
    """--log-format, else $ETL_LOG_FORMAT, else the spec's logging.structured when it is set,
    else text on a terminal and JSON anywhere else (a pod, a CI log, a file)."""
    for choice in (flag, env.get(ENV_FORMAT)):
        if choice in ("json", "text"):
            return "json" if choice == "json" else "text"
    if structured is not None:
        return "json" if structured else "text"
    return "text" if tty else "json"


class JsonFormatter(logging.Formatter):
    """A line in the structured format of the older framework's logs (timestamp, level, thread,
    logger, message, pipelineId, executionId, ...), so the queries its users wrote keep working,
    and the run's labels (RunLabels) on every line."""

    def __init__(self, execution_id: str | None = None, labels: RunLabels | None = None) -> None:
        super().__init__()
        self.execution_id = execution_id
        self.labels = labels.fields() if labels is not None else {}

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        document = {
            "timestamp": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "thread": record.threadName,
            "logger": record.name,
            "message": record.getMessage(),
            **self.labels,
        }
        for key, name in _EXTRA_FIELDS.items():
            if hasattr(record, key):
                document[name] = getattr(record, key)
            if key == "pipeline" and self.execution_id:
                document["executionId"] = self.execution_id
        if record.exc_info and record.levelno >= logging.ERROR:
            document["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(document, default=str)


def configure(
    level: str, log_format: LogFormat, execution_id: str | None = None, labels: RunLabels | None = None
) -> None:
    """Log at `level` to stderr in `log_format`; the labels go on every JSON line, and into the
    environment the JVM inherits, for Spark's lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(execution_id, labels)
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if labels is not None:
        for key, value in labels.env().items():
            os.environ.setdefault(key, value)
    # py4j logs every gateway call at INFO, and its clean shutdown ("Closing down clientserver
    # connection", "Error while receiving") when the JVM stops first.
    logging.getLogger("py4j").setLevel(logging.ERROR)
    # Warnings of the libraries' own packaging (pkg_resources, distutils) say nothing to a user.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
