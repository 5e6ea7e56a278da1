"""The operator's /metrics after real runs, and its pipelines' health as Argo CD and Flux judge
it: the operator runs against the harness's API server with the fake kubelet, a successful and a
failed run happen, then /metrics is scraped and the objects as the API serves them are judged by
the chart's Lua script (gopher-lua) and by kstatus (cli-utils)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_operator import (  # noqa: F401 - fixtures used by name
    apply,
    chart_rbac,
    crd,
    file_pipeline,
    get,
    operator,
    operator_env,
    pipeline,
    status,
    wait_for,
)
from tests.infra.health_checks import built_health_checks
from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.e2e


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    port = os.environ["ETL_OPERATOR_HEALTH_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.usefixtures("operator")
def test_metrics_and_gitops_health_after_a_successful_and_a_failed_run(
    kube_cluster: KubeCluster, namespace: str, fake_kubelet: Any, tmp_path: Path
) -> None:
    fake_kubelet.flip_phases(message=json.dumps({"recordsLoaded": 6}), exit_code=0, running_seconds=1)
    apply(kube_cluster, namespace, pipeline("good", file_pipeline(tmp_path)))
    wait_for(
        "the run to succeed", lambda: status(kube_cluster, namespace, "good").get("phase") == "Succeeded"
    )

    # exit code 2: a configuration error, not retried.
    fake_kubelet.flip_phases(message=json.dumps({"errors": ["bad column"]}), exit_code=2)
    apply(kube_cluster, namespace, pipeline("bad", file_pipeline(tmp_path)))
    wait_for("the run to fail", lambda: status(kube_cluster, namespace, "bad").get("phase") == "Failed")

    def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        seen = scrape()
        done = seen.get(("etl_operator_runs_finished_total", (("result", "failed"),)), 0) >= 1
        return seen if done and seen[("etl_operator_pipelines", (("phase", "Failed"),))] == 1 else None

    seen = wait_for("the metrics of both runs", settled, timeout=30)
    assert seen[("etl_operator_runs_started_total", ())] == 2
    assert seen[("etl_operator_runs_finished_total", (("result", "succeeded"),))] == 1
    assert seen[("etl_operator_runs_finished_total", (("result", "failed"),))] == 1
    assert seen[("etl_operator_run_failures_total", (("reason", "ConfigurationError"),))] == 1
    assert seen[("etl_operator_pipelines", (("phase", "Succeeded"),))] == 1
    assert seen[("etl_operator_circuit_state", (("pipeline", f"{namespace}/good"),))] == 0
    assert seen[("etl_operator_launch_latency_seconds_count", ())] == 2
    assert 0 <= seen[("etl_operator_launch_latency_seconds_sum", ())] < 60
    assert seen[("etl_operator_driver_start_latency_seconds_count", ())] == 2
    assert seen[("etl_operator_reconcile_duration_seconds_count", ())] >= 4

    objects = [get(kube_cluster, namespace, "etlp", name) for name in ("good", "bad")]
    checks = built_health_checks()
    argocd = [result["status"] for result in checks.argocd(objects)]
    kstatus = [result["status"] for result in checks.kstatus(objects)]
    assert (argocd, kstatus) == (["Healthy", "Degraded"], ["Current", "Failed"])
