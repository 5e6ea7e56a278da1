"""Fixtures of the real-node tests: the images built by `make images` loaded into the node, the
operator installed from its Helm chart into a namespace held to the `restricted` Pod Security
level, and a namespace for pipelines with the chart's driver ServiceAccount."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.infra.helm import CHART, built_helm
from tests.infra.node import node as real
from tests.infra.versions import REPO_ROOT

OPERATOR_NAMESPACE = "sparkops-system"
PIPELINES_NAMESPACE = "sparkops-pipelines"
RELEASE = "etl"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def project_version() -> str:
    import tomllib

    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(every)


@pytest.fixture(scope="session")
def product_images() -> dict[str, str]:
    """`make images`, then both images in the node's containerd."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "job_image" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    assert done.returncode == 0, f"make images failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    version = project_version()
    return {"job": f"sparkops-etl/job:{version}", "operator": f"sparkops-etl/operator:{version}"}


@pytest.fixture(scope="session")
def node(real_node: real.Node, product_images: dict[str, str]) -> real.Node:
    for image in product_images.values():
        real.load_image(image, real_node.layout)
    return real_node


def get(
    node: real.Node, kind: str, name: str = "", namespace: str = PIPELINES_NAMESPACE, selector: str = ""
) -> Any:
    args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    return json.loads(node.kubectl_run(*args).stdout)


def apply(node: real.Node, *documents: dict[str, Any]) -> None:
    node.kubectl_run("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))


@pytest.fixture(scope="session")
def operator(node: real.Node, product_images: dict[str, str]) -> Iterator[real.Node]:
    """The chart installed with `helm install`: two operator replicas (kopf peering elects the
    active one) in a restricted namespace, watching the cluster, driver RBAC in PIPELINES_NAMESPACE."""
    for namespace in (OPERATOR_NAMESPACE, PIPELINES_NAMESPACE):
        apply(
            node,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": RESTRICTED}},
        )
    helm = built_helm()
    repository, tag = product_images["operator"].split(":")
    job_repository, job_tag = product_images["job"].split(":")
    helm.run(
        "upgrade", "--install", RELEASE, str(CHART),
        "--kubeconfig", str(node.kubeconfig),
        "--namespace", OPERATOR_NAMESPACE,
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", f"jobImage.repository={job_repository}", "--set", f"jobImage.tag={job_tag}",
        "--set", f"driverServiceAccount.namespaces={{{PIPELINES_NAMESPACE}}}",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    wait_for(
        "an operator replica to be ready",
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True"
            for pod in get(node, "pods", namespace=OPERATOR_NAMESPACE)["items"]
            for c in pod["status"].get("conditions", [])
        ),
    )
    yield node
    helm.run(
        "uninstall",
        RELEASE,
        "--kubeconfig",
        str(node.kubeconfig),
        "--namespace",
        OPERATOR_NAMESPACE,
        check=False,
    )
