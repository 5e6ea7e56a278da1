"""Streaming runs on the real servers, through `etl run` as a subprocess so a test can kill the
driver: Kafka JSON into a windowed aggregate upserted into PostgreSQL, killed between and in
the middle of micro-batches, equals the expected aggregate exactly after restarts; a replayed
batch appends nothing twice; SIGTERM stops at a batch boundary with exit 0; availableNow drains
files and stops, and so does examples/streaming-files.yaml as shipped. Small: hundreds of rows,
1-second triggers."""

from __future__ import annotations

import csv
import json
import secrets
import shutil
import signal
import time
from collections import defaultdict
from pathlib import Path

import yaml
from pyspark.sql import SparkSession

from tests.infra.kafka import KafkaBroker
from tests.infra.postgres import PostgresServer
from tests.infra.versions import REPO_ROOT
from tests.integration.streaming.helpers import (
    Driver,
    kafka_source,
    make_events,
    manifest,
    postgres_sink,
    produce,
    rows,
)


def test_kafka_windowed_aggregate_upserted_is_exact_after_sigkill_between_and_within_batches(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    topic, table = f"stream-{secrets.token_hex(4)}", f"per_minute_{secrets.token_hex(3)}"
    kafka.create_topic(topic, partitions=2)
    events = make_events(240)
    produce(kafka, topic, events)
    driver = Driver(
        tmp_path,
        manifest(
            "per-minute",
            {
                "mode": "streaming",
                "extract": kafka_source(kafka, topic),
                "transforms": [{"transformType": "Window", "timeColumn": "event_time",
                                "windowDuration": "1 minute", "watermark": "10 minutes",
                                "groupBy": ["user_id"],
                                "aggregations": [{"column": "amount", "function": "sum", "as": "total"},
                                                 {"column": "*", "function": "count", "as": "events"}]}],
                "load": postgres_sink(
                    postgres, table, writeMode="upsert", primaryKey=["window_start", "user_id"]
                ),
                "streaming": {"checkpointLocation": str(tmp_path / "checkpoint"),
                              "trigger": {"processingTime": "1 second"}, "maxOffsetsPerTrigger": 40},
                "spark": {"conf": {"spark.sql.shuffle.partitions": "2"}},
            },
        ),
        postgres,
    )  # fmt: skip

    # Between batches: batch 0 is committed, and batch 1 is not due for ten minutes.
    first = driver.start({"processingTime": "10 minutes"})
    driver.wait_for(first, "commit of batch 0", lambda: driver.committed() == [0])
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert driver.planned() == [0]

    # In the middle of a batch: planned (its offsets in the checkpoint) and not committed.
    second = driver.start({"processingTime": "1 second"})
    interrupted = driver.kill_within_a_batch(second)

    # The next run replays the interrupted batch with the same offsets, then drains the rest.
    driver.drain()
    assert f'"message": "batch {interrupted}:' in driver.log.read_text()

    expected: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        minute = int(time.mktime(time.strptime(event["event_time"], "%Y-%m-%dT%H:%M:%SZ"))) // 60
        expected[(minute, event["user_id"])][0] += event["amount"]
        expected[(minute, event["user_id"])][1] += 1
    loaded = rows(
        postgres,
        f"SELECT EXTRACT(EPOCH FROM window_start AT TIME ZONE 'UTC')::bigint / 60, user_id, total, events "
        f"FROM {table} ORDER BY 1, 2",
    )
    utc_offset = time.mktime(time.gmtime(0)) // 60  # mktime above read the UTC text as local time
    assert sorted((m, u, t, c) for (m, u), (t, c) in expected.items()) == [
        (int(m + utc_offset), u, t, c) for m, u, t, c in loaded
    ]


def test_an_append_batch_replayed_after_a_crash_writes_nothing_twice(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    topic, table = f"stream-{secrets.token_hex(4)}", f"appended_{secrets.token_hex(3)}"
    kafka.create_topic(topic)
    produce(kafka, topic, make_events(120))
    driver = Driver(
        tmp_path,
        manifest(
            "append-events",
            {
                "mode": "streaming",
                "extract": kafka_source(kafka, topic),
                "load": postgres_sink(postgres, table, writeMode="append"),
                "streaming": {"checkpointLocation": str(tmp_path / "checkpoint"),
                              "trigger": {"availableNow": True}, "maxOffsetsPerTrigger": 50},
            },
        ),
        postgres,
    )  # fmt: skip
    metrics = driver.drain()
    assert metrics["recordsExtracted"] == metrics["recordsLoaded"] == 120
    assert metrics["recordsFailed"] == 0
    # A crash after the sink committed and before Spark did: the batch's commit is lost, so the
    # restarted query runs the batch again.
    commits = sorted((tmp_path / "checkpoint" / "commits").glob("[0-9]*"), key=lambda p: int(p.name))
    assert len(commits) == 3  # 50 + 50 + 20
    commits[-1].unlink()
    (commits[-1].parent / f".{commits[-1].name}.crc").unlink(missing_ok=True)

    driver.drain()

    assert "was committed before; nothing appended" in driver.log.read_text()
    assert rows(postgres, f"SELECT count(*), count(DISTINCT event_id) FROM {table}") == [(120, 120)]
    batches = rows(
        postgres, "SELECT batch_id FROM etl_stream_batches WHERE pipeline = 'append-events' ORDER BY 1"
    )
    assert batches == [(0,), (1,), (2,)]


def test_sigterm_stops_at_a_batch_boundary_with_exit_0_and_a_restart_resumes(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    topic, table = f"stream-{secrets.token_hex(4)}", f"upserted_{secrets.token_hex(3)}"
    kafka.create_topic(topic)
    produce(kafka, topic, make_events(150))
    driver = Driver(
        tmp_path,
        manifest(
            "graceful",
            {
                "mode": "streaming",
                "extract": kafka_source(kafka, topic),
                "load": postgres_sink(postgres, table, writeMode="upsert", primaryKey=["event_id"]),
                "streaming": {"checkpointLocation": str(tmp_path / "checkpoint"),
                              "trigger": {"processingTime": "1 second"}, "maxOffsetsPerTrigger": 30},
            },
        ),
        postgres,
    )  # fmt: skip
    running = driver.start()
    driver.wait_batches(running, 1)
    running.send_signal(signal.SIGTERM)
    out, _ = running.communicate(timeout=120)
    assert running.returncode == 0, driver.log.read_text()[-3000:]
    assert "stop requested" in driver.log.read_text()
    stopped = json.loads(out[out.index("{") :])
    # Whole batches only: what it loaded is a multiple of the batch size.
    assert stopped["recordsLoaded"] % 30 == 0 and stopped["recordsLoaded"] > 0
    termination = json.loads((tmp_path / "termination.json").read_text())
    assert termination["recordsLoaded"] == stopped["recordsLoaded"]

    rest = driver.drain()
    assert stopped["recordsLoaded"] + rest["recordsLoaded"] == 150
    assert rows(postgres, f"SELECT count(*) FROM {table}") == [(150,)]


def test_available_now_drains_the_files_there_and_stops(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    events = make_events(90)
    for part in range(3):
        lines = events[part * 30 : (part + 1) * 30]
        (source / f"part-{part}.json").write_text("".join(json.dumps(e) + "\n" for e in lines))
    driver = Driver(
        tmp_path,
        manifest(
            "files",
            {
                "mode": "streaming",
                "extract": {"sourceType": "S3", "path": str(source), "format": "json",
                            "schemaName": "stream-event"},
                "transforms": [{"transformType": "Filter", "condition": "amount > 2"}],
                "load": {"sinkType": "S3", "path": str(tmp_path / "out"), "format": "parquet"},
                "streaming": {"checkpointLocation": str(tmp_path / "checkpoint"),
                              "trigger": {"availableNow": True}, "maxFilesPerTrigger": 1},
            },
        ),
        None,
    )  # fmt: skip
    metrics = driver.drain()
    kept = [e for e in events if e["amount"] > 2]
    assert metrics["recordsExtracted"] == 90
    assert metrics["recordsLoaded"] == len(kept)
    assert metrics["recordsFiltered"] == 90 - len(kept)
    batches = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("batch_id="))
    assert batches == ["batch_id=0", "batch_id=1", "batch_id=2"]


def test_the_streaming_files_example_drains_its_files_and_a_later_run_reads_only_new_ones(
    spark: SparkSession, tmp_path: Path
) -> None:
    """examples/streaming-files.yaml as a user runs it: the four sample files, one micro-batch
    each, purchases joined with the users; a fifth file dropped later is all the next run reads."""
    examples = tmp_path / "examples"
    shutil.copytree(REPO_ROOT / "examples", examples, ignore=shutil.ignore_patterns("output"))
    pipeline = yaml.safe_load((examples / "streaming-files.yaml").read_text())
    driver = Driver(examples, pipeline, None)
    with (examples / "data" / "events.csv").open() as events_file:
        events = list(csv.DictReader(events_file))
    with (examples / "data" / "users.csv").open() as users_file:
        users = {row["user_id"]: row["user_name"] for row in csv.DictReader(users_file)}
    purchases = [e for e in events if e["event_type"] == "purchase" and float(e["amount"]) > 0]

    metrics = driver.drain()
    assert metrics["recordsExtracted"] == 2000
    assert metrics["recordsFiltered"] == 2000 - len(purchases)
    assert metrics["recordsLoaded"] == len(purchases)
    assert metrics["recordsFailed"] == 0
    out = examples / "output" / "streaming-purchases"
    assert sorted(p.name for p in out.glob("batch_id=*")) == [f"batch_id={i}" for i in range(4)]
    table = [row.asDict() for row in spark.read.parquet(str(out)).collect()]
    assert sorted(int(r["event_id"]) for r in table) == sorted(int(e["event_id"]) for e in purchases)
    assert all(r["user_name"] == users.get(r["user_id"]) for r in table)

    late = events[:40]
    with (examples / "data" / "event-files" / "events-5.csv").open("w", newline="") as new_file:
        writer = csv.DictWriter(new_file, fieldnames=list(late[0]))
        writer.writeheader()
        writer.writerows(late)
    again = driver.drain()
    assert again["recordsExtracted"] == 40
    assert again["recordsLoaded"] == sum(1 for e in late if e in purchases)
    assert sorted(p.name for p in out.glob("batch_id=*"))[-1] == "batch_id=4"
