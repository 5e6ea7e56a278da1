"""Benchmark: the job's Kafka source against hand-written PySpark doing the same read, in one process.

Work: read N JSON event messages from a topic -> parse them with the user-event schema -> write
Parquet. The topic is filled once per run with confluent-kafka, on a local broker from the test
harness. Two runs per round, order alternated between rounds:
  baseline    hand-written PySpark (Kafka reader, from_json with an explicit schema, write)
  framework   the same through etl_job.pipeline.run_pipeline: a Kafka source naming the
              user-event schema (so undecodable messages are set aside, every row is checked
              against the schema, and rows are counted) into an S3 (file) sink
The medians are reported as rows/s and as the framework/baseline throughput ratio (goal >= 0.9),
both per wall second and per CPU second of the Spark JVM (steadier on a shared machine), with
the machine and its load.

  .venv/bin/python bench/kafka_vs_pyspark.py --rows 2000000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from measure import jvm_cpu_seconds, machine, timed

REPO = Path(__file__).resolve().parents[1]
TOPIC = "bench-events"
PARTITIONS = 4


def fill_topic(bootstrap_servers: str, rows: int) -> float:
    """N user-event messages as JSON, spread over the partitions; returns seconds taken."""
    from confluent_kafka import Producer

    countries = ("DE", "FR", "US", "BR", "JP", "IN")
    kinds = ("purchase", "purchase", "refund", "view")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500000,
        }
    )
    started = time.perf_counter()
    for i in range(rows):
        event_time = (start + timedelta(seconds=(i * 37) % 1209600)).strftime("%Y-%m-%dT%H:%M:%SZ")
        value = (
            f'{{"event_id":{i + 1},"user_id":"u{(i * 7919) % 50000:05d}",'
            f'"country":"{countries[(i * 31) % 6]}","event_type":"{kinds[(i * 17) % 4]}",'
            f'"amount":{((i * 104729) % 25000) / 100:.2f},"event_time":"{event_time}"}}'
        )
        while True:
            try:
                producer.produce(TOPIC, value.encode(), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("messages left unsent")
    return time.perf_counter() - started


def baseline(spark: Any, bootstrap_servers: str, output: Path) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import (
        DoubleType,
        IntegerType,
        StringType,
        StructField,
        StructType,
        TimestampType,
    )

    schema = StructType(
        [
            StructField("event_id", IntegerType()),
            StructField("user_id", StringType()),
            StructField("country", StringType()),
            StructField("event_type", StringType()),
            StructField("amount", DoubleType()),
            StructField("event_time", TimestampType()),
        ]
    )
    (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", TOPIC)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
        .select(F.from_json(F.col("value").cast("string"), schema).alias("event"))
        .select("event.*")
        .write.mode("overwrite")
        .parquet(str(output))
    )


def framework(spark: Any, bootstrap_servers: str, output: Path) -> dict[str, Any]:
    from etl_job.contract.manifest import parse_manifest
    from etl_job.pipeline import run_pipeline
    from etl_job.quality.schemas import SchemaRegistry
    from etl_job.runtime.context import RunContext

    pipeline = parse_manifest(
        {
            "metadata": {"name": "bench-kafka"},
            "spec": {
                "extract": {
                    "sourceType": "Kafka",
                    "bootstrapServers": bootstrap_servers,
                    "topic": TOPIC,
                    "valueFormat": "json",
                    "schemaName": "user-event",
                },
                "load": {
                    "sinkType": "S3",
                    "path": str(output),
                    "format": "parquet",
                    "writeMode": "overwrite",
                },
            },
        }
    )
    schemas = SchemaRegistry([REPO / "examples" / "schemas"])
    context = RunContext(pipeline="bench-kafka", spark=spark, schemas=schemas, env={})
    return run_pipeline(pipeline, context, schemas).model_dump(mode="json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))  # the test harness starts the broker and finds the connector jars
    from etl_job.contract import SparkSettings
    from etl_job.runtime.session import build_session
    from tests.infra.kafka import start_kafka
    from tests.infra.spark import connector_jars, functions_jar

    broker = start_kafka()
    try:
        broker.create_topic(TOPIC, PARTITIONS)
        fill_seconds = fill_topic(broker.bootstrap_servers, args.rows)
        jars = [*connector_jars(), functions_jar()]
        os.environ["ETL_SPARK_JARS"] = os.pathsep.join(str(jar) for jar in jars)
        spark = build_session(
            "bench-kafka",
            "local[2]",
            SparkSettings(conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "4g"}),
        )
        scratch = Path(tempfile.mkdtemp(prefix="etl-bench-kafka-"))
        servers = broker.bootstrap_servers
        runs: dict[str, Callable[[], object]] = {
            "baseline": lambda: baseline(spark, servers, scratch / "baseline"),
            "framework": lambda: framework(spark, servers, scratch / "framework"),
        }
        cpu = jvm_cpu_seconds(spark)
        for action in runs.values():  # warm-up: JIT, page cache of the broker's log
            action()
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for round_number in range(args.rounds):
            order = names if round_number % 2 == 0 else names[::-1]
            for name in order:
                wall, used = timed(runs[name], cpu)
                seconds[name].append(wall)
                cpu_seconds[name].append(used)
        last = framework(spark, servers, scratch / "framework")
        loaded = spark.read.parquet(str(scratch / "framework")).count()
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    finally:
        broker.process.stop()
        # The broker's log holds every message: gigabytes at bench sizes.
        shutil.rmtree(broker.process.log_path.parent, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    rows_per_second = {name: round(args.rows / value) for name, value in median.items()}
    cpu_median = {name: statistics.median(values) for name, values in cpu_seconds.items()}
    rows_per_cpu_second = {name: round(args.rows / value) for name, value in cpu_median.items()}
    report = {
        "rows": args.rows,
        "partitions": PARTITIONS,
        "rounds": args.rounds,
        "machine": machine(),
        "topic_fill_seconds": round(fill_seconds, 1),
        "load_average_1m_5m_15m": [round(v, 1) for v in os.getloadavg()],
        "seconds": {name: [round(v, 2) for v in values] for name, values in seconds.items()},
        "jvm_cpu_seconds": {name: [round(v, 2) for v in values] for name, values in cpu_seconds.items()},
        "rows_per_second": rows_per_second,
        "ratio_framework_to_baseline_throughput": round(
            rows_per_second["framework"] / rows_per_second["baseline"], 3
        ),
        "rows_per_jvm_cpu_second": rows_per_cpu_second,
        "ratio_framework_to_baseline_per_cpu_second": round(
            rows_per_cpu_second["framework"] / rows_per_cpu_second["baseline"], 3
        ),
        "framework_rows_in_parquet": loaded,
        "framework_run_metrics": last,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
