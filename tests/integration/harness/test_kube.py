"""The local control plane is a real Kubernetes API: schemas, RBAC, tokens, garbage collection."""

from __future__ import annotations

import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.integration


def _crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "color": {"type": "string", "enum": ["red", "blue"]},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def gadget_group(kube_cluster: KubeCluster) -> str:
    group = f"smoke{secrets.token_hex(3)}.etl.sparkops.io"
    kube_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(_crd(group)))
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/gadgets.{group}", "--timeout=30s")
    return group


def _gadget(group: str, namespace: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1", "namespace": namespace},
            "spec": spec,
        }
    )


def test_crd_accepts_a_valid_object(kube_cluster: KubeCluster, gadget_group: str, namespace: str) -> None:
    kube_cluster.kubectl("apply", "-f", "-", input_text=_gadget(gadget_group, namespace, {"size": 3}))
    stored = json.loads(
        kube_cluster.kubectl("get", f"gadgets.{gadget_group}", "g1", "-n", namespace, "-o", "json").stdout
    )
    assert stored["spec"] == {"size": 3}


def test_crd_refuses_an_object_that_breaks_its_schema(
    kube_cluster: KubeCluster, gadget_group: str, namespace: str
) -> None:
    refused = kube_cluster.kubectl(
        "apply",
        "-f",
        "-",
        check=False,
        input_text=_gadget(gadget_group, namespace, {"size": 0, "color": "green"}),
    )
    assert refused.returncode != 0
    assert "spec.size" in refused.stderr
    assert "spec.color" in refused.stderr


def _get(url: str, token: str, context: ssl.SSLContext) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_service_account_without_rights_gets_403(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = kube_cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    context = ssl.create_default_context(cafile=config["clusters"][0]["cluster"]["certificate-authority"])

    status, body = _get(f"{kube_cluster.server}/api/v1/namespaces/{namespace}/secrets", token, context)

    assert status == 403
    # Authenticated as the ServiceAccount (a bad token would be 401), then refused by RBAC.
    assert f"system:serviceaccount:{namespace}:nobody" in body


def test_role_binding_grants_the_service_account_access(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kube_cluster.kubectl(
        "create", "role", "read-secrets", "--verb=list", "--resource=secrets", "-n", namespace
    )
    kube_cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=read-secrets",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    token = kube_cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    context = ssl.create_default_context(cafile=config["clusters"][0]["cluster"]["certificate-authority"])

    status, _ = _get(f"{kube_cluster.server}/api/v1/namespaces/{namespace}/secrets", token, context)

    assert status == 200


def test_garbage_collector_deletes_owned_objects(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = kube_cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    kube_cluster.kubectl("apply", "-f", "-", input_text=json.dumps(child))

    kube_cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    deadline = time.monotonic() + 60
    while kube_cluster.kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode == 0:
        assert time.monotonic() < deadline, "the garbage collector did not delete the owned ConfigMap"
        time.sleep(0.5)
