"""The older flat format's own documented examples (copied into tests/data/seed-format), taken as
their users wrote them: each converts (`etl convert`), validates (`etl validate`) and runs as
`etl run OLD.json` runs it, on the real servers: a CSV source on MinIO, an upsert into
PostgreSQL, and dead letters to Kafka or to S3, with exact rows.

The examples name production endpoints (localhost:5432, localhost:9092, s3a://my-bucket/); each
test substitutes the harness's servers, a fresh database, bucket and topic, in a copy of the
JSON, and gives the S3 bucket its settings as a deployment's S3A configuration would."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.cli import main
from etl_job.connectors.deadletter import DEAD_LETTER_COLUMNS
from etl_job.connectors.files.s3 import use_connection
from etl_job.contract import ETLPipeline, RunMetrics, S3Connection, SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.legacy import convert
from etl_job.contract.manifest import load_pipeline
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext
from tests.infra.kafka import KafkaBroker
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server
from tests.infra.versions import REPO_ROOT
from tests.integration.connectors.test_kafka import consume

pytestmark = pytest.mark.integration

SEED = REPO_ROOT / "tests" / "data" / "seed-format"
SCHEMAS = REPO_ROOT / "examples" / "schemas"

#: The Secret the examples' `credentialId: postgres.password` stands for.
PG_SECRET = SecretKeyRef(name="postgres", key="password")
S3_ACCESS = SecretKeyRef(name="s3", key="access-key")
S3_SECRET = SecretKeyRef(name="s3", key="secret-key")

#: user-event rows as CSV; events 5 (amount "abc") and 6 (event_type "gift") break the schema.
EVENTS_CSV = """event_id,user_id,country,event_type,amount,event_time
1,u001,FR,purchase,10.50,2024-01-15T10:00:00Z
2,u001,FR,refund,-2.50,2024-01-15T10:05:00Z
3,u002,DE,purchase,20.00,2024-01-15T11:00:00Z
4,u002,DE,view,0.00,2024-01-15T11:01:00Z
5,u003,FR,purchase,abc,2024-01-15T12:00:00Z
6,u004,US,gift,5.00,2024-01-15T12:30:00Z
7,u003,FR,purchase,7.25,2024-01-15T13:00:00Z
"""
#: user_summary before the run: u003 is stale (the upsert replaces it), u999 is not in the input.
BEFORE = [("u003", 1.0, 9), ("u999", 3.0, 1)]
AFTER = [("u001", 8.0, 2), ("u002", 20.0, 2), ("u003", 7.25, 1), ("u999", 3.0, 1)]
#: (event_id, field at fault) of each dead letter.
REJECTED = [("5", "amount"), ("6", "event_type")]


class Servers:
    """The harness's servers, a fresh database, bucket and topic, and the Secret values as env."""

    def __init__(self, postgres: PostgresServer, kafka: KafkaBroker, s3: S3Server, bucket: str) -> None:
        self.postgres, self.kafka, self.s3, self.bucket = postgres, kafka, s3, bucket
        self.database = f"analytics_{secrets.token_hex(4)}"
        self.topic = f"etl-dlq-{secrets.token_hex(4)}"
        self.env = {
            secret_env_name(PG_SECRET): postgres.password,
            secret_env_name(S3_ACCESS): s3.access_key,
            secret_env_name(S3_SECRET): s3.secret_key,
        }

    def prepare(self, spark: Any) -> None:
        admin = self.postgres.connect()
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {self.database}")
        admin.close()
        connection = self.postgres.connect(self.database)
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE user_summary (user_id TEXT PRIMARY KEY, sum_amount DOUBLE PRECISION,"
                " count_event_id BIGINT)"
            )
            cursor.executemany("INSERT INTO user_summary VALUES (%s, %s, %s)", BEFORE)
        connection.commit()
        connection.close()
        self.kafka.create_topic(self.topic)
        self.s3.client().put_object(Bucket=self.bucket, Key="raw/events/events.csv", Body=EVENTS_CSV.encode())
        # What a deployment's S3A settings do for the examples' bucket, which name no endpoint.
        store = S3Connection.model_validate(
            {
                "endpoint": self.s3.endpoint,
                "region": self.s3.region,
                "pathStyleAccess": True,
                "accessKeyRef": {"name": S3_ACCESS.name, "key": S3_ACCESS.key},
                "secretKeyRef": {"name": S3_SECRET.name, "key": S3_SECRET.key},
            }
        )
        use_connection(spark, f"s3a://{self.bucket}/", store, self.env, stage="test")

    def substitute(self, document: dict[str, Any]) -> dict[str, Any]:
        """The example pointed at the harness: hosts, ports, user, database, bucket and topic."""
        text = json.dumps(document).replace("s3a://my-bucket/", f"s3a://{self.bucket}/")
        copy: dict[str, Any] = json.loads(text)
        params = copy["load"]["connectionParams"]
        params.update(
            host=self.postgres.host,
            port=str(self.postgres.port),
            database=self.database,
            user=self.postgres.user,
        )
        queue = copy["errorHandlingConfig"]["dlqConfig"]
        if queue["dlqType"] == "kafka":
            queue.update(bootstrapServers=self.kafka.bootstrap_servers, topic=self.topic)
        return copy

    def summary(self) -> list[tuple[str, float, int]]:
        connection = self.postgres.connect(self.database)
        with connection.cursor() as cursor:
            cursor.execute("SELECT user_id, sum_amount, count_event_id FROM user_summary ORDER BY user_id")
            rows = [(str(u), float(a), int(c)) for u, a, c in cursor.fetchall()]
        connection.close()
        return rows


@pytest.fixture
def servers(postgres: PostgresServer, kafka: KafkaBroker, s3: S3Server, bucket: str, spark: Any) -> Servers:
    found = Servers(postgres, kafka, s3, bucket)
    found.prepare(spark)
    return found


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SEED / name).read_text())
    return document


def convert_validate_run(
    name: str, servers: Servers, spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> RunMetrics:
    """`etl convert`, then `etl validate`, of the example as written, then `etl run`'s path
    (load_pipeline takes the older format directly) over the copy pointed at the harness."""
    assert main(["convert", str(SEED / name)]) == 0
    printed = capsys.readouterr()
    converted = yaml.safe_load(printed.out)
    assert converted == convert(example(name)).manifest
    assert "kubectl create secret generic postgres --from-literal=password=<password>" in printed.err
    assert main(["validate", "--schemas", str(SCHEMAS), str(SEED / name)]) == 0
    assert f"pipeline {converted['metadata']['name']} is valid" in capsys.readouterr().out

    config = tmp_path / name
    config.write_text(json.dumps(servers.substitute(example(name)), indent=2))
    # The converted YAML is the same pipeline as the JSON it came from.
    converted_file = tmp_path / f"{Path(name).stem}.yaml"
    assert main(["convert", str(config)]) == 0
    converted_file.write_text(capsys.readouterr().out)
    loaded = load_pipeline(config)
    assert loaded.pipeline == load_pipeline(converted_file).pipeline
    context = RunContext(
        pipeline=loaded.pipeline.name,
        spark=spark,
        base_dir=loaded.base_dir,
        env=servers.env,
        run_id="legacy-1",
        tolerance=str(loaded.pipeline.spec.error_handling.tolerance),
        schemas=SchemaRegistry([SCHEMAS]),
    )
    return run_pipeline(loaded.pipeline, context, SchemaRegistry([SCHEMAS]))


def assert_counts(metrics: RunMetrics) -> None:
    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (7, 3, 2)


def assert_letter(letter: dict[str, Any], pipeline: str) -> tuple[str, str]:
    """A dead letter has the documented record's fields; returns (event_id, field at fault)."""
    documented = example("dead-letter-record.json")
    assert set(letter) == set(documented) == set(DEAD_LETTER_COLUMNS)
    assert letter["pipelineId"] == pipeline
    assert letter["stage"] == "extract"
    assert letter["originalSchema"] == "user-event"
    assert letter["attemptNumber"] == 1
    original = json.loads(letter["originalRecord"])
    return str(original["event_id"]), str(letter["context"]["field"])


def test_kafka_dead_letters_example(
    servers: Servers, spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = convert_validate_run("batch-s3-to-postgres.json", servers, spark, tmp_path, capsys)
    assert_counts(metrics)
    assert servers.summary() == AFTER
    messages = consume({"bootstrap.servers": servers.kafka.bootstrap_servers}, servers.topic, count=2)
    assert [m.key() for m in messages] == [b"batch-s3-to-postgres"] * 2
    letters = [json.loads(m.value() or b"") for m in messages]
    assert sorted(assert_letter(letter, "batch-s3-to-postgres") for letter in letters) == REJECTED


def test_s3_dead_letters_example(
    servers: Servers, spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = convert_validate_run("batch-s3-to-postgres-s3-dlq.json", servers, spark, tmp_path, capsys)
    assert_counts(metrics)
    assert servers.summary() == AFTER
    listed = servers.s3.client().list_objects_v2(Bucket=servers.bucket, Prefix="dlq/")
    today = datetime.now(UTC).date().isoformat()
    files = [item["Key"] for item in listed.get("Contents", []) if item["Key"].endswith(".parquet")]
    assert files and all(key.startswith(f"dlq/date={today}/") for key in files)
    frame = spark.read.parquet(f"s3a://{servers.bucket}/dlq/")
    assert frame.columns == [*DEAD_LETTER_COLUMNS, "date"]
    letters = [row.asDict(recursive=True) for row in frame.drop("date").collect()]
    found = sorted(assert_letter(letter, "batch-s3-to-postgres-s3-dlq") for letter in letters)
    assert found == REJECTED


def test_the_converted_example_is_an_etl_pipeline_as_written() -> None:
    """What `kubectl apply` gets: the converted YAML, parsed by the contract, unchanged."""
    for name in ("batch-s3-to-postgres.json", "batch-s3-to-postgres-s3-dlq.json"):
        manifest = convert(example(name)).manifest
        assert ETLPipeline.model_validate(manifest).name == name.removesuffix(".json")
