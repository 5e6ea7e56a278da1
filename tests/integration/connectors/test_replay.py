"""`etl replay` against real servers: a run with tolerance all sets rows aside into a file or a
Kafka dead-letter queue, the cause is fixed (the Avro schema loosened, the table's CHECK
dropped), and the replay loads exactly those rows, once; letters that fail again stay as
successors with attemptNumber 2; filters take only what they name."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from etl_job.connectors.letters import ReplayFilter
from etl_job.contract import ETLPipeline, RunMetrics, SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.manifest import parse_manifest
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.replay import replay
from etl_job.runtime.context import RunContext
from tests.infra.kafka import KafkaBroker
from tests.infra.postgres import PostgresServer
from tests.infra.spark import connector_jars
from tests.infra.versions import REPO_ROOT

pytestmark = pytest.mark.integration

PIPELINE = "replay-test"
REF = SecretKeyRef(name="pg-credentials", key="password")
SOURCE_SCHEMA = "id int, name string, country string, amount int"
#: Two rows invalid at the extract (an unknown country, a null name), two the table refuses
#: (a negative amount breaks its CHECK), and three good ones.
ROWS = [
    (1, "ada", "DE", 10),
    (2, "grace", "IT", 20),  # UnknownEnumSymbol
    (3, None, "FR", 30),  # NullValue
    (4, "linus", "FR", -4),  # refused by the CHECK
    (5, "joy", "DE", 50),
    (6, "max", "DE", -6),  # refused by the CHECK
    (7, "eve", "FR", 70),
]
GOOD_IDS = {1, 5, 7}


def customer_schema(*, loose: bool) -> dict[str, Any]:
    """The source's Avro record; loosened, it knows IT and lets a name be null."""
    symbols = ["DE", "FR", "IT"] if loose else ["DE", "FR"]
    return {
        "type": "record",
        "name": "customer",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "name", "type": ["null", "string"] if loose else "string"},
            {"name": "country", "type": {"type": "enum", "name": "Country", "symbols": symbols}},
            {"name": "amount", "type": "int"},
        ],
    }


def schemas(folder: Path, *, loose: bool) -> SchemaRegistry:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customer.avsc").write_text(json.dumps(customer_schema(loose=loose)))
    return SchemaRegistry([folder])


def query(postgres: PostgresServer, *statements: str) -> list[tuple[Any, ...]]:
    conn = postgres.connect()
    found: list[tuple[Any, ...]] = []
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
            if cur.description is not None:
                found = [tuple(row) for row in cur.fetchall()]
    conn.commit()
    conn.close()
    return found


def create_table(postgres: PostgresServer) -> str:
    table = f"customers_{secrets.token_hex(4)}"
    query(
        postgres,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name TEXT, country TEXT, "
        f"amount INT CONSTRAINT {table}_amount CHECK (amount >= 0))",
    )
    return table


def table_rows(postgres: PostgresServer, table: str) -> list[tuple[Any, ...]]:
    return query(postgres, f"SELECT id, name, country, amount FROM {table} ORDER BY id")


def expected(ids: set[int]) -> list[tuple[Any, ...]]:
    return [row for row in ROWS if row[0] in ids]


def file_queue(folder: Path) -> dict[str, Any]:
    return {"type": "s3", "path": str(folder), "format": "json", "partitionBy": "date"}


def kafka_queue(kafka: KafkaBroker, topic: str) -> dict[str, Any]:
    return {"type": "kafka", "bootstrapServers": kafka.bootstrap_servers, "topic": topic}


def manifest(
    source: Path, postgres: PostgresServer, table: str, queue: dict[str, Any], mode: str
) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": PIPELINE},
        "spec": {
            "extract": {
                "sourceType": "S3",
                "path": str(source),
                "format": "parquet",
                "schemaName": "customer",
            },
            "load": {
                "sinkType": "PostgreSQL",
                "connection": {
                    "host": postgres.host,
                    "port": postgres.port,
                    "database": postgres.database,
                    "user": postgres.user,
                },
                "credentialsRef": {"name": REF.name, "key": REF.key},
                "table": table,
                "writeMode": mode,
                **({"primaryKey": ["id"]} if mode == "upsert" else {}),
            },
            "errorHandling": {"tolerance": "all", "retry": {"strategy": "none"}, "deadLetter": queue},
        },
    }


class Setup:
    """A pipeline from Parquet into a PostgreSQL table with a dead-letter queue, run once."""

    def __init__(
        self,
        spark: Any,
        postgres: PostgresServer,
        tmp_path: Path,
        queue: dict[str, Any],
        mode: str = "upsert",
    ) -> None:
        self.spark, self.postgres, self.tmp_path = spark, postgres, tmp_path
        self.source = tmp_path / "in"
        spark.createDataFrame(ROWS, SOURCE_SCHEMA).coalesce(1).write.parquet(str(self.source))
        self.table = create_table(postgres)
        self.manifest = manifest(self.source, postgres, self.table, queue, mode)
        self.pipeline: ETLPipeline = parse_manifest(self.manifest)
        self.schemas = schemas(tmp_path / "schemas", loose=False)

    def context(self, run_id: str) -> RunContext:
        return RunContext(
            pipeline=PIPELINE,
            spark=self.spark,
            env={secret_env_name(REF): self.postgres.password},
            run_id=run_id,
            tolerance="all",
            schemas=self.schemas,
        )

    def run(self) -> RunMetrics:
        return run_pipeline(self.pipeline, self.context("run-1"), self.schemas)

    def loosen_schema(self) -> None:
        self.schemas = schemas(self.tmp_path / "schemas", loose=True)

    def drop_check(self) -> None:
        query(self.postgres, f"ALTER TABLE {self.table} DROP CONSTRAINT {self.table}_amount")

    def replay(self, run_id: str, **filters: Any) -> RunMetrics:
        wanted = ReplayFilter(PIPELINE, **filters)
        metrics, _ = replay(self.pipeline, self.context(run_id), self.schemas, wanted)
        return metrics

    def rows(self) -> list[tuple[Any, ...]]:
        return table_rows(self.postgres, self.table)


def file_letters(spark: Any, folder: Path) -> list[dict[str, Any]]:
    """Every letter under the queue's folder (by date), without the ledger."""
    found = spark.read.json(str(folder)).drop("date").collect()
    return sorted((row.asDict(recursive=True) for row in found), key=lambda letter: letter["originalRecord"])


def ledger(spark: Any, folder: Path) -> dict[str, str]:
    return {row["letter"]: row["outcome"] for row in spark.read.json(str(folder / "_replayed")).collect()}


def kafka_messages(kafka: KafkaBroker, topic: str) -> list[Any]:
    """Every message of a one-partition topic, read to its end."""
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"g-{secrets.token_hex(4)}",
         "enable.auto.commit": False}
    )  # fmt: skip
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    found: list[Any] = []
    while len(found) < end:
        message = consumer.poll(10)
        assert message is not None, f"topic {topic} ended at {len(found)} of {end} messages"
        if message.error() is None:
            found.append(message)
    consumer.close()
    return found


def test_a_file_queue_replayed_after_the_schema_is_loosened_loads_its_rows_once(
    spark: Any, postgres: PostgresServer, tmp_path: Path
) -> None:
    queue = tmp_path / "dead-letters"
    setup = Setup(spark, postgres, tmp_path, file_queue(queue))
    first = setup.run()
    assert (first.records_loaded, first.records_failed_by_stage) == (3, {"extract": 2, "load": 2})
    assert setup.rows() == expected(GOOD_IDS)
    assert len(file_letters(spark, queue)) == 4

    setup.loosen_schema()
    setup.drop_check()
    metrics = setup.replay("replay-1")

    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (4, 4, 0)
    assert setup.rows() == ROWS_SORTED
    assert sorted(ledger(spark, queue).values()) == ["replayed"] * 4
    again = setup.replay("replay-2")
    assert (again.records_extracted, again.records_loaded) == (0, 0)
    assert setup.rows() == ROWS_SORTED
    assert len(file_letters(spark, queue)) == 4  # no new letters


ROWS_SORTED = sorted(ROWS)


def test_a_kafka_queue_replayed_after_the_check_is_dropped_loads_its_rows_once(
    spark: Any, postgres: PostgresServer, kafka: KafkaBroker, tmp_path: Path
) -> None:
    topic = f"dlq-{secrets.token_hex(4)}"
    kafka.create_topic(topic, 1)
    setup = Setup(spark, postgres, tmp_path, kafka_queue(kafka, topic), mode="append")
    setup.run()
    letters = [json.loads(message.value()) for message in kafka_messages(kafka, topic)]
    assert sorted(letter["errorType"] for letter in letters) == [
        "CheckViolation/23514",
        "CheckViolation/23514",
        "NullValue",
        "UnknownEnumSymbol",
    ]

    setup.drop_check()
    metrics = setup.replay("replay-1", stage="load")

    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (2, 2, 0)
    assert setup.rows() == expected(GOOD_IDS | {4, 6})
    ledger_messages = kafka_messages(kafka, topic + ".replayed")
    marked = {message.key().decode(): json.loads(message.value())["outcome"] for message in ledger_messages}
    assert marked == {f"{topic}/0/{offset}": "replayed" for offset in _offsets_of(kafka, topic, "load")}
    # Appended again, the rows would be there twice (or refused by the primary key): none is taken.
    again = setup.replay("replay-2", stage="load")
    assert (again.records_extracted, again.records_loaded, again.records_failed) == (0, 0, 0)
    assert setup.rows() == expected(GOOD_IDS | {4, 6})
    assert len(kafka_messages(kafka, topic)) == 4


def _offsets_of(kafka: KafkaBroker, topic: str, stage: str) -> list[int]:
    return [
        message.offset()
        for message in kafka_messages(kafka, topic)
        if json.loads(message.value())["stage"] == stage
    ]


def test_filters_take_only_the_letters_of_their_stage_error_type_and_time(
    spark: Any, postgres: PostgresServer, tmp_path: Path
) -> None:
    queue = tmp_path / "dead-letters"
    setup = Setup(spark, postgres, tmp_path, file_queue(queue))
    setup.run()
    setup.loosen_schema()
    setup.drop_check()

    later = setup.replay("replay-0", since=_tomorrow())
    assert later.records_extracted == 0
    by_stage = setup.replay("replay-1", stage="load")
    assert (by_stage.records_extracted, by_stage.records_loaded) == (2, 2)
    assert setup.rows() == expected(GOOD_IDS | {4, 6})
    by_type = setup.replay("replay-2", error_type="NullValue")
    assert (by_type.records_extracted, by_type.records_loaded) == (1, 1)
    assert setup.rows() == expected(GOOD_IDS | {3, 4, 6})
    rest = setup.replay("replay-3")
    assert (rest.records_extracted, rest.records_loaded) == (1, 1)
    assert setup.rows() == ROWS_SORTED


def _tomorrow() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(days=1)


def test_letters_that_fail_again_stay_as_successors_with_the_new_error_and_attempt_two(
    spark: Any, postgres: PostgresServer, tmp_path: Path
) -> None:
    """The CHECK stays, so the two refused rows fail again: each becomes one new letter, and the
    next replay takes those two (attempt 3), not the first ones too; once fixed, each row is
    appended once."""
    queue = tmp_path / "dead-letters"
    setup = Setup(spark, postgres, tmp_path, file_queue(queue), mode="append")
    setup.run()

    metrics = setup.replay("replay-1", stage="load")
    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (2, 0, 2)
    letters = [letter for letter in file_letters(spark, queue) if letter["stage"] == "load"]
    firsts = [letter for letter in letters if letter["attemptNumber"] == 1]
    seconds = [letter for letter in letters if letter["attemptNumber"] == 2]
    assert len(firsts) == len(seconds) == 2
    for second in seconds:
        assert second["errorType"] == "CheckViolation/23514"
        assert second["context"]["batch"] == "replay-1"
        assert "replayOf" in second["context"]
        assert json.loads(second["originalRecord"])["id"] in {4, 6}
    assert sorted(ledger(spark, queue).values()) == ["failedAgain", "failedAgain"]

    still = setup.replay("replay-2", stage="load")
    assert (still.records_extracted, still.records_failed) == (2, 2)
    attempts = sorted(
        letter["attemptNumber"] for letter in file_letters(spark, queue) if letter["stage"] == "load"
    )
    assert attempts == [1, 1, 2, 2, 3, 3]

    setup.drop_check()
    fixed = setup.replay("replay-3", stage="load")
    assert (fixed.records_extracted, fixed.records_loaded, fixed.records_failed) == (2, 2, 0)
    assert setup.rows() == expected(GOOD_IDS | {4, 6})
    assert setup.replay("replay-4", stage="load").records_extracted == 0
    assert setup.rows() == expected(GOOD_IDS | {4, 6})


def test_replaying_into_an_upsert_sink_twice_gives_the_same_table(
    spark: Any, postgres: PostgresServer, tmp_path: Path
) -> None:
    """The second replay finds no ledger (as after a crash before it was written) and loads the
    same letters again: the upsert leaves the table as the first one did."""
    queue = tmp_path / "dead-letters"
    setup = Setup(spark, postgres, tmp_path, file_queue(queue))
    setup.run()
    setup.loosen_schema()
    setup.drop_check()
    first = setup.replay("replay-1")
    after_first = setup.rows()
    shutil.rmtree(queue / "_replayed")
    second = setup.replay("replay-2")
    assert first.records_loaded == second.records_loaded == 4
    assert setup.rows() == after_first == ROWS_SORTED


def test_etl_replay_prints_its_metrics_writes_the_termination_log_and_dry_run_changes_nothing(
    spark: Any, postgres: PostgresServer, tmp_path: Path
) -> None:
    queue = tmp_path / "dead-letters"
    setup = Setup(spark, postgres, tmp_path, file_queue(queue))
    setup.run()
    setup.drop_check()
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(setup.manifest))
    termination_log = tmp_path / "termination-log"
    env = {
        **os.environ,
        "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars()),
        "PYTHONPATH": str(REPO_ROOT / "job_image"),
        secret_env_name(REF): postgres.password,
    }

    def etl_replay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "etl_job.cli", "replay", str(config), "--master", "local[1]",
             "--schemas", str(tmp_path / "schemas"), "--termination-log", str(termination_log), *args],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
        )  # fmt: skip

    dry = etl_replay("--stage", "load", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    summary = json.loads(dry.stdout[dry.stdout.index("{") :])
    assert summary == {
        "letters": 2,
        "byStage": {"load": 2},
        "byErrorType": {"CheckViolation/23514": 2},
        "notReplayable": 0,
    }
    assert setup.rows() == expected(GOOD_IDS) and not (queue / "_replayed").exists()

    done = etl_replay("--stage", "load", "--run-id", "replay-1")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout[done.stdout.index("{") :])
    assert (metrics["recordsExtracted"], metrics["recordsLoaded"], metrics["recordsFailed"]) == (2, 2, 0)
    assert json.loads(termination_log.read_text())["recordsLoaded"] == 2
    assert setup.rows() == expected(GOOD_IDS | {4, 6})
    assert postgres.password not in done.stdout + done.stderr
