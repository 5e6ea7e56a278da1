"""The job's logging: one JSON object per line when structured, plain text otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("pipeline", "stage", "metrics", "exitCode", "reason"):
            if hasattr(record, key):
                document[key] = getattr(record, key)
        if record.exc_info and record.levelno >= logging.ERROR:
            document["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(document, default=str)


def configure(level: str, structured: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if structured else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # py4j logs every gateway call at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)
