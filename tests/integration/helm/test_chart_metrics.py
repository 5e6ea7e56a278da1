"""The chart's Prometheus Operator resources: off by default; when on, a ServiceMonitor that
reaches the operator's /metrics through a Service on its health port, and a PodMonitor that
selects exactly the labels the operator puts on driver pods, in the namespaces it watches."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from etl_job.runtime.exposition import stream_exposition
from etl_operator.metrics import OperatorMetrics
from etl_operator.naming import LABEL_COMPONENT, LABEL_MANAGED_BY, run_labels
from tests.infra.helm import CHART, Helm, built_helm, documents

pytestmark = pytest.mark.integration

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor"}


@pytest.fixture(scope="module")
def helm() -> Helm:
    return built_helm()


def _by_kind(rendered: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents(rendered)}


def test_no_monitoring_resources_by_default(helm: Helm) -> None:
    kinds = _by_kind(helm.template("etl", "ops"))
    assert not MONITORING_KINDS & set(kinds)
    assert "Service" not in kinds


def test_the_service_monitor_reaches_the_operators_metrics(helm: Helm) -> None:
    rendered = helm.template(
        "etl", "ops", "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom",
        "operator.healthPort=9102",
    )  # fmt: skip
    kinds = _by_kind(rendered)
    deployment, service, monitor = kinds["Deployment"], kinds["Service"], kinds["ServiceMonitor"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "health", "containerPort": 9102, "protocol": "TCP"} in container["ports"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9102, "targetPort": "health", "protocol": "TCP"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ops"]}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert "PodMonitor" not in kinds


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        ((), {"any": True}),
        (
            ("watch.clusterWide=false", "watch.namespaces={a,b}", "peering.enabled=false"),
            {"matchNames": ["a", "b"]},
        ),
    ],
)
def test_the_pod_monitor_selects_driver_pods_where_the_operator_watches(
    helm: Helm, values: tuple[str, ...], namespaces: dict[str, Any]
) -> None:
    kinds = _by_kind(helm.template("etl", "ops", "metrics.podMonitor.enabled=true", *values))
    monitor = kinds["PodMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {LABEL_MANAGED_BY: "sparkops-etl", LABEL_COMPONENT: "driver"}
    assert selector.items() <= run_labels("orders", 3, 1).items()
    assert monitor["spec"]["namespaceSelector"] == namespaces
    assert monitor["spec"]["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s"}
    ]
    assert "ServiceMonitor" not in kinds


def test_the_chart_lints_with_both_monitors_and_the_dashboard(helm: Helm) -> None:
    helm.run(
        "lint", "--strict", str(CHART),
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.podMonitor.enabled=true",
        "--set", "metrics.grafanaDashboard.enabled=true",
    )  # fmt: skip


def exposed_series() -> set[str]:
    """Every series name the operator and a streaming driver expose, read back with Prometheus'
    own parser (histograms as _bucket, _sum and _count; counters as _total)."""
    operator = OperatorMetrics()
    # A series with labels is served once it has a value.
    operator.run_records.labels("a/p", "loaded").inc()
    operator.runs_finished.labels("succeeded").inc()
    operator.run_failures.labels("OOMKilled").inc()
    operator.circuit_state.labels("a/p").set(0)
    texts = [
        operator.exposition().decode(),
        stream_exposition("p", {"watermark": "2026-12-06T05:00:00Z"}).decode(),
    ]
    return {
        sample.name
        for text in texts
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_dashboard_is_a_configmap_for_grafanas_sidecar_and_queries_only_real_series(helm: Helm) -> None:
    assert "ConfigMap" not in {d["kind"] for d in documents(helm.template("etl", "ops"))}
    rendered = helm.template(
        "etl", "ops", "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.namespace=monitoring",
        "metrics.grafanaDashboard.annotations.grafana_folder=ETL",
    )  # fmt: skip
    config_map = next(d for d in documents(rendered) if d["kind"] == "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "ETL"}
    dashboard = json.loads(config_map["data"]["sparkops-etl.json"])
    assert dashboard["uid"] == "sparkops-etl"
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(expressions) >= 10
    named = {name for expr in expressions for name in re.findall(r"\betl_[a-z_]+", expr)}
    # A renamed metric leaves a panel empty without any error: every name must be served.
    assert named and named <= exposed_series(), named - exposed_series()
    assert {"etl_operator_run_records_total", "etl_job_input_rows_per_second"} <= named


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("metrics.serviceMonitor.enabled=yes", "/metrics/serviceMonitor/enabled"),
        ("metrics.podMonitor.interval=often", "/metrics/podMonitor/interval"),
        ("metrics.scrape=true", "/metrics"),
        ("metrics.grafanaDashboard.label=", "/metrics/grafanaDashboard/label"),
    ],
)
def test_the_schema_refuses_bad_monitoring_values(helm: Helm, value: str, message: str) -> None:
    refused = helm.run("template", "etl", str(CHART), "--set", value, check=False)
    assert refused.returncode != 0
    assert message in refused.stderr
