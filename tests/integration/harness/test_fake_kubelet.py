"""The fake kubelet runs a managed pod's real command with its env and volumes, and reports
status back as a kubelet does: phases, exit codes, termination messages and waiting reasons."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.fake_kubelet import FakeKubelet, PathRemap, expand_references
from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.integration

MANAGED = {"app.kubernetes.io/managed-by": "sparkops-etl"}


def _pod(
    name: str, command: list[str], *, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "driver", "image": "sparkops/etl-job:test", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": MANAGED if labels is None else labels},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def _apply(kube_cluster: KubeCluster, namespace: str, *manifests: dict[str, Any]) -> None:
    for manifest in manifests:
        kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(manifest))


def _get_pod(kube_cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = kube_cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        if "NotFound" in found.stderr:
            return None
        raise AssertionError(found.stderr)
    pod: dict[str, Any] = json.loads(found.stdout)
    return pod


def _wait_pod(
    kube_cluster: KubeCluster,
    namespace: str,
    name: str,
    ready: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 30,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    pod = None
    while True:
        pod = _get_pod(kube_cluster, namespace, name)
        if pod is not None and ready(pod):
            return pod
        assert time.monotonic() < deadline, (
            f"pod {name} not {what} within {timeout}s: {json.dumps(pod)[:3000]}"
        )
        time.sleep(0.2)


def _phase(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: pod.get("status", {}).get("phase") in phases


def _container_state(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    state: dict[str, Any] = statuses[0].get("state", {})
    return state


def _waiting_reason(pod: dict[str, Any]) -> str | None:
    reason: str | None = _container_state(pod).get("waiting", {}).get("reason")
    return reason


READ_SECRET_AND_CONFIG = """
import json, os, sys
config_path, message_path = sys.argv[1], sys.argv[2]
with open(config_path) as config:
    pipeline = json.load(config)
with open(message_path, "w") as message:
    json.dump({
        "pipeline": pipeline["name"],
        "passwordMatches": os.environ["PG_PASSWORD"] == "s3cret",
        "pod": os.environ["POD_NAME"],
        "namespace": os.environ["POD_NAMESPACE"],
        "configDir": os.environ["CONFIG_DIR"] == os.path.dirname(config_path),
    }, message)
print("done")
"""


def test_pod_runs_with_secret_env_and_config_map_volume_and_succeeds(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    kube_cluster.kubectl(
        "create", "secret", "generic", "pg", "--from-literal=password=s3cret", "-n", namespace
    )
    kube_cluster.kubectl(
        "create",
        "configmap",
        "pipeline",
        '--from-literal=pipeline.json={"name": "user-summary"}',
        "-n",
        namespace,
    )
    pod = _pod(
        "run-1-driver",
        ["python", "-c", READ_SECRET_AND_CONFIG],
        volumes=[{"name": "pipeline", "configMap": {"name": "pipeline"}}],
        container={
            "args": ["/etc/etl/pipeline/pipeline.json", "/dev/termination-log"],
            "env": [
                {"name": "PG_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "CONFIG_DIR", "value": "/etc/etl/pipeline"},
            ],
            "volumeMounts": [{"name": "pipeline", "mountPath": "/etc/etl/pipeline", "readOnly": True}],
        },
    )
    _apply(kube_cluster, namespace, pod)

    done = _wait_pod(kube_cluster, namespace, "run-1-driver", _phase("Succeeded", "Failed"), "finished")

    assert done["status"]["phase"] == "Succeeded", fake_kubelet.pod_log(namespace, "run-1-driver")
    assert done["spec"]["nodeName"] == "fake-kubelet"
    assert done["status"]["podIP"] == "127.0.0.1"
    terminated = _container_state(done)["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert json.loads(terminated["message"]) == {
        "pipeline": "user-summary",
        "passwordMatches": True,
        "pod": "run-1-driver",
        "namespace": namespace,
        "configDir": True,
    }
    assert fake_kubelet.pod_log(namespace, "run-1-driver").strip() == "done"
    assert (fake_kubelet.sandbox(namespace, "run-1-driver") / "etc/etl/pipeline/pipeline.json").exists()


def test_nonzero_exit_fails_the_pod_with_its_exit_code_and_log_as_message(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    pod = _pod(
        "exits-3",
        ["python", "-c", "import sys; print('boom: sink rejected', file=sys.stderr); sys.exit(3)"],
        container={"terminationMessagePolicy": "FallbackToLogsOnError"},
    )
    _apply(kube_cluster, namespace, pod)

    done = _wait_pod(kube_cluster, namespace, "exits-3", _phase("Succeeded", "Failed"), "finished")

    assert done["status"]["phase"] == "Failed"
    terminated = _container_state(done)["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert "boom: sink rejected" in terminated["message"]


def test_missing_secret_or_key_is_a_create_container_config_error(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    kube_cluster.kubectl("create", "secret", "generic", "pg", "--from-literal=user=etl", "-n", namespace)
    for name, secret in (("missing-key", "pg"), ("missing-secret", "absent")):
        env = [{"name": "PG_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]
        _apply(kube_cluster, namespace, _pod(name, ["python", "-c", "pass"], container={"env": env}))

    for name, message in (
        ("missing-key", f"couldn't find key password in Secret {namespace}/pg"),
        ("missing-secret", 'secret "absent" not found'),
    ):
        pod = _wait_pod(
            kube_cluster,
            namespace,
            name,
            lambda pod: _waiting_reason(pod) == "CreateContainerConfigError",
            "waiting with CreateContainerConfigError",
        )
        assert pod["status"]["phase"] == "Pending"
        assert _container_state(pod)["waiting"]["message"] == message


def test_unpullable_image_reports_err_image_pull_then_back_off(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    pod = _pod("no-image", ["python", "-c", "pass"], container={"image": "registry.invalid/does-not-exist:1"})
    _apply(kube_cluster, namespace, pod)

    seen: set[str] = set()

    def backed_off(pod: dict[str, Any]) -> bool:
        seen.add(_waiting_reason(pod) or "")
        return _waiting_reason(pod) == "ImagePullBackOff"

    pod_now = _wait_pod(kube_cluster, namespace, "no-image", backed_off, "in ImagePullBackOff")

    assert "ErrImagePull" in seen or "ImagePullBackOff" in seen
    assert pod_now["status"]["phase"] == "Pending"
    assert not fake_kubelet.sandbox(namespace, "no-image").joinpath("log").exists()


def test_active_deadline_kills_the_process_and_fails_the_pod(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    pod = _pod("too-slow", ["python", "-c", "import time; time.sleep(120)"], activeDeadlineSeconds=2)
    _apply(kube_cluster, namespace, pod)

    done = _wait_pod(kube_cluster, namespace, "too-slow", _phase("Succeeded", "Failed"), "finished")

    assert done["status"]["phase"] == "Failed"
    assert done["status"]["reason"] == "DeadlineExceeded"
    assert _container_state(done)["terminated"]["exitCode"] == 128 + 15  # SIGTERM


GRACEFUL = """
import os, signal, sys, time
def stop(signum, frame):
    open("/scratch/terminated", "w").write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open("/scratch/pid", "w").write(str(os.getpid()))
time.sleep(120)
"""


def test_deleting_a_running_pod_stops_its_process_and_removes_the_pod(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    pod = _pod(
        "streaming",
        ["python", "-c", GRACEFUL],
        volumes=[{"name": "scratch", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
    )
    _apply(kube_cluster, namespace, pod)
    _wait_pod(kube_cluster, namespace, "streaming", _phase("Running"), "running")
    scratch = fake_kubelet.sandbox(namespace, "streaming") / "scratch"
    deadline = time.monotonic() + 10
    while not (scratch / "pid").exists():
        assert time.monotonic() < deadline, "the process did not start"
        time.sleep(0.1)
    time.sleep(0.2)
    pid = int((scratch / "pid").read_text())

    kube_cluster.kubectl("delete", "pod", "streaming", "-n", namespace, "--grace-period=10", "--timeout=30s")

    assert _get_pod(kube_cluster, namespace, "streaming") is None
    assert (scratch / "terminated").read_text() == "SIGTERM"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_pod_without_the_managed_by_label_is_left_alone(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    _apply(kube_cluster, namespace, _pod("not-ours", ["python", "-c", "pass"], labels={"app": "other"}))
    _apply(kube_cluster, namespace, _pod("ours", ["python", "-c", "pass"]))

    _wait_pod(kube_cluster, namespace, "ours", _phase("Succeeded"), "succeeded")

    left = _get_pod(kube_cluster, namespace, "not-ours")
    assert left is not None
    assert not left["spec"].get("nodeName")
    assert left["status"]["phase"] == "Pending"
    assert not left["status"].get("containerStatuses")


def test_phase_flip_mode_reports_running_then_succeeded_without_a_process(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: FakeKubelet
) -> None:
    fake_kubelet.flip_phases(message='{"recordsLoaded": 7}', running_seconds=1.0)
    _apply(kube_cluster, namespace, _pod("flipped", ["/no/such/binary"]))

    running = _wait_pod(kube_cluster, namespace, "flipped", _phase("Running", "Succeeded"), "running")
    done = _wait_pod(kube_cluster, namespace, "flipped", _phase("Succeeded", "Failed"), "finished")

    assert running["status"]["phase"] == "Running"
    assert done["status"]["phase"] == "Succeeded"
    terminated = _container_state(done)["terminated"]
    assert terminated["exitCode"] == 0
    assert json.loads(terminated["message"]) == {"recordsLoaded": 7}
    assert not (fake_kubelet.sandbox(namespace, "flipped") / "log").exists()


def test_path_remap_rewrites_whole_paths_longest_first() -> None:
    remap = PathRemap(
        {"/etc/etl": "/sb/etc/etl", "/etc/etl/pipeline": "/sb/pipe", "/dev/termination-log": "/sb/tl"}
    )

    assert remap("--config=/etc/etl/pipeline/p.json") == "--config=/sb/pipe/p.json"
    assert remap("file:///etc/etl/schemas") == "file:///sb/etc/etl/schemas"
    assert remap("/etc/etl-old /opt/etc/etl /etc/etlx") == "/etc/etl-old /opt/etc/etl /etc/etlx"
    assert remap("/dev/termination-log") == "/sb/tl"
    assert expand_references("$(A)/x $(MISSING) $$(A)", {"A": "/etc/etl"}) == "/etc/etl/x $(MISSING) $(A)"
