"""End to end: `kubectl apply` an ETLPipeline, the operator launches a driver pod, the fake
kubelet runs the real job in it (or only flips its phases), and the status tells the story."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner

from tests.infra.kube import KubeCluster
from tests.infra.process import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SECRET_VALUE = "pw-Zq8-never-print-me-41"


@pytest.fixture(scope="module")
def crd(kube_cluster: KubeCluster) -> None:
    kube_cluster.kubectl(
        "apply", "--server-side", "-f", str(REPO / "crds" / "etlpipelines.etl.sparkops.io.yaml")
    )
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "crd/etlpipelines.etl.sparkops.io", "--timeout=60s"
    )


@pytest.fixture
def operator(
    kube_cluster: KubeCluster, crd: None, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[KopfRunner]:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    monkeypatch.setenv("ETL_OPERATOR_HEALTH_PORT", str(free_port()))
    monkeypatch.setenv("ETL_OPERATOR_JOB_IMAGE", "registry.local/etl-job:test")
    monkeypatch.setenv("ETL_OPERATOR_WATCH_NAMESPACES", namespace)
    # The driver ServiceAccount, as the Helm chart creates it in each watched namespace.
    kube_cluster.kubectl("create", "serviceaccount", "spark-driver", "-n", namespace)
    with KopfRunner(
        ["run", "-m", "etl_operator.handlers", "--namespace", namespace, "--standalone"], timeout=120
    ) as runner:
        yield runner


def apply(kube_cluster: KubeCluster, namespace: str, manifest: dict[str, Any]) -> None:
    manifest["metadata"]["namespace"] = namespace
    kube_cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump(manifest))


def get(kube_cluster: KubeCluster, namespace: str, kind: str, name: str = "") -> Any:
    args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
    return json.loads(kube_cluster.kubectl(*args).stdout)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def status(kube_cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(kube_cluster, namespace, "etlp", name).get("status") or {})


def pipeline(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name},
        "spec": spec,
    }


def file_pipeline(tmp_path: Path) -> dict[str, Any]:
    """The quickstart's work on its sample data, with absolute paths, as a pod would see them."""
    examples = REPO / "examples"
    return {
        "extract": {"sourceType": "S3", "path": str(examples / "data" / "events.csv"), "format": "csv",
                    "options": {"header": "true"}, "schemaName": "user-event"},
        "transforms": [
            {"transformType": "Filter", "condition": "event_type = 'purchase'"},
            {"transformType": "Aggregation", "groupBy": ["country"],
             "aggregations": [{"column": "amount", "function": "sum", "as": "total_amount"}]},
        ],
        "load": {"sinkType": "S3", "path": str(tmp_path / "out"), "format": "parquet",
                 "writeMode": "overwrite"},
        "spark": {"driver": {"cores": 1, "memory": "1g"}},
        "podTemplate": {"spec": {"containers": [
            {"name": "driver", "env": [{"name": "ETL_SCHEMA_DIRS", "value": str(examples / "schemas")}]}
        ]}},
    }  # fmt: skip


#: A sink that reads the password from the Secret db-credentials.
DATABASE_SINK = {
    "sinkType": "PostgreSQL",
    "table": "t",
    "connection": {"host": "db", "port": 5432, "database": "d", "user": "etl"},
    "credentialsRef": {"name": "db-credentials", "key": "password"},
}


def test_a_batch_pipeline_runs_the_real_job_and_reports_success(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: Any, operator: KopfRunner, tmp_path: Path
) -> None:
    apply(kube_cluster, namespace, pipeline("countries", file_pipeline(tmp_path)))

    done = kube_cluster.kubectl(
        "wait",
        "--for=condition=Ready",
        "etlp/countries",
        "-n",
        namespace,
        "--timeout=240s",
        check=False,
        timeout=260,
    )
    final = status(kube_cluster, namespace, "countries")
    assert done.returncode == 0, json.dumps(final, indent=1)
    assert final["phase"] == "Succeeded"
    assert final["observedGeneration"] == 1
    metrics = final["lastRun"]["metrics"]
    assert metrics["recordsExtracted"] == 2000
    assert metrics["recordsFailed"] == 0
    assert metrics["recordsLoaded"] == 6  # one row per country
    assert (tmp_path / "out" / "_SUCCESS").exists()
    table = kube_cluster.kubectl("get", "etlp", "-n", namespace).stdout
    assert "Succeeded" in table.splitlines()[1]
    pods = get(kube_cluster, namespace, "pods")["items"]
    assert [pod["metadata"]["name"] for pod in pods] == ["countries-run-1-driver"]
    assert pods[0]["spec"]["enableServiceLinks"] is False


def test_a_missing_secret_is_a_condition_and_no_pod_is_launched(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: Any, operator: KopfRunner, tmp_path: Path
) -> None:
    spec = {**file_pipeline(tmp_path), "load": DATABASE_SINK}
    apply(kube_cluster, namespace, pipeline("needs-secret", spec))

    def ready_condition() -> dict[str, Any] | None:
        conditions = status(kube_cluster, namespace, "needs-secret").get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), None)

    ready = wait_for("the Ready condition", ready_condition)
    assert ready["status"] == "False"
    assert ready["reason"] == "SecretMissing"
    assert "db-credentials" in ready["message"]
    time.sleep(2)
    assert get(kube_cluster, namespace, "pods")["items"] == []


def test_a_failing_job_backs_off_then_the_circuit_opens(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: Any, operator: KopfRunner, tmp_path: Path
) -> None:
    fake_kubelet.flip_phases(message=json.dumps({"errors": ["extract: source unavailable"]}), exit_code=4)
    spec = file_pipeline(tmp_path)
    spec["restartPolicy"] = {
        "type": "OnFailure",
        "maxRetries": 10,
        "initialBackoffSeconds": 1,
        "maxBackoffSeconds": 2,
    }
    spec["errorHandling"] = {"circuitBreaker": {"failureThreshold": 3, "resetTimeoutSeconds": 8}}
    apply(kube_cluster, namespace, pipeline("flaky", spec))

    phases: list[str] = []

    def circuit_open() -> bool:
        current = status(kube_cluster, namespace, "flaky")
        if current.get("phase") and (not phases or phases[-1] != current["phase"]):
            phases.append(current["phase"])
        return bool(current.get("phase") == "CircuitOpen")

    wait_for("the circuit to open", circuit_open, timeout=120)
    opened = status(kube_cluster, namespace, "flaky")
    assert "Backoff" in phases
    assert opened["circuit"]["state"] == "Open"
    assert opened["circuit"]["consecutiveFailures"] >= 3
    assert opened["lastRun"]["exitCode"] == 4
    runs_when_opened = opened["runCount"]

    time.sleep(3)  # no launch while open
    assert status(kube_cluster, namespace, "flaky")["runCount"] == runs_when_opened
    wait_for(
        "a half-open trial run",
        lambda: status(kube_cluster, namespace, "flaky")["runCount"] > runs_when_opened,
        timeout=60,
    )


def test_a_secret_value_never_leaves_the_secret(
    kube_cluster: KubeCluster,
    namespace: str,
    fake_kubelet: Any,
    operator: KopfRunner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the operator runs in this process: its every log line lands here
    fake_kubelet.flip_phases(message=json.dumps({"recordsLoaded": 1}), exit_code=0)
    kube_cluster.kubectl(
        "create",
        "secret",
        "generic",
        "db-credentials",
        "-n",
        namespace,
        f"--from-literal=password={SECRET_VALUE}",
    )
    spec = {**file_pipeline(tmp_path), "load": DATABASE_SINK}
    apply(kube_cluster, namespace, pipeline("with-secret", spec))
    wait_for(
        "the run to succeed",
        lambda: status(kube_cluster, namespace, "with-secret").get("phase") == "Succeeded",
    )

    pods = get(kube_cluster, namespace, "pods")
    env = pods["items"][0]["spec"]["containers"][0]["env"]
    secret_refs = [e["valueFrom"]["secretKeyRef"] for e in env if "secretKeyRef" in e.get("valueFrom", {})]
    assert {"name": "db-credentials", "key": "password"} in secret_refs
    places = {
        "pods": pods,
        "configmaps": get(kube_cluster, namespace, "configmaps"),
        "pipeline": get(kube_cluster, namespace, "etlp", "with-secret"),
        "events": get(kube_cluster, namespace, "events"),
        "operator log": caplog.text,
    }
    for place, content in places.items():
        assert SECRET_VALUE not in json.dumps(content), f"the secret's value is in the {place}"
