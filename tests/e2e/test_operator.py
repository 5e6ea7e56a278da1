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

from tests.infra.helm import built_helm, documents
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
    # `kubectl wait` refuses a CRD whose status has no conditions yet (right after the apply).
    wait_for(
        "the CRD to be established",
        lambda: kube_cluster.kubectl(
            "wait", "--for=condition=Established", "crd/etlpipelines.etl.sparkops.io", "--timeout=30s",
            check=False, timeout=40,
        ).returncode == 0,
        timeout=60,
    )  # fmt: skip


@pytest.fixture
def chart_rbac(kube_cluster: KubeCluster, crd: None, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The Helm chart's RBAC for an operator watching only `namespace` (namespaced mode, peering
    off), with its ServiceAccounts (the operator's and spark-driver), applied for real; yields a
    kubeconfig authenticating as the operator's ServiceAccount, so the operator has exactly the
    rights the chart grants and a missing one fails the test."""
    rendered = built_helm().template(
        namespace,
        namespace,
        "watch.clusterWide=false",
        f"watch.namespaces={{{namespace}}}",
        "peering.enabled=false",
    )
    rbac = [doc for doc in documents(rendered) if doc["kind"] in _RBAC_KINDS]
    kube_cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(rbac))
    account = next(
        doc["metadata"]["name"]
        for doc in rbac
        if doc["kind"] == "ServiceAccount" and doc["metadata"]["name"] != "spark-driver"
    )
    kubeconfig = kube_cluster.service_account_kubeconfig(namespace, account, tmp_path / "operator.kubeconfig")
    whoami = kube_cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout != f"system:serviceaccount:{namespace}:{account}"  # the admin runs the test
    assert (
        kube_cluster.kubectl(
            f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
        ).stdout
        == f"system:serviceaccount:{namespace}:{account}"
    )
    yield kubeconfig
    kube_cluster.kubectl(
        "delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={namespace}",
        "--ignore-not-found", check=False,
    )  # fmt: skip


_RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def operator_runner(namespace: str) -> KopfRunner:
    return KopfRunner(
        ["run", "-m", "etl_operator.handlers", "--namespace", namespace, "--standalone"], timeout=120
    )


@pytest.fixture
def operator_env(chart_rbac: Path, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(chart_rbac))
    monkeypatch.setenv("ETL_OPERATOR_HEALTH_PORT", str(free_port()))
    monkeypatch.setenv("ETL_OPERATOR_JOB_IMAGE", "registry.local/etl-job:test")
    monkeypatch.setenv("ETL_OPERATOR_WATCH_NAMESPACES", namespace)
    monkeypatch.setenv("ETL_OPERATOR_SECRETS_RECHECK_SECONDS", "3")


@pytest.fixture
def operator(operator_env: None, namespace: str) -> Iterator[KopfRunner]:
    with operator_runner(namespace) as runner:
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


def driver_pods(kube_cluster: KubeCluster, namespace: str) -> list[str]:
    return sorted(pod["metadata"]["name"] for pod in get(kube_cluster, namespace, "pods")["items"])


def test_an_operator_restarted_mid_run_adopts_the_driver_and_completes_the_run(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: Any, operator_env: None, tmp_path: Path
) -> None:
    fake_kubelet.flip_phases(message=json.dumps({"recordsLoaded": 6}), exit_code=0, running_seconds=8)
    with operator_runner(namespace):
        apply(kube_cluster, namespace, pipeline("restarted", file_pipeline(tmp_path)))
        wait_for(
            "the driver to run",
            lambda: (
                (status(kube_cluster, namespace, "restarted").get("currentRun") or {}).get("phase")
                == "Running"
            ),
        )
    # The operator is gone while its driver runs on; the run ends with nobody watching.
    assert driver_pods(kube_cluster, namespace) == ["restarted-run-1-driver"]
    wait_for(
        "the driver to end",
        lambda: (
            get(kube_cluster, namespace, "pod", "restarted-run-1-driver")["status"]["phase"] == "Succeeded"
        ),
        timeout=60,
    )
    assert status(kube_cluster, namespace, "restarted")["phase"] == "Running"  # as the old operator left it

    with operator_runner(namespace):
        wait_for(
            "the run to complete",
            lambda: status(kube_cluster, namespace, "restarted").get("phase") == "Succeeded",
        )
        time.sleep(2)  # a twin would show up now if the new operator launched one
        final = status(kube_cluster, namespace, "restarted")
    assert driver_pods(kube_cluster, namespace) == ["restarted-run-1-driver"]
    assert final["runCount"] == 1
    assert final["lastRun"]["run"] == 1
    assert final["lastRun"]["metrics"]["recordsLoaded"] == 6


def test_a_streaming_driver_is_replaced_when_its_secret_is_rotated(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: Any, operator: KopfRunner
) -> None:
    fake_kubelet.flip_phases(running_seconds=3600)  # a streaming driver runs until stopped
    kube_cluster.kubectl(
        "create", "secret", "generic", "kafka-user", "-n", namespace,
        "--from-literal=user=etl", "--from-literal=password=first",
    )  # fmt: skip
    spec = {
        "mode": "streaming",
        "streaming": {"checkpointLocation": "/tmp/checkpoint"},
        "extract": {
            "sourceType": "Kafka", "bootstrapServers": "kafka:9092", "topic": "events",
            "security": {
                "protocol": "SASL_PLAINTEXT",
                "usernameRef": {"name": "kafka-user", "key": "user"},
                "passwordRef": {"name": "kafka-user", "key": "password"},
            },
        },
        "load": {"sinkType": "S3", "path": "s3a://out/events/"},
    }  # fmt: skip
    apply(kube_cluster, namespace, pipeline("stream", spec))
    wait_for("the driver to run", lambda: status(kube_cluster, namespace, "stream").get("phase") == "Running")
    first = status(kube_cluster, namespace, "stream")["currentRun"]
    assert first["run"] == 1 and first["secretsVersion"]

    rotated = kube_cluster.kubectl(
        "create", "secret", "generic", "kafka-user", "-n", namespace,
        "--from-literal=user=etl", "--from-literal=password=second", "--dry-run=client", "-o", "yaml",
    ).stdout  # fmt: skip
    kube_cluster.kubectl("apply", "-f", "-", input_text=rotated)
    # A running driver's Secrets are looked at every ETL_OPERATOR_SECRETS_RECHECK_SECONDS (3 here).
    replaced = wait_for(
        "the driver to be replaced",
        lambda: (status(kube_cluster, namespace, "stream").get("currentRun") or {}).get("run") == 2,
        timeout=60,
    )
    assert replaced
    final = status(kube_cluster, namespace, "stream")
    stopped = next(run for run in final["runs"] if run["run"] == 1)
    assert stopped["phase"] == "Stopped" and stopped["reason"] == "SecretChanged"
    assert final["currentRun"]["secretsVersion"] != first["secretsVersion"]
