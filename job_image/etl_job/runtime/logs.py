"""The job's logging: one JSON object per line when structured, plain text otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time

#: Fields a log call may pass in `extra`, copied into the JSON line under these names.
_EXTRA_FIELDS = {
    "pipeline": "pipelineId",
    "stage": "stage",
    "recordsLoaded": "recordsLoaded",
    "duration": "duration",
    "metrics": "metrics",
    "exitCode": "exitCode",
    "reason": "reason",
}


class JsonFormatter(logging.Formatter):
    """A line in the structured format of the older framework's logs (timestamp, level, thread,
    logger, message, pipelineId, executionId, ...), so the queries its users wrote keep working."""

    def __init__(self, execution_id: str | None = None) -> None:
        super().__init__()
        self.execution_id = execution_id

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        document = {
            "timestamp": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "thread": record.threadName,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, name in _EXTRA_FIELDS.items():
            if hasattr(record, key):
                document[name] = getattr(record, key)
            if key == "pipeline" and self.execution_id:
                document["executionId"] = self.execution_id
        if record.exc_info and record.levelno >= logging.ERROR:
            document["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(document, default=str)


def configure(level: str, structured: bool, execution_id: str | None = None) -> None:
    """Log at `level` to stderr; `execution_id` (the run's id) goes on every structured line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(execution_id)
        if structured
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # py4j logs every gateway call at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)
