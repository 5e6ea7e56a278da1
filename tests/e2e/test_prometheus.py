"""A real Prometheus scrapes the operator while a successful and a failed run of the real job go
through it (the harness's API server, the fake kubelet running the driver as a local process),
and PromQL, as a dashboard or an alert would ask it, returns what the runs did."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_operator import (  # noqa: F401 - fixtures used by name
    apply,
    chart_rbac,
    crd,
    file_pipeline,
    operator,
    operator_env,
    pipeline,
    status,
    wait_for,
)
from tests.infra.kube import KubeCluster
from tests.infra.prometheus import PrometheusServer, Sample

pytestmark = pytest.mark.e2e

OPERATOR_JOB = "etl-operator"


@pytest.fixture
def scraped_operator(operator: Any, prometheus: PrometheusServer) -> Iterator[str]:  # noqa: F811
    """The running operator as a scrape target of Prometheus; yields the label matchers of its
    series (its job and instance: Prometheus lives for the whole session, operators per test)."""
    instance = f"127.0.0.1:{os.environ['ETL_OPERATOR_HEALTH_PORT']}"
    prometheus.scrape(OPERATOR_JOB, [instance])
    matchers = f'job="{OPERATOR_JOB}",instance="{instance}"'
    # Scraped before any run: a rate() then sees every count rise from the operator's zero.
    wait_for(
        "Prometheus to scrape the operator",
        lambda: values(prometheus.query(f"up{{{matchers}}}")) == [1.0],
        timeout=60,
    )
    yield matchers
    prometheus.scrape(OPERATOR_JOB, [])


def values(samples: list[Sample]) -> list[float]:
    return [value for _, value in samples]


def by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in samples}


def test_promql_over_the_operators_metrics_after_a_successful_and_a_failed_run(
    kube_cluster: KubeCluster,
    namespace: str,
    fake_kubelet: Any,
    scraped_operator: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    on = scraped_operator
    apply(kube_cluster, namespace, pipeline("good", file_pipeline(tmp_path)))
    wait_for(
        "the run to succeed",
        lambda: status(kube_cluster, namespace, "good").get("phase") == "Succeeded",
        timeout=300,
    )
    loaded = status(kube_cluster, namespace, "good")["lastRun"]["metrics"]["recordsLoaded"]
    assert loaded == 6  # one row per country

    # A schema the job does not have: a configuration error (exit code 2), not retried.
    bad = file_pipeline(tmp_path / "bad")
    bad["extract"]["schemaName"] = "no-such-schema"
    apply(kube_cluster, namespace, pipeline("bad", bad))
    wait_for(
        "the run to fail",
        lambda: status(kube_cluster, namespace, "bad").get("phase") == "Failed",
        timeout=300,
    )

    failed_runs = f'etl_operator_runs_finished_total{{{on},result="failed"}}'
    wait_for(
        "Prometheus to have scraped the failed run",
        lambda: values(prometheus.query(failed_runs)) == [1.0],
        timeout=30,
    )
    ask = prometheus.query
    finished = by_label(ask(f"sum by (result) (etl_operator_runs_finished_total{{{on}}})"), "result")
    assert finished == {"succeeded": 1.0, "failed": 1.0}
    failures = by_label(ask(f"sum by (reason) (etl_operator_run_failures_total{{{on}}})"), "reason")
    assert failures == {"ConfigurationError": 1.0}
    assert values(ask(f"sum(etl_operator_runs_started_total{{{on}}})")) == [2.0]

    records = f'etl_operator_run_records_total{{{on},pipeline="{namespace}/good"'
    assert values(ask(records + ',stage="loaded"}')) == [float(loaded)]
    assert values(ask(records + ',stage="extracted"}')) == [2000.0]
    assert values(ask(records + ',stage="failed"}')) == [0.0]

    circuits = by_label(ask(f"etl_operator_circuit_state{{{on}}}"), "pipeline")
    assert circuits == {f"{namespace}/good": 0.0, f"{namespace}/bad": 0.0}  # closed after one failure
    assert ask(f"etl_operator_circuit_state{{{on}}} > 0") == []  # the dashboard's open circuits
    phases = by_label(ask(f"etl_operator_pipelines{{{on}}} > 0"), "phase")
    assert phases == {"Succeeded": 1.0, "Failed": 1.0}

    # The dashboard's latency panels: the 95th percentile of the launches in the last 15 minutes.
    for histogram in ("launch_latency", "driver_start_latency"):
        quantile = values(
            ask(
                "histogram_quantile(0.95, sum by (le) "
                f"(rate(etl_operator_{histogram}_seconds_bucket{{{on}}}[15m])))"
            )
        )
        assert len(quantile) == 1 and math.isfinite(quantile[0]) and 0 <= quantile[0] <= 300, quantile
