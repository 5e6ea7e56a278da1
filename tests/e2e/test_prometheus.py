"""A real Prometheus scrapes the operator while a successful and a failed run of the real job go
through it (the harness's API server, the fake kubelet running the driver as a local process),
a streaming driver run by `etl run`, and a batch driver while its load waits on a table lock;
PromQL, as the chart's dashboard or an alert would ask it, returns what the runs did."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.contract import SecretKeyRef, secret_env_name
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
from tests.infra.postgres import PostgresServer
from tests.infra.process import free_port
from tests.infra.prometheus import PrometheusServer, Sample
from tests.infra.spark import connector_jars

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
    assert finished == {"succeeded": 1.0, "failed": 1.0, "stopped": 0.0}  # each result exists from the start
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


DRIVER_JOB = "etl-driver"
STREAM_EVENT_SCHEMA = {
    "type": "record",
    "name": "StreamEvent",
    "fields": [
        {"name": "event_id", "type": "long"},
        {"name": "amount", "type": "long"},
    ],
}


def test_promql_over_a_streaming_drivers_metrics(prometheus: PrometheusServer, tmp_path: Path) -> None:
    """`etl run` of a streaming pipeline reading three files, one micro-batch each; Prometheus
    scrapes the driver's /metrics on its health port while it runs on, waiting for more files."""
    source = tmp_path / "in"
    source.mkdir()
    events = [{"event_id": i, "amount": i % 7 + 1} for i in range(90)]
    for part in range(3):
        lines = events[part * 30 : (part + 1) * 30]
        (source / f"part-{part}.json").write_text("".join(json.dumps(e) + "\n" for e in lines))
    kept = sum(1 for event in events if event["amount"] > 2)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "stream-event.avsc").write_text(json.dumps(STREAM_EVENT_SCHEMA))
    spec = {
        "mode": "streaming",
        "extract": {"sourceType": "S3", "path": str(source), "format": "json", "schemaName": "stream-event"},
        "transforms": [{"transformType": "Filter", "condition": "amount > 2"}],
        "load": {"sinkType": "S3", "path": str(tmp_path / "out"), "format": "parquet"},
        "streaming": {
            "checkpointLocation": str(tmp_path / "checkpoint"),
            "trigger": {"processingTime": "1 second"},
            "maxFilesPerTrigger": 1,
        },
    }
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline("clicks", spec)))
    port = free_port()
    log = tmp_path / "driver.log"
    with log.open("w") as output:
        driver = subprocess.Popen(
            [sys.executable, "-m", "etl_job.cli", "run", str(config), "--master", "local[2]",
             "--termination-log", str(tmp_path / "termination.json")],
            env={**os.environ, "ETL_HEALTH_PORT": str(port)}, cwd=tmp_path,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    instance = f"127.0.0.1:{port}"
    on = f'job="{DRIVER_JOB}",instance="{instance}"'
    prometheus.scrape(DRIVER_JOB, [instance])
    try:

        def scraped() -> bool:
            assert driver.poll() is None, f"the driver exited: {log.read_text()[-3000:]}"
            health = [
                target
                for target in prometheus.targets()
                if target["scrapeUrl"].startswith(f"http://{instance}/")
            ]
            # Up once /metrics answers; a driver that listens but has no /metrics fails at once.
            assert not health or "404" not in health[0]["lastError"], health[0]["lastError"]
            return bool(health) and health[0]["health"] == "up"

        wait_for("Prometheus to scrape the driver", scraped, timeout=300)

        def three_batches() -> bool:
            assert driver.poll() is None, f"the driver exited: {log.read_text()[-3000:]}"
            return values(prometheus.query(f"etl_job_batches_total{{{on}}}")) == [3.0]

        wait_for("Prometheus to see three micro-batches", three_batches, timeout=300)
        ask = prometheus.query
        records = by_label(ask(f'sum by (stage) (etl_job_records_total{{{on},pipeline="clicks"}})'), "stage")
        assert records == {"extracted": 90.0, "loaded": float(kept), "failed": 0.0, "late": 0.0}
        assert values(ask(f'etl_job_records_total{{{on},stage="loaded"}}')) == [float(kept)]
        assert values(ask(f"etl_job_last_batch_id{{{on}}}")) == [2.0]
        assert values(ask(f"etl_job_sink_breaker_state{{{on}}}")) == [0.0]
        assert values(ask(f"etl_job_stalled{{{on}}}")) == [0.0]
        # The dashboard's records-per-minute panel answers a number for each stage.
        rates = by_label(
            ask(f"sum by (pipeline, stage) (rate(etl_job_records_total{{{on}}}[5m])) * 60"), "stage"
        )
        assert set(rates) == {"extracted", "loaded", "failed", "late"}
        assert all(math.isfinite(rate) and rate >= 0 for rate in rates.values()), rates
    finally:
        prometheus.scrape(DRIVER_JOB, [])
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGTERM)
            try:
                driver.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(30)


def test_promql_over_a_batch_drivers_metrics_while_its_load_waits(
    prometheus: PrometheusServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    """`etl run` of a batch pipeline appending a CSV file to PostgreSQL while the test holds a lock
    that lets the sink read the table but not write it: Prometheus sees the run in its load phase,
    the rows Spark has read, the phases before it timed; the run completes once the lock goes."""
    rows = 3000
    table = f"scraped_{os.getpid()}"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "events.csv").write_text(
        "id,amount\n" + "".join(f"{i},{i % 7}\n" for i in range(rows))
    )
    password = SecretKeyRef(name="pg", key="password")
    spec = {
        "extract": {"sourceType": "S3", "path": str(tmp_path / "in"), "format": "csv",
                    "options": {"header": "true", "inferSchema": "true"}},
        "load": {"sinkType": "PostgreSQL", "table": table, "writeMode": "append",
                 "connection": {"host": postgres.host, "port": postgres.port,
                                "database": postgres.database, "user": postgres.user},
                 "credentialsRef": {"name": password.name, "key": password.key}},
        "spark": {"conf": {"spark.sql.shuffle.partitions": "2"}},
    }  # fmt: skip
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline("orders", spec)))
    holder = postgres.connect()
    with holder.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, amount BIGINT)")
    holder.commit()
    with holder.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")  # reads pass, writes wait
    port = free_port()
    log = tmp_path / "driver.log"
    with log.open("w") as output:
        driver = subprocess.Popen(
            [sys.executable, "-m", "etl_job.cli", "run", str(config), "--master", "local[2]",
             "--termination-log", str(tmp_path / "termination.json")],
            env={**os.environ, "ETL_HEALTH_PORT": str(port), secret_env_name(password): postgres.password,
                 "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars())},
            cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    instance = f"127.0.0.1:{port}"
    on = f'job="{DRIVER_JOB}",instance="{instance}",pipeline="orders"'
    prometheus.scrape(DRIVER_JOB, [instance])
    ask = prometheus.query
    try:

        def loading() -> bool:
            assert driver.poll() is None, f"the driver exited: {log.read_text()[-3000:]}"
            active = by_label(ask(f"etl_job_stage_active{{{on}}} == 1"), "stage")
            read = values(ask(f"etl_job_rows_read_total{{{on}}}"))
            return active == {"load": 1.0} and bool(read) and read[0] >= rows

        wait_for("Prometheus to see the run loading, its rows read", loading, timeout=300)
        durations = by_label(ask(f"etl_job_stage_duration_seconds{{{on}}}"), "stage")
        assert set(durations) == {"start", "extract", "load", "dead-letter"}
        assert durations["start"] > 0 and durations["extract"] > 0 and durations["dead-letter"] == 0
        # The phase under way goes on growing from one scrape to the next.
        def load_seconds() -> float:
            assert driver.poll() is None, f"the driver exited: {log.read_text()[-3000:]}"
            return max(values(ask(f'etl_job_stage_duration_seconds{{{on},stage="load"}}')), default=0.0)

        wait_for("the load's duration to grow", lambda: load_seconds() > durations["load"] + 1, timeout=60)
        records = by_label(ask(f"etl_job_records_total{{{on}}}"), "stage")
        assert records == {"extracted": 0.0, "loaded": 0.0, "failed": 0.0}  # known once the load is done
        assert values(ask(f"etl_job_retries_total{{{on}}}")) == [0.0]
    finally:
        holder.rollback()
        holder.close()
        prometheus.scrape(DRIVER_JOB, [])
        try:
            driver.wait(300)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait(30)
    assert driver.returncode == 0, log.read_text()[-3000:]
    check = postgres.connect()
    with check.cursor() as cursor:
        cursor.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}")
        assert cursor.fetchone() == (rows, rows)
    check.close()
