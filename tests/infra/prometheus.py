"""A real Prometheus server (built from the Go module proxy) on loopback, in a temp dir: it scrapes
the targets a test names every second, and answers PromQL through its HTTP API."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.infra.process import HarnessError, ServerProcess, free_port, make_workdir, timed
from tests.infra.versions import BUILD_SCRIPTS, cache_dir, ensure_built, versions

COMPONENT = "prometheus"
#: Seconds between two scrapes of a target; a test waits a few of them for a change to show.
SCRAPE_INTERVAL = 1
#: No proxy, whatever the environment says: every request goes to this machine's loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

#: (labels, value) of one series of a query's result.
Sample = tuple[dict[str, str], float]


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    targets_dir: Path
    process: ServerProcess

    def scrape(self, job: str, targets: list[str], labels: dict[str, str] | None = None) -> None:
        """Scrape `targets` (host:port, /metrics) as `job` from now on; an empty list stops it.
        Written through file-based discovery, which Prometheus re-reads on change."""
        path = self.targets_dir / f"{job}.json"
        groups = [{"targets": targets, "labels": {"job": job, **(labels or {})}}] if targets else []
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(groups))
        partial.replace(path)  # whole files only: a half-written one would be read as no targets

    def query(self, promql: str) -> list[Sample]:
        """An instant query at the current time: each series' labels and value (a scalar's labels
        are empty). Raises naming the query when Prometheus refuses it."""
        body = self._get("/api/v1/query", {"query": promql})
        result = body["data"]
        if result["resultType"] == "scalar":
            return [({}, float(result["result"][1]))]
        if result["resultType"] != "vector":
            raise HarnessError(f"prometheus: {promql!r} gave a {result['resultType']}, not a vector")
        return [(dict(series["metric"]), float(series["value"][1])) for series in result["result"]]

    def targets(self) -> list[dict[str, Any]]:
        """The active targets with their health (up, down, unknown) and last scrape error."""
        data = self._get("/api/v1/targets", {"state": "active"})["data"]
        active: list[dict[str, Any]] = data["activeTargets"]
        return active

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with _DIRECT.open(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as refused:
            detail = refused.read().decode(errors="replace")[:500]
            raise HarnessError(f"prometheus: GET {path} {params} -> {refused.code}: {detail}") from refused
        if body.get("status") != "success":
            raise HarnessError(f"prometheus: GET {path} {params}: {body}")
        return body


def prometheus_binary() -> Path:
    ensure_built(COMPONENT, BUILD_SCRIPTS / "build-prometheus.sh")
    return cache_dir() / f"prometheus-{versions()['PROMETHEUS_VERSION']}" / "bin" / "prometheus"


def start_prometheus(timeout: float = 60) -> PrometheusServer:
    binary = prometheus_binary()
    workdir = make_workdir(COMPONENT)
    targets_dir = workdir / "targets"
    targets_dir.mkdir()
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL}s",
            "scrape_timeout": f"{SCRAPE_INTERVAL}s",
            "evaluation_interval": f"{SCRAPE_INTERVAL}s",
        },
        "scrape_configs": [
            {
                # One job name here; each target file sets its own job label, which wins.
                "job_name": "harness",
                "file_sd_configs": [{"files": [str(targets_dir / "*.json")], "refresh_interval": "1s"}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = ServerProcess(
        COMPONENT,
        [
            str(binary),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ],
        log_path=workdir / "prometheus.log",
        # Its working dir holds no web/ui: the UI is not built in, the API is all we use.
        cwd=workdir,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(workdir), "NO_PROXY": "*"},
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}", targets_dir, process)
    with timed(COMPONENT, "start"):
        process.start()
        process.wait_until(lambda: _ready(server.url), what="GET /-/ready answers 200", timeout=timeout)
    return server


def _ready(url: str) -> bool:
    with _DIRECT.open(f"{url}/-/ready", timeout=2) as response:
        return bool(response.status == 200)
