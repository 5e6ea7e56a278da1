"""The operator's Helm chart: lint, render in each mode, refuse bad values through its schema,
and grant the operator exactly the rights it needs on a real API server with RBAC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.infra.helm import CHART, Helm, built_helm, documents
from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def helm() -> Helm:
    return built_helm()


def _documents(rendered: str) -> list[dict[str, Any]]:
    return documents(rendered)


def _kinds(rendered: str) -> list[tuple[str, str, str]]:
    return sorted(
        (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        for doc in _documents(rendered)
    )


def _env(rendered: str) -> dict[str, str]:
    deployment = next(doc for doc in _documents(rendered) if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {var["name"]: var.get("value", "") for var in container["env"] if "value" in var}


def test_chart_lints_in_every_mode(helm: Helm) -> None:
    helm.run("lint", "--strict", str(CHART))
    helm.run(
        "lint", "--strict", str(CHART),
        "--set", "watch.clusterWide=false", "--set", "watch.namespaces={a,b}",
        "--set", "peering.enabled=false",
    )  # fmt: skip


def test_defaults_render_a_cluster_wide_operator_with_peering(helm: Helm) -> None:
    rendered = helm.template("etl", "ops", crds=True)
    kinds = _kinds(rendered)

    assert ("ClusterRole", "", "etl-sparkops-etl") in kinds
    assert ("ClusterKopfPeering", "", "sparkops-etl") in kinds
    assert ("CustomResourceDefinition", "", "etlpipelines.etl.sparkops.io") in kinds
    assert ("ServiceAccount", "ops", "spark-driver") in kinds
    assert not any("leader-election" in name for _, _, name in kinds)
    assert not [kind for kind in kinds if kind[0] == "PodDisruptionBudget"]
    env = _env(rendered)
    assert env["ETL_OPERATOR_WATCH_NAMESPACES"] == ""
    assert env["ETL_OPERATOR_PEERING_NAME"] == "sparkops-etl"
    assert env["ETL_OPERATOR_HEALTH_PORT"] == "8080"
    deployment = next(doc for doc in _documents(rendered) if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "ghcr.io/sparkops/etl-operator:0.1.0"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_namespaced_mode_renders_roles_in_each_watched_namespace_only(helm: Helm) -> None:
    rendered = helm.template(
        "etl",
        "ops",
        "watch.clusterWide=false",
        "watch.namespaces={team-a,team-b}",
        "podDisruptionBudget.enabled=true",
    )
    kinds = _kinds(rendered)

    assert ("Role", "team-a", "etl-sparkops-etl") in kinds
    assert ("Role", "team-b", "etl-sparkops-etl") in kinds
    assert ("KopfPeering", "team-a", "sparkops-etl") in kinds
    assert ("ServiceAccount", "team-b", "spark-driver") in kinds
    assert ("PodDisruptionBudget", "ops", "etl-sparkops-etl") in kinds
    cluster_roles = [doc for doc in _documents(rendered) if doc["kind"] == "ClusterRole"]
    # Only reading CRDs is cluster-wide in this mode.
    assert [rule["resources"] for role in cluster_roles for rule in role["rules"]] == [
        ["customresourcedefinitions"]
    ]
    assert _env(rendered)["ETL_OPERATOR_WATCH_NAMESPACES"] == "team-a,team-b"


def test_peering_off_renders_no_peering_object_and_no_peering_rights(helm: Helm) -> None:
    rendered = helm.template("etl", "ops", "peering.enabled=false")

    assert "kopf.dev" not in rendered
    assert _env(rendered)["ETL_OPERATOR_PEERING_NAME"] == ""
    # Standalone replicas would each act on every pipeline: exactly one runs, whatever `replicas` says.
    deployment = next(doc for doc in _documents(rendered) if doc["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("replicas=two", "/replicas"),
        ("watch.mode=everything", "/watch"),
        ("watch.clusterWide=sometimes", "/watch/clusterWide"),
        ("watch.clusterWide=false", "/watch/namespaces"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("operator.logLevel=LOUD", "/operator/logLevel"),
        ("image.repository=", "/image/repository"),
    ],
)
def test_values_schema_refuses_bad_values(helm: Helm, value: str, message: str) -> None:
    refused = helm.run("template", "etl", str(CHART), "--set", value, check=False)

    assert refused.returncode != 0
    assert "don't meet the specifications of the schema" in refused.stderr
    assert message in refused.stderr


@pytest.fixture
def installed(
    helm: Helm, kube_cluster: KubeCluster, namespace: str, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Applies the chart's rendered output (CRDs first) as a release named after the namespace;
    yields a function taking extra --set values. Removes the cluster-scoped objects afterwards."""
    release = namespace
    extra_namespaces: list[str] = []

    def install(*values: str, watched: tuple[str, ...] = ()) -> None:
        for name in watched:
            kube_cluster.kubectl("create", "namespace", name)
            extra_namespaces.append(name)
        rendered = helm.template(release, namespace, f"peering.name={release}", *values, crds=True)
        documents = _documents(rendered)
        crds = [doc for doc in documents if doc["kind"] == "CustomResourceDefinition"]
        rest = [doc for doc in documents if doc["kind"] != "CustomResourceDefinition"]
        kube_cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=helm-chart-test", "-f", "-",
            input_text=yaml.safe_dump_all(crds),
        )  # fmt: skip
        for crd in crds:
            kube_cluster.kubectl(
                "wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=30s"
            )
        kube_cluster.kubectl(
            # Every namespaced object of the chart names its namespace (watched ones differ).
            "apply", "--server-side", "--field-manager=helm-chart-test", "-f", "-",
            input_text=yaml.safe_dump_all(rest),
        )  # fmt: skip

    yield install

    selector = f"app.kubernetes.io/instance={release}"
    kube_cluster.kubectl(
        "delete", "clusterrole,clusterrolebinding,clusterkopfpeerings.kopf.dev", "-l", selector,
        "--ignore-not-found", check=False,
    )  # fmt: skip
    for name in extra_namespaces:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _can(kube_cluster: KubeCluster, account: str, *args: str) -> bool:
    answer = kube_cluster.kubectl("auth", "can-i", f"--as={account}", *args, check=False)
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


def test_cluster_wide_operator_has_least_privilege(
    installed: Any, kube_cluster: KubeCluster, namespace: str
) -> None:
    installed()
    operator = f"system:serviceaccount:{namespace}:{namespace}-sparkops-etl"
    elsewhere = "default"

    for ns in (namespace, elsewhere):
        assert _can(kube_cluster, operator, "create", "pods", "-n", ns)
        assert _can(
            kube_cluster, operator, "patch", "etlpipelines.etl.sparkops.io", "--subresource=status", "-n", ns
        )
        assert _can(kube_cluster, operator, "patch", "etlpipelines.etl.sparkops.io", "-n", ns)
        assert _can(kube_cluster, operator, "get", "secrets", "-n", ns)
        assert not _can(kube_cluster, operator, "watch", "secrets", "-n", ns)
        assert not _can(kube_cluster, operator, "list", "secrets", "-n", ns)
        assert _can(kube_cluster, operator, "create", "events", "-n", ns)
        assert _can(kube_cluster, operator, "create", "events.events.k8s.io", "-n", ns)
        assert _can(kube_cluster, operator, "create", "services", "-n", ns)
        assert _can(kube_cluster, operator, "create", "configmaps", "-n", ns)
        assert not _can(kube_cluster, operator, "delete", "secrets", "-n", ns)
        assert not _can(kube_cluster, operator, "create", "secrets", "-n", ns)
        assert not _can(kube_cluster, operator, "update", "secrets", "-n", ns)
        assert not _can(kube_cluster, operator, "delete", "etlpipelines.etl.sparkops.io", "-n", ns)
        assert not _can(kube_cluster, operator, "update", "etlpipelines.etl.sparkops.io", "-n", ns)
        assert not _can(kube_cluster, operator, "create", "etlpipelines.etl.sparkops.io", "-n", ns)
        assert not _can(kube_cluster, operator, "patch", "pods", "-n", ns)
    assert not _can(kube_cluster, operator, "create", "leases.coordination.k8s.io", "-n", namespace)
    assert _can(kube_cluster, operator, "patch", f"clusterkopfpeerings.kopf.dev/{namespace}")
    assert _can(kube_cluster, operator, "list", "customresourcedefinitions")
    assert _can(kube_cluster, operator, "watch", "namespaces")
    assert not _can(kube_cluster, operator, "create", "customresourcedefinitions")
    assert not _can(kube_cluster, operator, "create", "clusterroles")
    assert not _can(kube_cluster, operator, "create", "rolebindings", "-n", namespace)
    assert not _can(kube_cluster, operator, "create", "namespaces")

    driver = f"system:serviceaccount:{namespace}:spark-driver"
    assert _can(kube_cluster, driver, "create", "pods", "-n", namespace)
    assert _can(kube_cluster, driver, "deletecollection", "persistentvolumeclaims", "-n", namespace)
    assert not _can(kube_cluster, driver, "get", "secrets", "-n", namespace)
    assert not _can(kube_cluster, driver, "create", "pods", "-n", elsewhere)


def test_namespaced_operator_acts_only_in_watched_namespaces(
    installed: Any, kube_cluster: KubeCluster, namespace: str
) -> None:
    watched, other = f"{namespace}-w", f"{namespace}-x"
    installed("watch.clusterWide=false", f"watch.namespaces={{{watched}}}", watched=(watched, other))
    operator = f"system:serviceaccount:{namespace}:{namespace}-sparkops-etl"

    assert _can(kube_cluster, operator, "create", "pods", "-n", watched)
    assert _can(kube_cluster, operator, "get", "secrets", "-n", watched)
    assert _can(kube_cluster, operator, "patch", "kopfpeerings.kopf.dev", "-n", watched)
    assert _can(kube_cluster, operator, "list", "customresourcedefinitions")
    assert not _can(kube_cluster, operator, "create", "pods", "-n", other)
    assert not _can(kube_cluster, operator, "get", "secrets", "-n", other)
    assert not _can(kube_cluster, operator, "list", "etlpipelines.etl.sparkops.io", "--all-namespaces")
    assert not _can(kube_cluster, operator, "watch", "namespaces")
    assert not _can(kube_cluster, operator, "patch", f"clusterkopfpeerings.kopf.dev/{namespace}")
    assert _can(
        kube_cluster, f"system:serviceaccount:{watched}:spark-driver", "create", "pods", "-n", watched
    )
    peering = kube_cluster.kubectl("get", "kopfpeerings.kopf.dev", namespace, "-n", watched, check=False)
    assert peering.returncode == 0, peering.stderr


def test_helm_install_and_uninstall_on_the_api_server(
    helm: Helm, kube_cluster: KubeCluster, namespace: str
) -> None:
    # helm itself: crds/ first (the peering object needs its kind), then the templates.
    release = namespace[-20:].strip("-")
    kubeconfig = f"--kubeconfig={kube_cluster.kubeconfig}"
    helm.run(
        "install", release, str(CHART), kubeconfig, "--namespace", namespace,
        "--set", f"peering.name={release}",
    )  # fmt: skip
    try:
        peering = kube_cluster.kubectl("get", "clusterkopfpeerings.kopf.dev", release, check=False)
        assert peering.returncode == 0, peering.stderr
        kube_cluster.kubectl("get", "deployment", f"{release}-sparkops-etl", "-n", namespace)
    finally:
        helm.run("uninstall", release, kubeconfig, "--namespace", namespace)
    assert kube_cluster.kubectl("get", "clusterrole", f"{release}-sparkops-etl", check=False).returncode != 0
