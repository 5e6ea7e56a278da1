"""The operator's log lines: JSON objects in a pod, text on a terminal.

A line about a run carries the run's labels (pipeline, namespace, run, generation, traceId), the
same fields the driver puts on its own lines (etl_job.runtime.logs), so one query over the
cluster's logs follows a run from the change that started it to the last row written."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from etl_job.contract import RunRecord
from etl_operator import naming

#: Attributes a log call may pass in `extra`, copied into the JSON line.
LABELS = ("pipeline", "namespace", "run", "generation", "traceId")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        document: dict[str, Any] = {
            "timestamp": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "thread": record.threadName,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in LABELS:
            value = getattr(record, key, None)
            if value is not None:
                document[key] = value
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(document, default=str)


def configure(level: str, log_format: str) -> None:
    """Log at `level` to stderr; `log_format` json, text, or empty to choose by the terminal."""
    chosen = log_format or ("text" if sys.stderr.isatty() else "json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if chosen == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def run_labels(namespace: str, pipeline: str, record: RunRecord | None, generation: int) -> dict[str, Any]:
    """The `extra` of a log line about a pipeline, and about one of its runs when `record` is given."""
    labels: dict[str, Any] = {"pipeline": pipeline, "namespace": namespace, "generation": generation}
    if record is not None:
        labels["run"] = naming.run_name(pipeline, record.run)
        labels["generation"] = record.generation or generation
        if record.trace_id:
            labels["traceId"] = record.trace_id
    return labels
