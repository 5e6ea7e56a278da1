"""Every source into every sink, on the real servers: S3 (MinIO), PostgreSQL, MySQL (MariaDB) and
Kafka. Each case seeds the same five rows into its source, runs one pipeline (a filter drops the
one refund) and reads the sink back, expecting exactly the four other rows."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from etl_job.contract import ETLPipeline, SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext
from tests.infra.kafka import KafkaBroker
from tests.infra.mariadb import MySQLServer
from tests.infra.postgres import PostgresServer
from tests.infra.s3 import S3Server

pytestmark = pytest.mark.integration

KINDS = ("S3", "PostgreSQL", "MySQL", "Kafka")

ROWS = [
    (1, "ada", 12.5),
    (2, "grace", 40.0),
    (3, "linus", -5.0),  # a refund: the filter drops it
    (4, "margaret", 7.25),
    (5, "barbara", 100.0),
]
EXPECTED = sorted(row for row in ROWS if row[2] > 0)

SCHEMA = {
    "type": "record",
    "name": "MatrixRow",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "amount", "type": "double"},
    ],
}

PG_SECRET = SecretKeyRef(name="pg", key="password")
MYSQL_SECRET = SecretKeyRef(name="mysql", key="password")
S3_ACCESS = SecretKeyRef(name="s3", key="access-key")
S3_SECRET = SecretKeyRef(name="s3", key="secret-key")


@dataclass
class Services:
    postgres: PostgresServer
    mysql: MySQLServer
    kafka: KafkaBroker
    s3: S3Server
    bucket: str
    env: dict[str, str] = field(default_factory=dict)

    def s3_block(self) -> dict[str, Any]:
        return {
            "endpoint": self.s3.endpoint,
            "region": self.s3.region,
            "pathStyleAccess": True,
            "accessKeyRef": {"name": S3_ACCESS.name, "key": S3_ACCESS.key},
            "secretKeyRef": {"name": S3_SECRET.name, "key": S3_SECRET.key},
        }

    def database(self, kind: str) -> tuple[dict[str, Any], dict[str, str]]:
        server: PostgresServer | MySQLServer = self.postgres if kind == "PostgreSQL" else self.mysql
        ref = PG_SECRET if kind == "PostgreSQL" else MYSQL_SECRET
        connection = {
            "host": server.host,
            "port": server.port,
            "database": server.database,
            "user": server.user,
        }
        return connection, {"name": ref.name, "key": ref.key}


@pytest.fixture
def services(
    postgres: PostgresServer, mysql: MySQLServer, kafka: KafkaBroker, s3: S3Server, bucket: str
) -> Services:
    found = Services(postgres, mysql, kafka, s3, bucket)
    found.env = {
        secret_env_name(PG_SECRET): postgres.password,
        secret_env_name(MYSQL_SECRET): mysql.password,
        secret_env_name(S3_ACCESS): s3.access_key,
        secret_env_name(S3_SECRET): s3.secret_key,
    }
    return found


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> SchemaRegistry:
    folder = tmp_path_factory.mktemp("schemas")
    (folder / "matrix-row.avsc").write_text(json.dumps(SCHEMA))
    return SchemaRegistry([folder])


# --- sources: seed the rows, return the extract block --------------------------------------


def seed_s3(services: Services, name: str) -> dict[str, Any]:
    lines = "\n".join(json.dumps({"id": i, "name": n, "amount": a}) for i, n, a in ROWS)
    services.s3.client().put_object(Bucket=services.bucket, Key=f"{name}/in/rows.json", Body=lines.encode())
    return {
        "sourceType": "S3",
        "path": f"s3a://{services.bucket}/{name}/in/",
        "format": "json",
        "s3": services.s3_block(),
        "schemaName": "matrix-row",
    }


def seed_database(kind: str) -> Callable[[Services, str], dict[str, Any]]:
    def seed(services: Services, name: str) -> dict[str, Any]:
        text_type = "TEXT" if kind == "PostgreSQL" else "VARCHAR(64)"
        double_type = "DOUBLE PRECISION" if kind == "PostgreSQL" else "DOUBLE"
        server: PostgresServer | MySQLServer = services.postgres if kind == "PostgreSQL" else services.mysql
        connection = server.connect()
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE {name}_in (id BIGINT PRIMARY KEY, name {text_type}, amount {double_type})"
            )
            cursor.executemany(f"INSERT INTO {name}_in VALUES (%s, %s, %s)", ROWS)
        connection.commit()
        connection.close()
        block, ref = services.database(kind)
        return {"sourceType": kind, "connection": block, "credentialsRef": ref, "table": f"{name}_in"}

    return seed


def seed_kafka(services: Services, name: str) -> dict[str, Any]:
    topic = f"{name}-in"
    services.kafka.create_topic(topic)
    producer = Producer({"bootstrap.servers": services.kafka.bootstrap_servers})
    for row_id, row_name, amount in ROWS:
        producer.produce(topic, json.dumps({"id": row_id, "name": row_name, "amount": amount}).encode())
    assert producer.flush(30) == 0
    return {
        "sourceType": "Kafka",
        "bootstrapServers": services.kafka.bootstrap_servers,
        "topic": topic,
        "valueFormat": "json",
        "schemaName": "matrix-row",
    }


SEED: dict[str, Callable[[Services, str], dict[str, Any]]] = {
    "S3": seed_s3,
    "PostgreSQL": seed_database("PostgreSQL"),
    "MySQL": seed_database("MySQL"),
    "Kafka": seed_kafka,
}


# --- sinks: the load block, and how to read it back -----------------------------------------

Rows = list[tuple[int, str, float]]


def s3_sink(services: Services, name: str, spark: Any) -> tuple[dict[str, Any], Callable[[], Rows]]:
    path = f"s3a://{services.bucket}/{name}/out/"

    def read() -> Rows:
        return sorted((r["id"], r["name"], r["amount"]) for r in spark.read.parquet(path).collect())

    block = {"sinkType": "S3", "path": path, "format": "parquet", "s3": services.s3_block()}
    return block, read


def database_sink(kind: str) -> Callable[[Services, str, Any], tuple[dict[str, Any], Callable[[], Rows]]]:
    def sink(services: Services, name: str, spark: Any) -> tuple[dict[str, Any], Callable[[], Rows]]:
        server: PostgresServer | MySQLServer = services.postgres if kind == "PostgreSQL" else services.mysql

        def read() -> Rows:
            connection = server.connect()
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT id, name, amount FROM {name}_out ORDER BY id")
                found = [(int(i), str(n), float(a)) for i, n, a in cursor.fetchall()]
            connection.close()
            return found

        connection, ref = services.database(kind)
        block = {
            "sinkType": kind,
            "connection": connection,
            "credentialsRef": ref,
            "table": f"{name}_out",  # created from the output's schema
            "writeMode": "upsert",
            "primaryKey": ["id"],
        }
        return block, read

    return sink


def kafka_sink(services: Services, name: str, spark: Any) -> tuple[dict[str, Any], Callable[[], Rows]]:
    topic = f"{name}-out"
    services.kafka.create_topic(topic)

    def read() -> Rows:
        consumer = Consumer(
            {
                "bootstrap.servers": services.kafka.bootstrap_servers,
                "group.id": f"check-{name}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic])
        values: list[dict[str, Any]] = []
        for _ in range(30):
            for message in consumer.consume(num_messages=100, timeout=1.0):
                assert message.error() is None
                values.append(json.loads(message.value() or b"null"))
            if len(values) >= len(EXPECTED):
                break
        consumer.close()
        return sorted((v["id"], v["name"], v["amount"]) for v in values)

    block = {
        "sinkType": "Kafka",
        "bootstrapServers": services.kafka.bootstrap_servers,
        "topic": topic,
        "keyColumn": "id",
        "valueFormat": "json",
    }
    return block, read


SINK: dict[str, Callable[[Services, str, Any], tuple[dict[str, Any], Callable[[], Rows]]]] = {
    "S3": s3_sink,
    "PostgreSQL": database_sink("PostgreSQL"),
    "MySQL": database_sink("MySQL"),
    "Kafka": kafka_sink,
}


@pytest.mark.parametrize("sink", KINDS)
@pytest.mark.parametrize("source", KINDS)
def test_every_source_loads_into_every_sink(
    source: str, sink: str, services: Services, spark: Any, schemas: SchemaRegistry, tmp_path: Path
) -> None:
    name = f"m_{source[:2].lower()}_{sink[:2].lower()}_{secrets.token_hex(3)}"
    load, read_back = SINK[sink](services, name, spark)
    manifest = {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": name.replace("_", "-")},
        "spec": {
            "extract": SEED[source](services, name),
            "transforms": [
                {"transformType": "Filter", "condition": "amount > 0"},
                {"transformType": "Select", "columns": ["id", "name", "amount"]},
            ],
            "load": load,
        },
    }
    pipeline = ETLPipeline.model_validate(manifest)
    context = RunContext(
        pipeline=pipeline.name,
        spark=spark,
        base_dir=tmp_path,
        env=services.env,
        schemas=schemas,
        run_id="m-1",
    )

    metrics = run_pipeline(pipeline, context, schemas)

    assert read_back() == EXPECTED
    assert (metrics.records_extracted, metrics.records_filtered, metrics.records_loaded) == (5, 1, 4)
    assert metrics.records_failed == 0
