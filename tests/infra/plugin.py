"""pytest fixtures that start the harness's real components on demand, once per test run,
and hooks that print each component's log when a test that used it fails."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.kafka import KafkaBroker, start_kafka
from tests.infra.kube import KubeCluster, existing_cluster, start_local_control_plane
from tests.infra.mariadb import MySQLServer, start_mariadb
from tests.infra.postgres import PostgresServer, start_postgres
from tests.infra.process import TIMINGS, WORKDIRS, HarnessError, ServerProcess
from tests.infra.prometheus import PrometheusServer, start_prometheus
from tests.infra.s3 import S3Server, start_s3

TEST_NAMESPACE_LABEL = "etl.sparkops.io/test-namespace"

#: The processes behind each fixture, so a failing test shows the logs of what it used.
_PROCESSES_BY_FIXTURE: dict[str, list[ServerProcess]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=("local", "kind", "existing"),
        default="local",
        help="local: etcd + kube-apiserver built by the harness (default); kind: a kind cluster "
        "through pytest-kind (needs Docker); existing: the cluster $KUBECONFIG names",
    )


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    choice = request.config.getoption("--cluster")
    if choice == "kind":
        from pytest_kind import KindCluster  # only where Docker and kind exist

        kind = KindCluster("etl-test")
        kind.create()
        yield existing_cluster(Path(kind.kubeconfig_path))
        kind.delete()
        return
    if choice == "existing":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            raise HarnessError("--cluster=existing needs KUBECONFIG to name the cluster to test on")
        yield existing_cluster(Path(kubeconfig))
        return
    cluster = start_local_control_plane()
    _PROCESSES_BY_FIXTURE["kube_cluster"] = cluster.processes
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster) -> Any:
    """A kubernetes ApiClient with the harness's admin credentials."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kube_cluster.kubeconfig))


@pytest.fixture
def namespace(kube_api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, labelled as a test namespace, deleted afterwards."""
    from kubernetes import client

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"}))
    )
    yield name
    # Only namespaces this fixture made, and labelled, are ever deleted.
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    _PROCESSES_BY_FIXTURE["postgres"] = [server.process]
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def mysql() -> Iterator[MySQLServer]:
    server = start_mariadb()
    _PROCESSES_BY_FIXTURE["mysql"] = [server.process]
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    broker = start_kafka()
    _PROCESSES_BY_FIXTURE["kafka"] = [broker.process]
    yield broker
    broker.process.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = start_s3()
    _PROCESSES_BY_FIXTURE["s3"] = [server.process]
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """Prometheus on loopback, scraping every second what a test names with `prometheus.scrape`."""
    server = start_prometheus()
    _PROCESSES_BY_FIXTURE["prometheus"] = [server.process]
    yield server
    server.process.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A fresh, empty bucket for one test."""
    name = f"t-{secrets.token_hex(6)}"
    s3.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from tests.infra.spark import start_spark

    session = start_spark()
    yield session
    session.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for fixture in getattr(item, "fixturenames", ()):
            for process in _PROCESSES_BY_FIXTURE.get(fixture, ()):
                report.sections.append((f"log of {process.name} ({process.log_path})", process.log_tail(60)))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("harness: build and start times")
    for timing in TIMINGS:
        terminalreporter.write_line(f"{timing.component:<26} {timing.step:<10} {timing.seconds:7.1f}s")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Keep the servers' dirs and logs of a failed run for a look; clean up after a green one.
    if exitstatus == 0:
        for path in WORKDIRS:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_kubelet(kube_cluster: KubeCluster, namespace: str) -> Iterator[Any]:
    """A fake kubelet serving the test's namespace: it runs each managed pod's command as a
    local process (`fake_kubelet.flip_phases(message)` switches to flipping phases only)."""
    from tests.infra.fake_kubelet import FakeKubelet
    from tests.infra.process import make_workdir

    kubelet = FakeKubelet(kube_cluster.kubeconfig, make_workdir("fake-kubelet"), namespaces=[namespace])
    # Registered as a (never started) process, so a failing test shows the kubelet's log.
    _PROCESSES_BY_FIXTURE["fake_kubelet"] = [ServerProcess("fake-kubelet", [], log_path=kubelet.log_path)]
    yield kubelet.start()
    kubelet.stop()


# --- the real node (tests/node/) ---------------------------------------------------------------


@pytest.fixture(scope="session")
def real_node() -> Iterator[Any]:
    """The real single-node cluster (tests/infra/node): reused when it runs already (a user's
    `make sandbox`), else started for this test run and stopped after it."""
    from tests.infra.node import node as real

    was_running = all(real.status().values())
    started = real.up(log=False)
    _PROCESSES_BY_FIXTURE["real_node"] = [
        ServerProcess(name, [], log_path=daemon.log)
        for name, daemon in real.node_daemons(started.layout).items()
    ]
    yield started
    if not was_running:
        # The loaded images stay in containerd's store for the next run, as builds stay cached.
        real.down(keep_images=True)


@pytest.fixture(scope="session")
def node_postgres(real_node: Any) -> Iterator[PostgresServer]:
    """PostgreSQL on the node's bridge address: the host and the node's pods reach it alike."""
    from tests.infra.node.network import NODE_IP, POD_CIDR

    server = start_postgres(host=NODE_IP, clients=POD_CIDR)
    _PROCESSES_BY_FIXTURE["node_postgres"] = [server.process]
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def node_mysql(real_node: Any) -> Iterator[MySQLServer]:
    from tests.infra.node.network import NODE_IP

    server = start_mariadb(host=NODE_IP)
    _PROCESSES_BY_FIXTURE["node_mysql"] = [server.process]
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def node_kafka(real_node: Any) -> Iterator[KafkaBroker]:
    from tests.infra.node.network import NODE_IP

    broker = start_kafka(host=NODE_IP)
    _PROCESSES_BY_FIXTURE["node_kafka"] = [broker.process]
    yield broker
    broker.process.stop()


@pytest.fixture(scope="session")
def node_s3(real_node: Any) -> Iterator[S3Server]:
    from tests.infra.node.network import NODE_IP

    server = start_s3(host=NODE_IP)
    _PROCESSES_BY_FIXTURE["node_s3"] = [server.process]
    yield server
    server.process.stop()
