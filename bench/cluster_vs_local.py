"""The same pipeline through `kubectl apply` on the real node and through `etl run` on the host.

Reports, per round and as medians: the host run's wall time, the cluster run's (apply to the
ETLPipeline's Succeeded), their ratio, and on the cluster the time from apply to a running driver
and, for the distributed pipeline, to its executors running. Run by `make bench-cluster`; it
brings the node up (or uses the running sandbox), builds and loads the images, and installs the
chart. Polls are bounded in count and time and reach only the node's API server."""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from bench.measure import machine  # noqa: E402
from tests.infra.node import chart  # noqa: E402
from tests.infra.node import node as real  # noqa: E402
from tests.infra.node.network import NODE_IP  # noqa: E402
from tests.infra.s3 import S3Server, start_s3  # noqa: E402

NAMESPACE = "sparkops-bench"
BUCKET = "bench"
SECRET = "bench-s3"
POLL_SECONDS = 0.1
#: The quickstart's work: the sample events, checked, filtered, joined, aggregated and ranked.
QUICKSTART = REPO / "examples" / "quickstart.yaml"
IMAGE_EXAMPLES = "/opt/etl/examples"


def pipeline_spec(executors: int, output: str, store: S3Server) -> dict[str, Any]:
    """The quickstart pipeline reading the sample data the job image holds, writing to `output`
    on the S3 store (executors write their parts from their own pods)."""
    document = yaml.safe_load(QUICKSTART.read_text())
    spec = copy.deepcopy(document["spec"])
    _rebase_paths(spec, IMAGE_EXAMPLES)
    spec["load"]["path"] = output
    spec["load"]["s3"] = {
        "endpoint": store.endpoint,
        "region": store.region,
        "pathStyleAccess": True,
        "accessKeyRef": {"name": SECRET, "key": "access-key"},
        "secretKeyRef": {"name": SECRET, "key": "secret-key"},
    }
    spec["spark"] = {"executors": executors, "driver": {"cores": 1, "memory": "1g"}}
    if executors:
        spec["spark"]["executor"] = {"cores": 1, "memory": "512m"}
        spec["spark"]["conf"] = {"spark.kubernetes.executor.request.cores": "200m"}
    return spec


def _rebase_paths(node: Any, base: str) -> None:
    """Relative `path` values of the example (taken from its folder) as paths under `base`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "path" and isinstance(value, str) and "://" not in value and not value.startswith("/"):
                node[key] = f"{base}/{value}"
            else:
                _rebase_paths(value, base)
    elif isinstance(node, list):
        for item in node:
            _rebase_paths(item, base)


def host_run() -> float:
    """Wall seconds of `etl run` of the quickstart on the host (local Spark, as `make run`)."""
    with tempfile.TemporaryDirectory() as scratch:
        document = yaml.safe_load(QUICKSTART.read_text())
        _rebase_paths(document["spec"], str(REPO / "examples"))
        document["spec"]["load"]["path"] = f"{scratch}/out"
        manifest = Path(scratch) / "pipeline.yaml"
        manifest.write_text(yaml.safe_dump(document))
        functions = subprocess.run(
            ["bash", str(REPO / "job_image" / "build-functions.sh")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = {
            **os.environ,
            "ETL_SPARK_JARS": functions,
            "ETL_SCHEMA_DIRS": str(REPO / "examples" / "schemas"),
        }
        started = time.perf_counter()
        subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "etl"),
                "run",
                str(manifest),
                "--termination-log",
                f"{scratch}/metrics",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def cluster_run(
    node: real.Node, store: S3Server, name: str, executors: int, timeout: float = 900
) -> dict[str, float | None]:
    """Apply the pipeline and poll until it ends: seconds to a running driver, to running
    executors (None in local mode) and to Succeeded."""
    document = {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": pipeline_spec(executors, f"s3a://{BUCKET}/{name}/", store),
    }
    started = time.perf_counter()
    node.kubectl_run("apply", "-f", "-", input_text=yaml.safe_dump(document))
    driver_at = executors_at = None
    deadline = started + timeout
    while time.perf_counter() < deadline:
        pods = json.loads(
            node.kubectl_run(
                "get", "pods", "-n", NAMESPACE, "-l", f"etl.sparkops.io/pipeline={name}", "-o", "json"
            ).stdout
        )["items"]
        now = time.perf_counter() - started
        roles = [
            (p["metadata"]["labels"].get("app.kubernetes.io/component"), p["status"].get("phase"))
            for p in pods
        ]
        if driver_at is None and ("driver", "Running") in roles:
            driver_at = now
        if executors and executors_at is None and roles.count(("executor", "Running")) >= executors:
            executors_at = now
        status = json.loads(
            node.kubectl_run("get", "etlpipeline", name, "-n", NAMESPACE, "-o", "json").stdout
        ).get("status", {})
        if status.get("phase") in ("Succeeded", "Failed", "Backoff", "CircuitOpen"):
            if status["phase"] != "Succeeded":
                raise SystemExit(
                    f"{name} ended {status['phase']}: {json.dumps(status.get('lastRun'), indent=2)}"
                )
            finished = time.perf_counter() - started
            node.kubectl_run("delete", "etlpipeline", name, "-n", NAMESPACE, "--wait=true")
            return {"driver": driver_at, "executors": executors_at, "total": finished}
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"{name} did not finish within {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    node = real.up()
    chart.install_operator(node, chart.build_images(), [NAMESPACE])
    store = start_s3(host=NODE_IP)
    store.create_bucket(BUCKET)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "stringData": {"access-key": store.access_key, "secret-key": store.secret_key},
    }
    node.kubectl_run("apply", "-f", "-", input_text=yaml.safe_dump(secret))
    print(f"machine: {machine()}")
    rows = []
    for round_number in range(1, args.rounds + 1):
        host = host_run()
        local = cluster_run(node, store, f"bench-local-{round_number}", executors=0)
        distributed = cluster_run(node, store, f"bench-dist-{round_number}", executors=2)
        rows.append((host, local, distributed))
        print(
            f"round {round_number}: host {host:.1f}s | cluster local {local['total']:.1f}s "
            f"(driver running at {local['driver'] or float('nan'):.1f}s) | cluster 2 executors "
            f"{distributed['total']:.1f}s (driver at {distributed['driver'] or float('nan'):.1f}s, "
            f"executors at {distributed['executors'] or float('nan'):.1f}s)"
        )

    def median(values: list[float | None]) -> float:
        return statistics.median(v for v in values if v is not None)

    host_s = median([row[0] for row in rows])
    local_s = median([row[1]["total"] for row in rows])
    dist_s = median([row[2]["total"] for row in rows])
    print(f"host etl run (median): {host_s:.1f}s")
    print(f"cluster, local mode (median): {local_s:.1f}s, ratio to host {local_s / host_s:.2f}")
    print(f"cluster, 2 executors (median): {dist_s:.1f}s, ratio to host {dist_s / host_s:.2f}")
    print(
        f"apply to running driver (median): {median([row[1]['driver'] for row in rows]):.2f}s local mode, "
        f"{median([row[2]['driver'] for row in rows]):.2f}s distributed"
    )
    print(f"apply to executors running (median): {median([row[2]['executors'] for row in rows]):.1f}s")


if __name__ == "__main__":
    main()
