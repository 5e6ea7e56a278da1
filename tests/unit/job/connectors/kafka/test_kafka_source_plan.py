"""The Kafka source's plan after its messages are fetched (KafkaTopicSource._decoded on a small
frame shaped like Spark's Kafka rows, no broker): each value is parsed once, even under the
filters that set undecodable messages aside or fail the run, and counters sit only where
something can be counted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from etl_job.connectors.kafka.connector import KafkaTopicSource
from etl_job.contract import KafkaSource
from etl_job.quality.guard import record_violation
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext

REPO = Path(__file__).resolve().parents[5]
SCHEMAS = SchemaRegistry([REPO / "examples" / "schemas"])
RAW_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, "
    "timestampType int"
)
GOOD = (
    b'{"event_id":1,"user_id":"u1","country":"DE","event_type":"view","amount":0.0,'
    b'"event_time":"2026-11-01T10:00:00Z"}'
)
NOT_JSON = b"not json"


def raw(spark: SparkSession, values: list[bytes]) -> Any:
    sent = datetime(2026, 11, 1, tzinfo=UTC)
    rows = [(None, bytearray(v), "events", 0, offset, sent, 0) for offset, v in enumerate(values)]
    return spark.createDataFrame(rows, RAW_SCHEMA)


def source(spark: SparkSession, values: list[bytes], tolerance: str) -> tuple[Any, RunContext]:
    block = KafkaSource.model_validate(
        {
            "sourceType": "Kafka",
            "bootstrapServers": "localhost:9092",
            "topic": "events",
            "schemaName": "user-event",
            "metadataColumns": ["offset"],
        }
    )
    context = RunContext(pipeline="p", spark=spark, schemas=SCHEMAS, env={}, tolerance=tolerance)
    frame = KafkaTopicSource()._decoded(raw(spark, values), block, SCHEMAS.get("user-event"), context)
    return frame, context


def optimized(frame: Any) -> str:
    return str(frame._jdf.queryExecution().optimizedPlan().toString())


@pytest.mark.parametrize("tolerance", ["none", "all"])
def test_each_value_is_parsed_once_under_the_checks(spark: SparkSession, tolerance: str) -> None:
    frame, _ = source(spark, [GOOD], tolerance)
    # As a later check of the rows (validation) would: a filter over the decoded columns.
    checked = frame.where(F.when(F.col("event_id").isNull(), F.raise_error(F.lit("x"))).otherwise(True))

    plan = optimized(checked)

    assert plan.count("from_json(") == 1, plan


def test_tolerance_none_counts_nothing_and_fails_naming_the_message(spark: SparkSession) -> None:
    frame, context = source(spark, [GOOD, NOT_JSON], "none")

    assert "CollectMetrics" not in optimized(frame)
    with pytest.raises(Exception) as failed:
        frame.collect()
    assert record_violation(failed.value) == (
        "extract: topic events partition 0 offset 1: value is not JSON of Avro schema user-event"
    )
    [checkpoint] = context.report.checkpoints
    assert checkpoint.counter.values() == {}


def test_tolerance_none_loads_decodable_messages(spark: SparkSession) -> None:
    frame, context = source(spark, [GOOD, GOOD], "none")

    rows = frame.orderBy("kafka_offset").collect()

    assert [(r["event_id"], r["event_type"], r["kafka_offset"]) for r in rows] == [
        (1, "view", 0),
        (1, "view", 1),
    ]
    assert rows[0]["event_time"] == datetime(2026, 11, 1, 10, tzinfo=UTC).replace(tzinfo=None)
    assert context.report.checkpoints[0].counter.values() == {}


def test_tolerance_all_counts_and_letters_the_undecodable(spark: SparkSession) -> None:
    frame, context = source(spark, [GOOD, NOT_JSON, GOOD], "all")

    loaded = frame.count()

    [checkpoint] = context.report.checkpoints
    assert (loaded, checkpoint.counter.values()) == (2, {"rows": 3, "failed": 1})
    [letter] = checkpoint.rejected.collect()
    assert (letter["errorType"], letter["originalRecord"], letter["context"]["offset"]) == (
        "UndecodableValue",
        "not json",
        "1",
    )
