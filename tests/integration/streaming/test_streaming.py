"""Streaming runs on the real servers, through `etl run` as a subprocess so a test can kill the
driver: Kafka JSON into a windowed aggregate upserted into PostgreSQL, killed between and in
the middle of micro-batches, equals the expected aggregate exactly after restarts; a replayed
batch appends nothing twice; SIGTERM stops at a batch boundary with exit 0; availableNow drains
files and stops. Small: hundreds of rows, 1-second triggers."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from confluent_kafka import Producer

from etl_job.contract import SecretKeyRef, secret_env_name
from tests.infra.kafka import KafkaBroker
from tests.infra.postgres import PostgresServer
from tests.infra.spark import connector_jars
from tests.infra.versions import REPO_ROOT

PASSWORD = SecretKeyRef(name="pg", key="password")
EVENT_SCHEMA = {
    "type": "record",
    "name": "StreamEvent",
    "fields": [
        {"name": "event_id", "type": "long"},
        {"name": "user_id", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
USERS = ["ada", "grace", "linus", "ken"]
BASE_MS = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # a minute boundary


def _events(count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": i,
            "user_id": USERS[i % len(USERS)],
            "amount": i % 7 + 1,
            # Spread over three minutes, in order, so no event is late for the watermark.
            "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((BASE_MS + i * 900) / 1000)),
        }
        for i in range(count)
    ]


def _produce(kafka: KafkaBroker, topic: str, events: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for event in events:
        producer.produce(topic, json.dumps(event).encode())
    producer.flush(30)


def _die_with_the_test() -> None:
    """In the driver before exec: SIGKILL when the test process dies, however it dies, so no
    driver outlives a killed test run and reads from servers that are gone."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _batch_ids(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.glob("[0-9]*")) if folder.is_dir() else []


def _manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name},
        "spec": spec,
    }


def _postgres_sink(postgres: PostgresServer, table: str, **extra: Any) -> dict[str, Any]:
    return {
        "sinkType": "PostgreSQL",
        "table": table,
        "connection": {"host": postgres.host, "port": postgres.port, "database": postgres.database,
                       "user": postgres.user},
        "credentialsRef": {"name": PASSWORD.name, "key": PASSWORD.key},
        **extra,
    }  # fmt: skip


def _kafka_source(kafka: KafkaBroker, topic: str) -> dict[str, Any]:
    return {"sourceType": "Kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": topic,
            "schemaName": "stream-event"}  # fmt: skip


class Driver:
    """One `etl run` of a streaming manifest, as a process a test can signal."""

    #: Every driver of the running test, killed at its end (_no_driver_outlives_its_test).
    started: ClassVar[list[Driver]] = []

    def __init__(self, folder: Path, manifest: dict[str, Any], postgres: PostgresServer | None) -> None:
        (folder / "schemas").mkdir(exist_ok=True)
        (folder / "schemas" / "stream-event.avsc").write_text(json.dumps(EVENT_SCHEMA))
        self.config = folder / "pipeline.yaml"
        self.config.write_text(yaml.safe_dump(manifest))
        self.folder = folder
        self.env = {
            **os.environ,
            "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars()),
            "PYTHONPATH": str(REPO_ROOT / "job_image"),
            "ETL_HEALTH_PORT": "0",
        }
        if postgres is not None:
            self.env[secret_env_name(PASSWORD)] = postgres.password
        self.runs = 0
        self.processes: list[subprocess.Popen[str]] = []
        Driver.started.append(self)

    def kill_all(self) -> None:
        """No driver outlives its test (and the servers the session stops after it)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(30)

    def start(self, trigger: dict[str, Any] | None = None) -> subprocess.Popen[str]:
        manifest = yaml.safe_load(self.config.read_text())
        if trigger is not None:
            manifest["spec"]["streaming"]["trigger"] = trigger
            self.config.write_text(yaml.safe_dump(manifest))
        self.runs += 1
        self.log = self.folder / f"run-{self.runs}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "etl_job.cli", "run", str(self.config), "--master", "local[2]",
             "--termination-log", str(self.folder / "termination.json")],
            env=self.env, cwd=self.folder, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
            preexec_fn=_die_with_the_test,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def batches_logged(self) -> int:
        return self.log.read_text().count('"message": "batch ') if self.log.exists() else 0

    def wait_batches(self, process: subprocess.Popen[str], count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.batches_logged() < count:
            assert process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.1)

    def committed(self) -> list[int]:
        """Batch ids the query has committed to its checkpoint."""
        return _batch_ids(self.folder / "checkpoint" / "commits")

    def planned(self) -> list[int]:
        """Batch ids the query has planned (their offsets written), committed or not."""
        return _batch_ids(self.folder / "checkpoint" / "offsets")

    def wait_for(self, process: subprocess.Popen[str], what: str, done: Any, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert process.poll() is None, f"the driver exited before {what}: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s: {self.log.read_text()[-3000:]}"
            time.sleep(0.05)

    def drain(self) -> dict[str, Any]:
        """Run once more with availableNow: it processes what is left and exits by itself."""
        process = self.start({"availableNow": True})
        out, _ = process.communicate(timeout=420)
        assert process.returncode == 0, self.log.read_text()[-4000:]
        metrics: dict[str, Any] = json.loads(out[out.index("{") :])
        return metrics


@pytest.fixture(autouse=True)
def _no_driver_outlives_its_test() -> Iterator[None]:
    yield
    for driver in Driver.started:
        driver.kill_all()
    Driver.started.clear()


def _rows(postgres: PostgresServer, sql: str) -> list[tuple[Any, ...]]:
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        connection.close()


def test_kafka_windowed_aggregate_upserted_is_exact_after_sigkill_between_and_within_batches(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    topic, table = f"stream-{secrets.token_hex(4)}", f"per_minute_{secrets.token_hex(3)}"
    kafka.create_topic(topic, partitions=2)
    events = _events(240)
    _produce(kafka, topic, events)
    driver = Driver(
        tmp_path,
        _manifest(
            "per-minute",
            {
                "mode": "streaming",
                "extract": _kafka_source(kafka, topic),
                "transforms": [{"transformType": "Window", "timeColumn": "event_time",
                                "windowDuration": "1 minute", "watermark": "10 minutes",
                                "groupBy": ["user_id"],
                                "aggregations": [{"column": "amount", "function": "sum", "as": "total"},
                                                 {"column": "*", "function": "count", "as": "events"}]}],
                "load": _postgres_sink(
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
    driver.wait_for(
        second,
        "a batch under way after batch 1",
        lambda: len(driver.committed()) >= 2 and driver.planned()[-1] > driver.committed()[-1],
    )
    second.send_signal(signal.SIGKILL)
    second.wait(30)
    interrupted = driver.planned()[-1]
    assert interrupted not in driver.committed()

    # The next run replays the interrupted batch with the same offsets, then drains the rest.
    driver.drain()
    assert f'"message": "batch {interrupted}:' in driver.log.read_text()

    expected: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        minute = int(time.mktime(time.strptime(event["event_time"], "%Y-%m-%dT%H:%M:%SZ"))) // 60
        expected[(minute, event["user_id"])][0] += event["amount"]
        expected[(minute, event["user_id"])][1] += 1
    rows = _rows(
        postgres,
        f"SELECT EXTRACT(EPOCH FROM window_start AT TIME ZONE 'UTC')::bigint / 60, user_id, total, events "
        f"FROM {table} ORDER BY 1, 2",
    )
    utc_offset = time.mktime(time.gmtime(0)) // 60  # mktime above read the UTC text as local time
    assert sorted((m, u, t, c) for (m, u), (t, c) in expected.items()) == [
        (int(m + utc_offset), u, t, c) for m, u, t, c in rows
    ]


def test_an_append_batch_replayed_after_a_crash_writes_nothing_twice(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    topic, table = f"stream-{secrets.token_hex(4)}", f"appended_{secrets.token_hex(3)}"
    kafka.create_topic(topic)
    _produce(kafka, topic, _events(120))
    driver = Driver(
        tmp_path,
        _manifest(
            "append-events",
            {
                "mode": "streaming",
                "extract": _kafka_source(kafka, topic),
                "load": _postgres_sink(postgres, table, writeMode="append"),
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
    assert _rows(postgres, f"SELECT count(*), count(DISTINCT event_id) FROM {table}") == [(120, 120)]
    batches = _rows(
        postgres, "SELECT batch_id FROM etl_stream_batches WHERE pipeline = 'append-events' ORDER BY 1"
    )
    assert batches == [(0,), (1,), (2,)]


def test_sigterm_stops_at_a_batch_boundary_with_exit_0_and_a_restart_resumes(
    kafka: KafkaBroker, postgres: PostgresServer, tmp_path: Path
) -> None:
    topic, table = f"stream-{secrets.token_hex(4)}", f"upserted_{secrets.token_hex(3)}"
    kafka.create_topic(topic)
    _produce(kafka, topic, _events(150))
    driver = Driver(
        tmp_path,
        _manifest(
            "graceful",
            {
                "mode": "streaming",
                "extract": _kafka_source(kafka, topic),
                "load": _postgres_sink(postgres, table, writeMode="upsert", primaryKey=["event_id"]),
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
    assert _rows(postgres, f"SELECT count(*) FROM {table}") == [(150,)]


def test_available_now_drains_the_files_there_and_stops(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    events = _events(90)
    for part in range(3):
        lines = events[part * 30 : (part + 1) * 30]
        (source / f"part-{part}.json").write_text("".join(json.dumps(e) + "\n" for e in lines))
    driver = Driver(
        tmp_path,
        _manifest(
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
