"""The product on the real node: its images built by `make images` and loaded into the node,
and the operator installed from its Helm chart as a user installs it."""

from __future__ import annotations

import subprocess
import tomllib

import yaml

from tests.infra.helm import CHART, built_helm
from tests.infra.node import node as real
from tests.infra.process import HarnessError
from tests.infra.versions import REPO_ROOT

OPERATOR_NAMESPACE = "sparkops-system"
RELEASE = "etl"
#: Pod Security labels of every namespace the node's product runs in.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def project_version() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def build_images() -> dict[str, str]:
    """`make images` (a no-op when nothing changed); the two images' names."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "job_image" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"make images failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return {name: content_tag(f"sparkops-etl/{name}:{project_version()}") for name in ("job", "operator")}


def content_tag(image: str) -> str:
    """The image under its content-hash tag (build-images.sh tags both): a rebuilt image then
    has a new name, so the chart's Deployment rolls and the node loads it, where the version
    tag would leave pods on the image they started with."""
    done = subprocess.run(
        ["docker", "image", "inspect", "-f", '{{index .Config.Labels "io.sparkops.content-hash"}}', image],
        capture_output=True,
        text=True,
        check=False,
    )
    content_hash = done.stdout.strip()
    if done.returncode != 0 or not content_hash:
        raise HarnessError(f"{image} has no content-hash label: {done.stderr.strip()}")
    return f"{image.rsplit(':', 1)[0]}:{content_hash}"


def restricted_namespace(node: real.Node, name: str) -> None:
    metadata = {"name": name, "labels": RESTRICTED}
    node.kubectl_run(
        "apply",
        "-f",
        "-",
        input_text=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
    )


def install_operator(node: real.Node, images: dict[str, str], pipeline_namespaces: list[str]) -> None:
    """`helm upgrade --install` of the chart into OPERATOR_NAMESPACE (restricted), with the local
    images and the driver ServiceAccount in each of `pipeline_namespaces`; waits until it runs."""
    for namespace in (OPERATOR_NAMESPACE, *pipeline_namespaces):
        restricted_namespace(node, namespace)
    for image in images.values():
        real.load_image(image, node.layout)
    repository, tag = images["operator"].split(":")
    job_repository, job_tag = images["job"].split(":")
    built_helm().run(
        "upgrade", "--install", RELEASE, str(CHART),
        "--kubeconfig", str(node.kubeconfig),
        "--namespace", OPERATOR_NAMESPACE,
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        # Loaded into the node, never pulled.
        "--set", "image.pullPolicy=Never",
        "--set", f"jobImage.repository={job_repository}", "--set", f"jobImage.tag={job_tag}",
        "--set", f"driverServiceAccount.namespaces={{{','.join(pipeline_namespaces)}}}",
        "--wait", "--timeout", "5m",
    )  # fmt: skip


def uninstall_operator(node: real.Node) -> None:
    built_helm().run(
        "uninstall",
        RELEASE,
        "--kubeconfig",
        str(node.kubeconfig),
        "--namespace",
        OPERATOR_NAMESPACE,
        check=False,
    )
