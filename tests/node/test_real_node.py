"""On the real node: the chart's operator launches real driver pods from the job image, Spark's
Kubernetes backend starts executor pods, and what a user checks holds: the rows in the target,
the status, the failure classes (an image that cannot be pulled, a driver killed by its memory
limit), clean-up on delete, adoption by a new operator pod, and no secret value anywhere."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.infra.kafka import KafkaBroker
from tests.infra.mariadb import MySQLServer
from tests.infra.node import node as real
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server
from tests.node.conftest import OPERATOR_NAMESPACE, PIPELINES_NAMESPACE, SECRET, apply, get, wait_for

pytestmark = pytest.mark.node

LABEL_PIPELINE = "etl.sparkops.io/pipeline"
#: Spark's driver needs the API for executors; one core of the node's two is the driver's.
SMALL_EXECUTORS = {"spark.kubernetes.executor.request.cores": "200m"}


def pipeline(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name, "namespace": PIPELINES_NAMESPACE},
        "spec": spec,
    }


def status_of(node: real.Node, name: str) -> dict[str, Any]:
    return dict(get(node, "etlpipeline", name).get("status") or {})


def wait_for_phase(node: real.Node, name: str, *phases: str, timeout: float = 600) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(
        f"{name} to reach {' or '.join(phases)}",
        lambda: (s := status_of(node, name)) and s.get("phase") in phases and s,
        timeout=timeout,
        every=2,
    )
    return result


def delete_pipeline(node: real.Node, name: str) -> None:
    node.kubectl_run(
        "delete", "etlpipeline", name, "-n", PIPELINES_NAMESPACE, "--ignore-not-found", "--wait=true"
    )


def s3_block(server: S3Server) -> dict[str, Any]:
    return {
        "endpoint": server.endpoint,
        "region": server.region,
        "pathStyleAccess": True,
        "accessKeyRef": {"name": SECRET, "key": "s3-access-key"},
        "secretKeyRef": {"name": SECRET, "key": "s3-secret-key"},
    }


def events_csv(rows: int) -> tuple[bytes, dict[int, tuple[int, int]]]:
    """Events of 37 users; per user the expected (count, total amount)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["event_id", "user_id", "amount"])
    expected: dict[int, tuple[int, int]] = {}
    for event in range(rows):
        user, amount = event % 37, (event * 7) % 100
        writer.writerow([event, user, amount])
        count, total = expected.get(user, (0, 0))
        expected[user] = (count + 1, total + amount)
    return out.getvalue().encode(), expected


def slow_rows(milliseconds: int) -> str:
    """SQL that passes each row on after a pause: time to act on a run while it runs."""
    pause = f"reflect('java.lang.Thread', 'sleep', CAST({milliseconds} AS BIGINT))"
    return f"SELECT i.*, {pause} AS slept FROM input i"


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    value = f"p{secrets.token_hex(3)}"
    yield value


def test_batch_with_two_executors_upserts_exact_rows_from_s3_into_postgres(
    operator: real.Node,
    credentials: dict[str, str],
    node_s3: S3Server,
    node_postgres: PostgresServer,
    name: str,
) -> None:
    bucket = f"events-{name}"
    node_s3.create_bucket(bucket)
    body, expected = events_csv(3000)
    node_s3.client().put_object(Bucket=bucket, Key="events/part-0.csv", Body=body)
    table = f"user_totals_{name}"
    spec = {
        "mode": "batch",
        "extract": {
            "sourceType": "S3",
            "path": f"s3a://{bucket}/events/",
            "format": "csv",
            "options": {"header": "true"},
            "s3": s3_block(node_s3),
        },
        "transforms": [
            {
                "transformType": "Aggregation",
                "groupBy": ["user_id"],
                "aggregations": [
                    {"column": "event_id", "function": "count", "as": "events"},
                    {"column": "amount", "function": "sum", "as": "total"},
                ],
            },
            {
                "transformType": "SQL",
                "query": "SELECT CAST(user_id AS INT) AS user_id, events, CAST(total AS BIGINT) AS total "
                "FROM input",
            },
        ],
        "load": {
            "sinkType": "PostgreSQL",
            "connection": {
                "host": node_postgres.host,
                "port": node_postgres.port,
                "database": "etl",
                "user": node_postgres.user,
            },
            "credentialsRef": {"name": SECRET, "key": "postgres-password"},
            "table": table,
            "writeMode": "upsert",
            "primaryKey": ["user_id"],
        },
        "spark": {
            "executors": 2,
            "driver": {"cores": 1, "memory": "1g"},
            "executor": {"cores": 1, "memory": "512m"},
            "conf": SMALL_EXECUTORS,
        },
    }
    apply(operator, pipeline(name, spec))
    seen_executors: set[str] = set()

    def executors_running() -> bool:
        pods = get(operator, "pods", selector=f"{LABEL_PIPELINE}={name},spark-role=executor")["items"]
        for pod in pods:
            if pod["status"].get("phase") == "Running":
                seen_executors.add(pod["metadata"]["name"])
            owners = pod["metadata"].get("ownerReferences", [])
            assert owners and owners[0]["kind"] == "Pod" and owners[0]["name"].endswith("-driver")
        return len(seen_executors) >= 2 or status_of(operator, name).get("phase") in ("Succeeded", "Failed")

    wait_for("two executor pods running", executors_running, timeout=600, every=1)
    status = wait_for_phase(operator, name, "Succeeded", "Failed", "Backoff")
    assert status["phase"] == "Succeeded", json.dumps(status, indent=2)
    assert len(seen_executors) >= 2
    metrics = status["lastRun"]["metrics"]
    assert metrics["recordsExtracted"] == 3000
    assert metrics["recordsLoaded"] == len(expected)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    with node_postgres.connect("etl") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT user_id, events, total FROM {table} ORDER BY user_id")
        rows = cur.fetchall()
    assert {user: (events, total) for user, events, total in rows} == expected
    assert_one_trace(operator, name, status["lastRun"])
    delete_pipeline(operator, name)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def assert_one_trace(node: real.Node, name: str, run: dict[str, Any]) -> None:
    """The run's traceId is on the operator's lines about the run and on the driver's own, the
    Python job's and Spark's JVM lines alike: one query follows the run across both planes."""
    trace = run["traceId"]
    assert len(trace) == 32 and int(trace, 16) >= 0
    driver = json_lines(node.kubectl_run("logs", run["pod"], "-n", PIPELINES_NAMESPACE).stdout)
    traced = [line for line in driver if line.get("traceId") == trace]
    assert any(line["logger"].startswith("etl_job") for line in traced), driver[-5:]
    assert any(line["logger"].startswith("org.apache.spark") for line in traced), driver[-5:]
    for line in traced:
        assert (line["pipeline"], line["namespace"]) == (name, PIPELINES_NAMESPACE)
        assert line["run"] == f"{name}-run-{run['run']}" and line["generation"] == str(run["generation"])
    operator = json_lines(
        node.kubectl_run(
            "logs", "-n", OPERATOR_NAMESPACE, "-l", "app.kubernetes.io/name=sparkops-etl", "--tail=-1",
            "--max-log-requests=4",
        ).stdout
    )  # fmt: skip
    messages = {line["message"].split(":")[0] for line in operator if line.get("traceId") == trace}
    assert {"RunLaunched", "RunStarted", "RunSucceeded"} <= messages, messages


def test_local_mode_pipeline_loads_exact_rows_from_kafka_into_mysql(
    operator: real.Node,
    credentials: dict[str, str],
    node_kafka: KafkaBroker,
    node_mysql: MySQLServer,
    name: str,
) -> None:
    topic = f"events-{name}"
    node_kafka.create_topic(topic, partitions=2)
    countries = ("DE", "FR", "JP", "BR")
    events = [
        {"event_id": i, "user_id": f"u{i % 50:03d}", "country": countries[i % 4], "event_type": "purchase",
         "amount": float(i % 90), "event_time": 1_790_000_000_000 + i * 1000}
        for i in range(500)
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": node_kafka.bootstrap_servers})
    for event in events:
        producer.produce(topic, value=json.dumps(event).encode())
    assert producer.flush(30) == 0
    table = f"events_{name}"
    spec = {
        "mode": "batch",
        "extract": {
            "sourceType": "Kafka",
            "bootstrapServers": node_kafka.bootstrap_servers,
            "topic": topic,
            "startingOffsets": "earliest",
            "endingOffsets": "latest",
            "valueFormat": "json",
            "schemaName": "user-event",
        },
        "transforms": [{"transformType": "Select", "columns": ["event_id", "user_id", "country", "amount"]}],
        "load": {
            "sinkType": "MySQL",
            "connection": {
                "host": node_mysql.host,
                "port": node_mysql.port,
                "database": "etl",
                "user": node_mysql.user,
            },
            "credentialsRef": {"name": SECRET, "key": "mysql-password"},
            "table": table,
            "writeMode": "append",
        },
        "spark": {"executors": 0, "driver": {"cores": 1, "memory": "1g"}},
    }
    apply(operator, pipeline(name, spec))
    status = wait_for_phase(operator, name, "Succeeded", "Failed", "Backoff")
    assert status["phase"] == "Succeeded", json.dumps(status, indent=2)
    with node_mysql.connect("etl") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT event_id, user_id, country, amount FROM {table} ORDER BY event_id")
        rows = cur.fetchall()
    assert [tuple(row) for row in rows] == [
        (e["event_id"], e["user_id"], e["country"], e["amount"]) for e in events
    ]
    delete_pipeline(operator, name)


def test_an_image_that_cannot_be_pulled_is_classified_and_backed_off(operator: real.Node, name: str) -> None:
    spec = {
        "mode": "batch",
        "extract": {"sourceType": "S3", "path": "/opt/etl/examples/data/events.csv", "format": "csv"},
        "load": {"sinkType": "S3", "path": "/tmp/out", "format": "parquet", "writeMode": "overwrite"},
        "spark": {"image": "sparkops-etl/job:not-built", "driver": {"cores": 1, "memory": "512m"}},
        "restartPolicy": {
            "type": "OnFailure",
            "maxRetries": 5,
            "initialBackoffSeconds": 5,
            "maxBackoffSeconds": 60,
        },
    }
    apply(operator, pipeline(name, spec))
    status = wait_for(
        "the run to be classified as an image pull failure",
        lambda: (s := status_of(operator, name)).get("lastRun", {}).get("reason") == "ImagePullBackOff" and s,
        timeout=300,
        every=2,
    )
    assert "cannot be pulled" in status["lastRun"]["message"]
    assert status["phase"] in ("Backoff", "Pending", "Running")
    # Backoff, not a tight loop: a minute later only a handful of driver pods were ever made.
    runs_then = status.get("runCount", 0)
    time.sleep(60)
    runs_now = status_of(operator, name).get("runCount", 0)
    assert runs_now - runs_then <= 3
    delete_pipeline(operator, name)


def test_deleting_a_pipeline_removes_driver_executors_services_and_config_maps(
    operator: real.Node, credentials: dict[str, str], node_s3: S3Server, name: str
) -> None:
    bucket = f"slow-{name}"
    node_s3.create_bucket(bucket)
    body, _ = events_csv(500)
    node_s3.client().put_object(Bucket=bucket, Key="events/part-0.csv", Body=body)
    spec = {
        "mode": "batch",
        "extract": {
            "sourceType": "S3",
            "path": f"s3a://{bucket}/events/",
            "format": "csv",
            "options": {"header": "true"},
            "s3": s3_block(node_s3),
        },
        # A query that keeps the executors busy long enough to delete the pipeline mid-run.
        "transforms": [
            {
                "transformType": "SQL",
                "query": slow_rows(200),
            }
        ],
        "load": {
            "sinkType": "S3",
            "path": f"s3a://{bucket}/out/",
            "format": "parquet",
            "writeMode": "overwrite",
            "s3": s3_block(node_s3),
        },
        "spark": {
            "executors": 2,
            "driver": {"cores": 1, "memory": "1g"},
            "executor": {"cores": 1, "memory": "512m"},
            "conf": SMALL_EXECUTORS,
        },
    }
    apply(operator, pipeline(name, spec))
    wait_for(
        "executor pods",
        lambda: (
            len(get(operator, "pods", selector=f"{LABEL_PIPELINE}={name},spark-role=executor")["items"]) >= 1
        ),
        timeout=600,
    )
    delete_pipeline(operator, name)

    def all_gone() -> bool:
        left = [
            item["metadata"]["name"]
            for kind in ("pods", "services", "configmaps")
            for item in get(operator, kind, selector=f"{LABEL_PIPELINE}={name}")["items"]
        ]
        return not left

    wait_for("driver, executors, Services and ConfigMaps to be gone", all_gone, timeout=180)


def test_no_secret_value_in_pod_specs_config_maps_events_status_or_logs(
    operator: real.Node, credentials: dict[str, str]
) -> None:
    """After the runs above: every pod spec, ConfigMap, event and ETLPipeline status in the
    pipelines' namespace, and the logs of the operator's and the remaining pods, hold no credential."""
    texts = []
    for kind in ("pods", "configmaps", "events", "etlpipelines"):
        texts.append(operator.kubectl_run("get", kind, "-n", PIPELINES_NAMESPACE, "-o", "json").stdout)
    for namespace in (PIPELINES_NAMESPACE, OPERATOR_NAMESPACE):
        for pod in get(operator, "pods", namespace=namespace)["items"]:
            done = operator.kubectl_run(
                "logs", "-n", namespace, pod["metadata"]["name"], "--all-containers", check=False
            )
            texts.append(done.stdout)
    everything = "\n".join(texts)
    for key, value in credentials.items():
        assert value not in everything, f"the value of {key} leaked"


def test_a_driver_killed_by_its_memory_limit_is_retried_then_the_circuit_opens_and_half_opens(
    operator: real.Node, name: str
) -> None:
    spec = {
        "mode": "batch",
        "extract": {"sourceType": "S3", "path": "/opt/etl/examples/data/events.csv", "format": "csv"},
        "load": {
            "sinkType": "S3",
            "path": "/var/lib/spark/local/out",
            "format": "parquet",
            "writeMode": "overwrite",
        },
        # The JVM touches a 700 MiB heap at start, in a container limited to 320 MiB.
        "spark": {
            "driver": {"cores": 1, "memory": "1g"},
            "conf": {"spark.driver.extraJavaOptions": "-Xms700m -XX:+AlwaysPreTouch"},
        },
        "podTemplate": {
            "spec": {
                "containers": [
                    {
                        "name": "driver",
                        "resources": {
                            "requests": {"cpu": "250m", "memory": "320Mi"},
                            "limits": {"memory": "320Mi"},
                        },
                    }
                ]
            }
        },
        "restartPolicy": {
            "type": "OnFailure",
            "maxRetries": 10,
            "initialBackoffSeconds": 2,
            "maxBackoffSeconds": 10,
        },
        "errorHandling": {"circuitBreaker": {"failureThreshold": 2, "resetTimeoutSeconds": 30}},
    }
    apply(operator, pipeline(name, spec))
    status = wait_for(
        "the circuit to open after two OOMKilled runs",
        lambda: (s := status_of(operator, name)).get("circuit", {}).get("state") == "Open" and s,
        timeout=420,
        every=2,
    )
    assert status["lastRun"]["reason"] == "OOMKilled", json.dumps(status, indent=2)
    assert status["phase"] == "CircuitOpen"
    assert status["runCount"] == 2
    # No launch while open; after the cool-down one half-open trial run starts.
    time.sleep(15)
    assert status_of(operator, name)["runCount"] == 2
    trial = wait_for(
        "a half-open trial run",
        lambda: (s := status_of(operator, name)).get("runCount", 0) >= 3 and s,
        timeout=180,
        every=2,
    )
    assert trial["circuit"]["state"] in ("HalfOpen", "Open")
    delete_pipeline(operator, name)


def test_a_new_operator_pod_adopts_a_running_driver_without_a_twin(operator: real.Node, name: str) -> None:
    spec = {
        "mode": "batch",
        "extract": {
            "sourceType": "S3",
            "path": "/opt/etl/examples/data/events.csv",
            "format": "csv",
            "options": {"header": "true"},
        },
        # About 40 seconds of work: time to replace the operator while the driver runs.
        "transforms": [
            {
                "transformType": "SQL",
                "query": slow_rows(20),
            }
        ],
        "load": {
            "sinkType": "S3",
            "path": "/var/lib/spark/local/out",
            "format": "parquet",
            "writeMode": "overwrite",
        },
        "spark": {"driver": {"cores": 1, "memory": "1g"}},
    }
    apply(operator, pipeline(name, spec))
    wait_for_phase(operator, name, "Running", timeout=300)
    for pod in get(operator, "pods", namespace=OPERATOR_NAMESPACE)["items"]:
        operator.kubectl_run(
            "delete", "pod", "-n", OPERATOR_NAMESPACE, pod["metadata"]["name"], "--wait=false"
        )
    status = wait_for_phase(operator, name, "Succeeded", "Failed", "Backoff", timeout=600)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=2)
    assert status["runCount"] == 1
    drivers = get(operator, "pods", selector=f"{LABEL_PIPELINE}={name},app.kubernetes.io/component=driver")[
        "items"
    ]
    assert [pod["metadata"]["name"] for pod in drivers] == [f"{name}-run-1-driver"]
    delete_pipeline(operator, name)
