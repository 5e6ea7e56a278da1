"""Fixtures of the real-node tests: the images built by `make images` loaded into the node, and
the operator installed from its Helm chart into a namespace held to the `restricted` Pod Security
level, watching the cluster, with the driver ServiceAccount in PIPELINES_NAMESPACE."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.infra.mariadb import MySQLServer
from tests.infra.node import chart
from tests.infra.node import node as real
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server

OPERATOR_NAMESPACE = chart.OPERATOR_NAMESPACE
PIPELINES_NAMESPACE = "sparkops-pipelines"
#: The Secret of the servers' credentials that pipelines in PIPELINES_NAMESPACE reference.
SECRET = "node-credentials"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(every)


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
def operator(real_node: real.Node) -> Iterator[real.Node]:
    """The chart installed with `helm install`: two operator replicas (kopf peering elects the
    active one) in a restricted namespace."""
    chart.install_operator(real_node, chart.build_images(), [PIPELINES_NAMESPACE])
    yield real_node
    chart.uninstall_operator(real_node)


@pytest.fixture(scope="session")
def credentials(
    operator: real.Node, node_postgres: PostgresServer, node_mysql: MySQLServer, node_s3: S3Server
) -> dict[str, str]:
    values = {
        "postgres-password": node_postgres.password,
        "mysql-password": node_mysql.password,
        "s3-access-key": node_s3.access_key,
        "s3-secret-key": node_s3.secret_key,
    }
    apply(
        operator,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": PIPELINES_NAMESPACE},
            "stringData": values,
        },
    )
    return values
