"""What the streaming tests share: the events they produce, the manifests they run, and
`Driver`, one `etl run` of a streaming manifest as a subprocess a test can signal."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

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


def make_events(count: int) -> list[dict[str, Any]]:
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


def produce(kafka: KafkaBroker, topic: str, events: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for event in events:
        producer.produce(topic, json.dumps(event).encode())
    producer.flush(30)


def die_with_the_test() -> None:
    """In the driver before exec: SIGKILL when the test process dies, however it dies, so no
    driver outlives a killed test run and reads from servers that are gone."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def batch_ids(folder: Path) -> list[int]:
    return sorted(int(p.name) for p in folder.glob("[0-9]*")) if folder.is_dir() else []


def manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name},
        "spec": spec,
    }


def postgres_sink(postgres: PostgresServer, table: str, **extra: Any) -> dict[str, Any]:
    return {
        "sinkType": "PostgreSQL",
        "table": table,
        "connection": {"host": postgres.host, "port": postgres.port, "database": postgres.database,
                       "user": postgres.user},
        "credentialsRef": {"name": PASSWORD.name, "key": PASSWORD.key},
        **extra,
    }  # fmt: skip


def kafka_source(kafka: KafkaBroker, topic: str) -> dict[str, Any]:
    return {"sourceType": "Kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": topic,
            "schemaName": "stream-event"}  # fmt: skip


class Driver:
    """One `etl run` of a streaming manifest, as a process a test can signal."""

    #: Every driver of the running test, killed at its end (conftest.py).
    started: ClassVar[list[Driver]] = []

    def __init__(
        self,
        folder: Path,
        manifest: dict[str, Any],
        postgres: PostgresServer | None,
        *,
        secrets: Mapping[str, str] | None = None,
        health_port: int = 0,
    ) -> None:
        (folder / "schemas").mkdir(exist_ok=True)
        (folder / "schemas" / "stream-event.avsc").write_text(json.dumps(EVENT_SCHEMA))
        self.config = folder / "pipeline.yaml"
        self.config.write_text(yaml.safe_dump(manifest))
        self.folder = folder
        self.env = {
            **os.environ,
            "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars()),
            "PYTHONPATH": str(REPO_ROOT / "job_image"),
            "ETL_HEALTH_PORT": str(health_port),
            **(secrets or {}),
        }
        if postgres is not None:
            self.env[secret_env_name(PASSWORD)] = postgres.password
        self.health_port = health_port
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
            preexec_fn=die_with_the_test,
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
        return batch_ids(self.folder / "checkpoint" / "commits")

    def planned(self) -> list[int]:
        """Batch ids the query has planned (their offsets written), committed or not."""
        return batch_ids(self.folder / "checkpoint" / "offsets")

    def wait_for(self, process: subprocess.Popen[str], what: str, done: Any, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert process.poll() is None, f"the driver exited before {what}: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {what} in {timeout} s: {self.log.read_text()[-3000:]}"
            time.sleep(0.05)

    def kill_within_a_batch(self, process: subprocess.Popen[str]) -> int:
        """SIGKILL once a batch after batch 1 is planned (its offsets in the checkpoint) and not
        committed; the id of the batch it interrupted."""
        self.wait_for(
            process,
            "a batch under way after batch 1",
            lambda: len(self.committed()) >= 2 and self.planned()[-1] > self.committed()[-1],
        )
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        interrupted = self.planned()[-1]
        assert interrupted not in self.committed()
        return interrupted

    def health(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET one of the driver's health endpoints: the status code and the JSON it answers."""
        assert self.health_port, "the driver was started without a health port"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=5) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read())

    def drain(self) -> dict[str, Any]:
        """Run once more with availableNow: it processes what is left and exits by itself."""
        process = self.start({"availableNow": True})
        out, _ = process.communicate(timeout=420)
        assert process.returncode == 0, self.log.read_text()[-4000:]
        metrics: dict[str, Any] = json.loads(out[out.index("{") :])
        return metrics


def rows(postgres: PostgresServer, sql: str) -> list[tuple[Any, ...]]:
    connection = postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        connection.close()
