"""A streaming pipeline on the real node, through the chart's operator: Kafka JSON into a windowed
aggregate upserted into PostgreSQL, the checkpoint in S3. Its status shows the driver's progress
while it runs; editing the spec rolls the driver, and the new one resumes from the checkpoint:
it reads only the events that came after, and the table holds the exact totals."""

from __future__ import annotations

import json
import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.infra.kafka import KafkaBroker
from tests.infra.node import node as real
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server
from tests.node.conftest import SECRET, apply, get, wait_for
from tests.node.test_real_node import delete_pipeline, pipeline, s3_block, status_of

pytestmark = pytest.mark.node

#: A minute boundary; events are spread over three minutes from it, in order, none late.
BASE_MS = 1_790_000_000_000 - 1_790_000_000_000 % 60_000
EVENT_TYPES = ("purchase", "view")


def produce(kafka: KafkaBroker, topic: str, first: int, count: int) -> list[dict[str, Any]]:
    events = [
        {"event_id": i, "user_id": f"u{i % 5}", "country": "FR", "event_type": EVENT_TYPES[i % 2],
         "amount": float(i % 9), "event_time": BASE_MS + i * 250}
        for i in range(first, first + count)
    ]  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for event in events:
        producer.produce(topic, value=json.dumps(event).encode())
    assert producer.flush(30) == 0
    return events


def expected_totals(events: list[dict[str, Any]]) -> dict[tuple[int, str], tuple[int, float]]:
    counts: Counter[tuple[int, str]] = Counter()
    totals: Counter[tuple[int, str]] = Counter()
    for event in events:
        if event["event_type"] == "purchase":
            key = (event["event_time"] // 60_000 * 60, event["user_id"])
            counts[key] += 1
            totals[key] += event["amount"]
    return {key: (counts[key], totals[key]) for key in counts}


def progress_of(node: real.Node, name: str, run: int, extracted: int) -> dict[str, Any] | None:
    """The pipeline's status once `run`'s driver reports `extracted` events read."""
    status = status_of(node, name)
    stream = status.get("streaming") or {}
    return status if (stream.get("run"), stream.get("recordsExtracted")) == (run, extracted) else None


def test_a_streaming_pipeline_shows_progress_and_resumes_from_its_checkpoint_after_a_spec_edit(
    operator: real.Node,
    credentials: dict[str, str],
    node_kafka: KafkaBroker,
    node_postgres: PostgresServer,
    node_s3: S3Server,
) -> None:
    name = f"s{secrets.token_hex(3)}"
    topic, table, bucket = f"events-{name}", f"per_minute_{name}", f"checkpoints-{name}"
    node_kafka.create_topic(topic, partitions=2)
    node_s3.create_bucket(bucket)
    first = produce(node_kafka, topic, 0, 400)
    spec: dict[str, Any] = {
        "mode": "streaming",
        "extract": {"sourceType": "Kafka", "bootstrapServers": node_kafka.bootstrap_servers,
                    "topic": topic, "startingOffsets": "earliest", "schemaName": "user-event"},
        "transforms": [
            {"transformType": "Filter", "condition": "event_type = 'purchase'"},
            {"transformType": "Window", "timeColumn": "event_time", "windowDuration": "1 minute",
             "watermark": "10 minutes", "groupBy": ["user_id"],
             "aggregations": [{"column": "*", "function": "count", "as": "purchases"},
                              {"column": "amount", "function": "sum", "as": "total"}]},
        ],
        "load": {"sinkType": "PostgreSQL",
                 "connection": {"host": node_postgres.host, "port": node_postgres.port,
                                "database": "etl", "user": node_postgres.user},
                 "credentialsRef": {"name": SECRET, "key": "postgres-password"},
                 "table": table, "writeMode": "upsert", "primaryKey": ["window_start", "user_id"]},
        "streaming": {"checkpointLocation": f"s3a://{bucket}/{name}", "s3": s3_block(node_s3),
                      "trigger": {"processingTime": "2 seconds"}, "maxOffsetsPerTrigger": 100},
        "spark": {"executors": 0, "driver": {"cores": 1, "memory": "1g"},
                  "conf": {"spark.sql.shuffle.partitions": "2"}},
    }  # fmt: skip
    apply(operator, pipeline(name, spec))

    # The first driver: its progress reaches the status while it runs.
    shown = wait_for(
        "run 1's progress to count the first 400 events",
        lambda: progress_of(operator, name, 1, 400),
        timeout=900,
        every=2,
    )
    stream = shown["streaming"]
    assert stream["batches"] >= 4 and stream["lastBatchId"] >= 3  # at most 100 messages per batch
    assert stream["sinkBreaker"] == "closed" and stream["stalled"] is False
    assert stream["recordsFailed"] == 0 and stream["recordsLate"] == 0
    assert stream["watermark"] and stream["lastBatchTime"] and stream["observedAt"]
    conditions = {c["type"]: c for c in shown["conditions"]}
    assert conditions["Ready"]["status"] == "True", conditions["Ready"]
    assert conditions["Stalled"]["status"] == "False", conditions["Stalled"]
    driver = get(operator, "pod", shown["currentRun"]["pod"])
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in driver["status"]["conditions"]), (
        "the driver's readiness probe (/readyz) passes while batches complete"
    )

    # A spec edit: the operator stops driver 1 at a batch boundary and starts driver 2 with it.
    spec["streaming"]["maxOffsetsPerTrigger"] = 50
    apply(operator, pipeline(name, spec))
    second = produce(node_kafka, topic, 400, 200)
    rolled = wait_for(
        "run 2's progress to count the 200 new events",
        lambda: progress_of(operator, name, 2, 200),
        timeout=900,
        every=2,
    )
    runs = {r["run"]: r for r in rolled["runs"]}
    assert runs[1]["phase"] == "Stopped" and runs[1]["reason"] == "SpecChanged", runs[1]
    assert runs[1]["exitCode"] == 0, "SIGTERM stops the first driver at a batch boundary with exit 0"
    assert runs[2]["generation"] == 2

    # Driver 2 read only what came after (the checkpoint, not startingOffsets, says where from).
    expected = expected_totals(first + second)

    def table_rows() -> dict[tuple[int, str], tuple[int, float]]:
        with node_postgres.connect("etl") as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT EXTRACT(EPOCH FROM window_start)::bigint, user_id, purchases, total FROM {table}"
            )
            return {(int(at), user): (count, float(total)) for at, user, count, total in cur.fetchall()}

    wait_for("the table to hold the exact totals", lambda: table_rows() == expected, timeout=120, every=2)
    assert datetime.fromisoformat(rolled["streaming"]["observedAt"]) <= datetime.now(UTC)
    delete_pipeline(operator, name)
