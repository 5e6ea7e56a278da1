"""The driver's small HTTP server: /healthz and /metrics, and a streaming run's /readyz and
/progress (etl_job.streaming). Each GET is answered by a function of the path."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from etl_job.runtime.exposition import CONTENT_TYPE_LATEST, run_exposition
from etl_job.runtime.progress import stage_figures
from etl_job.runtime.run_progress import RunProgress

#: The port of the driver's health server: the operator sets it in every driver pod; for
#: `etl run` it overrides spec.streaming.healthPort ("0": no server), for several runs at once.
HEALTH_PORT_ENV = "ETL_HEALTH_PORT"

#: (status code, content type, body) for a path.
Answer = Callable[[str], tuple[int, str, bytes]]


def serve(port: int, answer: Answer) -> ThreadingHTTPServer:
    """Listen on every address of the pod: the kubelet's probes and Prometheus come from outside."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code, content_type, payload = answer(self.path)
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def serve_batch(
    port: int, pipeline: str, progress: RunProgress, spark: Callable[[], Any]
) -> ThreadingHTTPServer:
    """A batch driver's /healthz and /metrics. `spark()` is the run's session, None until it has
    started: the rows read so far are Spark's own count, from its status store."""

    def answer(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, run_exposition(pipeline, progress, _rows_read(spark()))
        if path == "/healthz":
            return 200, "application/json", json.dumps({"phase": progress.running()}).encode()
        return 404, "application/json", b'{"message": "not found"}'

    return serve(port, answer)


def _rows_read(session: Any) -> int:
    if session is None:
        return 0
    try:
        return sum(stage.input_records for stage in stage_figures(session))
    except Exception:  # noqa: BLE001 - the JVM going away at the end of the run is no reason to fail
        return 0
