"""The PostgreSQL and MySQL connectors against real servers (PostgreSQL, and MariaDB for MySQL):
every read feature, every write mode, and the failures people meet first, with exact rows."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.connectors.jdbc.connector import JdbcSinkConnector, JdbcSourceConnector
from etl_job.contract import (
    ConfigurationError,
    CredentialsMissing,
    DataError,
    EtlError,
    JdbcSink,
    JdbcSource,
    RunMetrics,
    SecretKeyRef,
    SinkRejected,
    SourceUnavailable,
)
from etl_job.contract.credentials import secret_env_name
from etl_job.contract.manifest import parse_manifest
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext
from tests.infra.mariadb import MySQLServer
from tests.infra.postgres import PostgresServer
from tests.infra.process import free_port
from tests.infra.spark import connector_jars
from tests.infra.versions import REPO_ROOT

pytestmark = pytest.mark.integration

REF = SecretKeyRef(name="db-credentials", key="password")
NO_SCHEMAS = SchemaRegistry([])


@dataclass(frozen=True)
class Database:
    """One of the two servers, as the tests use it."""

    kind: str  # the sourceType / sinkType
    server: PostgresServer | MySQLServer

    @property
    def password(self) -> str:
        return self.server.password

    @property
    def address(self) -> str:
        return f"{self.server.host}:{self.server.port}/{self.server.database}"

    def connection(self, **overrides: Any) -> dict[str, Any]:
        server = self.server
        return {
            "host": server.host,
            "port": server.port,
            "database": server.database,
            "user": server.user,
            **overrides,
        }

    def execute(self, *statements: str) -> None:
        conn = self.server.connect()
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.commit()
        conn.close()

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        conn = self.server.connect()
        with conn.cursor() as cur:
            cur.execute(query)
            found = [tuple(row) for row in cur.fetchall()]
        conn.close()
        return found

    def primary_key(self, table: str) -> list[str]:
        return [
            row[0]
            for row in self.rows(
                "SELECT k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name "
                f"AND k.table_name = c.table_name AND k.table_schema = c.table_schema "
                f"WHERE c.table_name = '{table}' AND c.constraint_type = 'PRIMARY KEY'"
            )
        ]

    def tables_like(self, prefix: str) -> list[str]:
        return [
            row[0]
            for row in self.rows(
                f"SELECT table_name FROM information_schema.tables WHERE table_name LIKE '{prefix}%'"
            )
        ]


@pytest.fixture(params=["PostgreSQL", "MySQL"])
def db(request: pytest.FixtureRequest) -> Database:
    server = request.getfixturevalue("postgres" if request.param == "PostgreSQL" else "mysql")
    return Database(request.param, server)


@pytest.fixture
def table() -> str:
    """A table name of the test's own: the servers live for the whole session."""
    return f"t_{secrets.token_hex(4)}"


def block(db: Database, table: str | None = None, **fields: Any) -> dict[str, Any]:
    """An extract or load block for the database (sourceType or sinkType added by the caller)."""
    found: dict[str, Any] = {
        "connection": db.connection(),
        "credentialsRef": {"name": REF.name, "key": REF.key},
        **fields,
    }
    if table is not None:
        found["table"] = table
    return found


def extract(db: Database, table: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"sourceType": db.kind, **block(db, table, **fields)}


def load(db: Database, table: str, **fields: Any) -> dict[str, Any]:
    return {"sinkType": db.kind, **block(db, table, **fields)}


def context(spark: Any, db: Database, password: str | None = None, mark: str | None = None) -> RunContext:
    env = {secret_env_name(REF): db.password if password is None else password}
    return RunContext(pipeline="jdbc-test", spark=spark, env=env, high_water_mark=mark, run_id="test-run")


def run(
    spark: Any,
    db: Database,
    spec: dict[str, Any],
    password: str | None = None,
    mark: str | None = None,
) -> RunMetrics:
    pipeline = parse_manifest(
        {
            "metadata": {"name": "jdbc-test"},
            "spec": {"errorHandling": {"retry": {"strategy": "none"}}, **spec},
        }
    )
    return run_pipeline(pipeline, context(spark, db, password, mark), NO_SCHEMAS)


def to_files(path: Path) -> dict[str, Any]:
    return {"sinkType": "S3", "path": str(path), "format": "parquet", "writeMode": "overwrite"}


def file_rows(spark: Any, path: Path, *columns: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in spark.read.parquet(str(path)).select(*columns).collect())


def from_rows(spark: Any, folder: Path, rows: list[tuple[Any, ...]], schema: str) -> dict[str, Any]:
    """An extract block reading `rows` back from Parquet written for the test."""
    spark.createDataFrame(rows, schema).coalesce(1).write.mode("overwrite").parquet(str(folder))
    return {"sourceType": "S3", "path": str(folder), "format": "parquet"}


def create_people(db: Database, table: str, rows: str) -> None:
    text = "TEXT" if db.kind == "PostgreSQL" else "VARCHAR(100)"
    db.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, name {text}, updated_at TIMESTAMP NULL)")
    if rows:
        db.execute(f"INSERT INTO {table} (id, name, updated_at) VALUES {rows}")


PEOPLE = ", ".join(
    [
        "(1, 'ada', '2024-01-01 10:00:00')",
        "(2, 'grace', '2024-01-01 11:00:00')",
        "(3, 'linus', '2024-01-01 12:00:00')",
    ]
)


# --- sources -----------------------------------------------------------------------------------


def test_reads_a_table(spark: Any, db: Database, table: str, tmp_path: Path) -> None:
    create_people(db, table, PEOPLE)
    metrics = run(spark, db, {"extract": extract(db, table), "load": to_files(tmp_path / "out")})
    assert metrics.records_extracted == 3 and metrics.records_loaded == 3
    assert file_rows(spark, tmp_path / "out", "id", "name") == [(1, "ada"), (2, "grace"), (3, "linus")]


def test_the_user_may_come_from_a_secret(spark: Any, postgres: PostgresServer, table: str) -> None:
    db = Database("PostgreSQL", postgres)
    create_people(db, table, PEOPLE)
    user_ref = SecretKeyRef(name="db-credentials", key="user")
    connection = {k: v for k, v in db.connection().items() if k != "user"}
    source = JdbcSource.model_validate(
        {
            **extract(db, table),
            "connection": {**connection, "userRef": {"name": user_ref.name, "key": user_ref.key}},
        }
    )
    env = {secret_env_name(REF): postgres.password, secret_env_name(user_ref): postgres.user}
    frame = JdbcSourceConnector().read(source, RunContext(pipeline="jdbc-test", spark=spark, env=env))
    assert frame.count() == 3


def test_reads_a_query_split_on_a_column(spark: Any, db: Database, table: str) -> None:
    create_people(db, table, PEOPLE)
    source = JdbcSource.model_validate(
        extract(db, query=f"SELECT id, upper(name) AS name FROM {table} WHERE id <> 2;", partitionColumn="id")
    )
    frame = JdbcSourceConnector().read(source, context(spark, db))
    # Without numPartitions, as many reads as Spark runs tasks at once (local[2]: 2).
    assert frame.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism
    assert sorted(tuple(row) for row in frame.collect()) == [(1, "ADA"), (3, "LINUS")]


@pytest.mark.parametrize("column", ["id", "updated_at"])
def test_a_partitioned_read_finds_its_bounds(spark: Any, db: Database, table: str, column: str) -> None:
    create_people(db, table, PEOPLE + ", (4, 'barbara', '2024-01-02 09:30:00'), (5, 'edsger', NULL)")
    source = JdbcSource.model_validate(extract(db, table, partitionColumn=column, numPartitions=3))
    frame = JdbcSourceConnector().read(source, context(spark, db))
    assert frame.rdd.getNumPartitions() == 3
    # The first and last partitions are open-ended: every row is read once, NULLs too.
    assert sorted(row.id for row in frame.collect()) == [1, 2, 3, 4, 5]


def test_a_partitioned_read_of_an_empty_table_reads_one_partition(
    spark: Any, db: Database, table: str
) -> None:
    create_people(db, table, "")
    source = JdbcSource.model_validate(extract(db, table, partitionColumn="id", numPartitions=4))
    frame = JdbcSourceConnector().read(source, context(spark, db))
    assert frame.rdd.getNumPartitions() == 1 and frame.collect() == []


def test_a_partition_column_must_be_a_number_date_or_timestamp(spark: Any, db: Database, table: str) -> None:
    create_people(db, table, PEOPLE)
    source = JdbcSource.model_validate(extract(db, table, partitionColumn="name", numPartitions=2))
    with pytest.raises(ConfigurationError, match="column name is not a number, date or timestamp"):
        JdbcSourceConnector().read(source, context(spark, db))


@pytest.mark.parametrize(
    ("column", "first_mark", "second_mark"),
    [("updated_at", "2024-01-01 12:00:00", "2024-01-01 14:00:00"), ("id", "3", "5")],
)
def test_incremental_runs_read_only_new_rows_and_advance_the_mark(
    spark: Any, db: Database, table: str, tmp_path: Path, column: str, first_mark: str, second_mark: str
) -> None:
    create_people(db, table, PEOPLE)
    spec = {"extract": extract(db, table, incremental={"column": column}), "load": to_files(tmp_path / "out")}

    first = run(spark, db, spec)
    assert first.records_extracted == 3
    assert first.high_water_mark is not None and first.high_water_mark.startswith(first_mark)

    db.execute(
        f"INSERT INTO {table} VALUES "
        "(4, 'barbara', '2024-01-01 13:00:00'), (5, 'edsger', '2024-01-01 14:00:00')"
    )
    second = run(spark, db, spec, mark=first.high_water_mark)
    assert file_rows(spark, tmp_path / "out", "id", "name") == [(4, "barbara"), (5, "edsger")]
    assert second.high_water_mark is not None and second.high_water_mark.startswith(second_mark)

    third = run(spark, db, spec, mark=second.high_water_mark)
    assert third.records_extracted == 0 and third.high_water_mark == second.high_water_mark


# --- sinks -------------------------------------------------------------------------------------

PEOPLE_SCHEMA = "id int, name string"


def test_append_adds_rows(spark: Any, db: Database, table: str, tmp_path: Path) -> None:
    create_people(db, table, "(1, 'ada', NULL)")
    source = from_rows(spark, tmp_path / "in", [(2, "grace"), (3, "linus")], PEOPLE_SCHEMA)
    metrics = run(spark, db, {"extract": source, "load": load(db, table, writeMode="append", batchSize=1)})
    assert metrics.records_loaded == 2
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == [(1, "ada"), (2, "grace"), (3, "linus")]


def test_overwrite_replaces_rows_and_keeps_the_table_definition(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    db.execute(
        f"CREATE TABLE {table} "
        "(id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, note VARCHAR(20) DEFAULT 'kept')",
        f"INSERT INTO {table} (id, name) VALUES (1, 'ada'), (2, 'grace')",
    )
    source = from_rows(spark, tmp_path / "in", [(3, "linus")], PEOPLE_SCHEMA)
    run(spark, db, {"extract": source, "load": load(db, table, writeMode="overwrite")})
    # A column the output lacks, its default and the key survive: the table was truncated, not
    # dropped and created again from the output's schema.
    assert db.rows(f"SELECT id, name, note FROM {table}") == [(3, "linus", "kept")]
    assert db.primary_key(table) == ["id"]


@pytest.mark.parametrize("mode", ["append", "upsert"])  # overwrite creates it as append does
def test_a_missing_table_is_created_from_the_output(
    spark: Any, db: Database, table: str, tmp_path: Path, mode: str
) -> None:
    source = from_rows(spark, tmp_path / "in", [(1, "ada"), (2, "grace")], PEOPLE_SCHEMA)
    run(spark, db, {"extract": source, "load": load(db, table, writeMode=mode, primaryKey=["id"])})
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == [(1, "ada"), (2, "grace")]
    assert db.primary_key(table) == ["id"]


def test_upsert_inserts_and_updates_and_a_rerun_gives_the_same_table(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    create_people(db, table, "(1, 'ada', NULL), (2, 'grace', NULL)")
    source = from_rows(spark, tmp_path / "in", [(2, "GRACE"), (3, "linus"), (4, None)], PEOPLE_SCHEMA)
    spec = {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])}
    expected = [(1, "ada"), (2, "GRACE"), (3, "linus"), (4, None)]

    assert run(spark, db, spec).records_loaded == 3
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == expected
    run(spark, db, spec)
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == expected
    nothing = from_rows(spark, tmp_path / "empty", [], PEOPLE_SCHEMA)
    assert run(spark, db, {**spec, "extract": nothing}).records_loaded == 0
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == expected
    assert db.tables_like("etl_stage_") == []


def test_upsert_carries_every_value_exactly(spark: Any, db: Database, table: str) -> None:
    """Quotes, commas, newlines, backslashes, NULL against the empty string, and each type."""
    from pyspark.sql import functions as F

    texts = ['say "hi", then\nleave', "back\\slash \\N", "", None, "NULL", "ünïcødé ✓"]
    frame = spark.createDataFrame(
        [
            (i, text, i % 2 == 0, Decimal(f"{i}.25"), i * 1.5, date(2024, 1, i + 1), bytes([0, 255, i]))
            for i, text in enumerate(texts)
        ],
        "id long, text string, flag boolean, amount decimal(10,2), ratio double, day date, raw binary",
    ).withColumn("seen", F.timestamp_seconds(F.lit(1704103200) + F.col("id")))  # 2024-01-01 10:00:00Z
    sink = JdbcSink.model_validate(load(db, table, writeMode="upsert", primaryKey=["id"]))
    JdbcSinkConnector().write(frame, sink, context(spark, db))

    found = db.rows(f"SELECT id, text, flag, amount, ratio, day, raw, seen FROM {table} ORDER BY id")
    assert [row[1] for row in found] == texts
    assert [bool(row[2]) for row in found] == [i % 2 == 0 for i in range(len(texts))]
    assert [row[3] for row in found] == [Decimal(f"{i}.25") for i in range(len(texts))]
    assert [row[4] for row in found] == [i * 1.5 for i in range(len(texts))]
    assert [row[5] for row in found] == [date(2024, 1, i + 1) for i in range(len(texts))]
    assert [bytes(row[6]) for row in found] == [bytes([0, 255, i]) for i in range(len(texts))]
    assert [row[7].replace(tzinfo=None) for row in found] == [
        datetime(2024, 1, 1, 10, 0, i) for i in range(len(texts))
    ]


@pytest.mark.parametrize("twice", [7, 1], ids=["new-key", "key-in-the-table"])
def test_a_key_twice_in_one_upsert_is_a_data_error_naming_it(
    spark: Any, db: Database, table: str, tmp_path: Path, twice: int
) -> None:
    create_people(db, table, "(1, 'ada', NULL)")
    rows = [(1, "x"), (7, "y"), (twice, "z")]
    source = from_rows(spark, tmp_path / "in", rows, PEOPLE_SCHEMA)
    # PostgreSQL's message names the key as id=7, MariaDB's as '7'.
    with pytest.raises(DataError, match=f"id={twice}\\b|'{twice}'") as failed:
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])})
    assert "more than once" in str(failed.value) and table in str(failed.value)
    assert db.rows(f"SELECT id, name FROM {table}") == [(1, "ada")]
    assert db.tables_like("etl_stage_") == []


def test_a_value_the_column_refuses_is_a_data_error(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    db.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, amount INT)")
    source = from_rows(spark, tmp_path / "in", [(1, "12"), (2, "twelve")], "id int, amount string")
    with pytest.raises(DataError, match="twelve"):
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])})
    assert db.rows(f"SELECT id, amount FROM {table}") == []


def test_a_row_the_tables_constraints_refuse_leaves_the_table_as_it_was(
    spark: Any, postgres: PostgresServer, table: str, tmp_path: Path
) -> None:
    db = Database("PostgreSQL", postgres)
    db.execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name TEXT, note TEXT NOT NULL)",
        f"INSERT INTO {table} VALUES (1, 'ada', 'kept')",
    )
    source = from_rows(spark, tmp_path / "in", [(1, "ADA"), (2, "grace")], PEOPLE_SCHEMA)
    with pytest.raises(DataError, match="null value in column"):
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])})
    assert db.rows(f"SELECT id, name, note FROM {table}") == [(1, "ada", "kept")]


def test_a_key_another_writer_adds_during_the_merge_is_updated(
    spark: Any, postgres: PostgresServer, table: str, tmp_path: Path
) -> None:
    db = Database("PostgreSQL", postgres)
    create_people(db, table, "(1, 'ada', NULL)")
    other = postgres.connect()  # another writer: key 7, committed only once the merge waits on it
    with other.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (id, name) VALUES (7, 'other')")

    def commit_when_the_merge_waits() -> None:
        deadline = time.monotonic() + 120
        watcher = postgres.connect()
        watcher.autocommit = True  # a transaction would see one snapshot of pg_stat_activity
        with watcher.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'MERGE%'"
                )
                if cur.fetchone()[0]:
                    break
                time.sleep(0.1)
        watcher.close()
        other.commit()

    committer = threading.Thread(target=commit_when_the_merge_waits)
    committer.start()
    try:
        source = from_rows(spark, tmp_path / "in", [(1, "x"), (7, "y")], PEOPLE_SCHEMA)
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])})
    finally:
        committer.join()
        other.close()
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == [(1, "x"), (7, "y")]


def test_a_row_another_unique_index_refuses_is_a_data_error(
    spark: Any, postgres: PostgresServer, table: str, tmp_path: Path
) -> None:
    db = Database("PostgreSQL", postgres)
    db.execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name TEXT UNIQUE)",
        f"INSERT INTO {table} VALUES (1, 'ada')",
    )
    source = from_rows(spark, tmp_path / "in", [(2, "ada"), (3, "grace")], PEOPLE_SCHEMA)
    with pytest.raises(DataError, match=r"refused row \(id=2\): UniqueViolation/23505") as failed:
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])})
    assert "more than once" not in str(failed.value)
    assert db.rows(f"SELECT id, name FROM {table}") == [(1, "ada")]


def test_upsert_needs_a_unique_key_on_the_primary_key(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    db.execute(f"CREATE TABLE {table} (id INT, name VARCHAR(20))")
    source = from_rows(spark, tmp_path / "in", [(1, "ada")], PEOPLE_SCHEMA)
    with pytest.raises(ConfigurationError, match=r"no primary key or unique index on exactly \(id\)"):
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="upsert", primaryKey=["id"])})


def test_an_output_column_the_table_lacks_is_named(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    db.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY)")
    source = from_rows(spark, tmp_path / "in", [(1, "ada")], PEOPLE_SCHEMA)
    with pytest.raises(ConfigurationError, match=f"column name of the output is not in table {table}"):
        run(spark, db, {"extract": source, "load": load(db, table, writeMode="append")})


# --- failures ----------------------------------------------------------------------------------


def assert_names_the_database(failed: EtlError, db: Database, address: str, table: str, cause: str) -> None:
    message = str(failed)
    assert address in message and table in message, message
    assert cause in message, message
    assert db.password not in message
    assert "\tat " not in message and "Traceback" not in message, message


CAUSES = {
    "wrong password": {"PostgreSQL": "password authentication failed", "MySQL": "Access denied for user"},
    "unknown host": {"PostgreSQL": "UnknownHostException", "MySQL": "UnknownHostException"},
    "missing table": {"PostgreSQL": 'relation "missing_table" does not exist', "MySQL": "doesn't exist"},
}


@pytest.mark.parametrize("problem", list(CAUSES))
def test_a_source_that_cannot_be_read_is_named_with_the_cause(
    spark: Any, db: Database, table: str, tmp_path: Path, problem: str
) -> None:
    create_people(db, table, PEOPLE)
    source, password, address = extract(db, table), db.password, db.address
    if problem == "wrong password":
        password = "not-" + db.password
    elif problem == "unknown host":
        source["connection"]["host"] = "no-such-host.invalid"
        address = address.replace(db.server.host, "no-such-host.invalid")
    else:
        source["table"] = table = "missing_table"
    with pytest.raises(SourceUnavailable) as failed:
        run(spark, db, {"extract": source, "load": to_files(tmp_path / "out")}, password=password)
    assert failed.value.exit_code == 4
    assert failed.value.permanent == (problem != "unknown host")
    assert_names_the_database(failed.value, db, address, table, CAUSES[problem][db.kind])


@pytest.mark.parametrize("problem", ["wrong password", "unknown host"])
def test_a_sink_that_cannot_be_reached_is_named_with_the_cause(
    spark: Any, db: Database, table: str, tmp_path: Path, problem: str
) -> None:
    sink, password, address = load(db, table, writeMode="upsert", primaryKey=["id"]), db.password, db.address
    if problem == "wrong password":
        password = "not-" + db.password
    else:
        sink["connection"]["host"] = "no-such-host.invalid"
        address = address.replace(db.server.host, "no-such-host.invalid")
    source = from_rows(spark, tmp_path / "in", [(1, "ada")], PEOPLE_SCHEMA)
    with pytest.raises(SinkRejected) as failed:
        run(spark, db, {"extract": source, "load": sink}, password=password)
    assert failed.value.exit_code == 4
    # Refused credentials are not retried; a host that does not resolve may come back.
    assert failed.value.permanent == (problem == "wrong password")
    assert_names_the_database(failed.value, db, address, table, CAUSES[problem][db.kind])


def test_a_missing_secret_is_named(spark: Any, postgres: PostgresServer, table: str, tmp_path: Path) -> None:
    db = Database("PostgreSQL", postgres)
    pipeline = parse_manifest(
        {
            "metadata": {"name": "jdbc-test"},
            "spec": {"extract": extract(db, table), "load": to_files(tmp_path)},
        }
    )
    with pytest.raises(CredentialsMissing, match=f"Secret {REF.name} key {REF.key}") as failed:
        run_pipeline(pipeline, RunContext(pipeline="jdbc-test", spark=spark, env={}), NO_SCHEMAS)
    assert failed.value.exit_code == 2


# --- the command line ----------------------------------------------------------------------------


def test_the_cli_copies_a_table_between_databases(
    postgres: PostgresServer, mysql: MySQLServer, table: str, tmp_path: Path
) -> None:
    """`etl run` in its own process: PostgreSQL read incrementally, upserted into MySQL, with
    the password only in the environment, as the operator runs it."""
    source, target = Database("PostgreSQL", postgres), Database("MySQL", mysql)
    create_people(source, table, PEOPLE)
    mysql_ref = SecretKeyRef(name="mysql-credentials", key="password")
    manifest = {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": "copy-people"},
        "spec": {
            "extract": extract(source, table, incremental={"column": "updated_at"}),
            "transforms": [{"transformType": "Select", "columns": ["id", "name"]}],
            "load": {
                **load(target, table, writeMode="upsert", primaryKey=["id"]),
                "credentialsRef": {"name": mysql_ref.name, "key": mysql_ref.key},
            },
        },
    }
    config = tmp_path / "copy-people.yaml"
    config.write_text(yaml.safe_dump(manifest))
    env = {
        **os.environ,
        "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars()),
        "PYTHONPATH": str(REPO_ROOT / "job_image"),
        secret_env_name(REF): postgres.password,
        secret_env_name(mysql_ref): mysql.password,
    }
    done = subprocess.run(
        [sys.executable, "-m", "etl_job.cli", "run", str(config), "--master", "local[2]"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout[done.stdout.index("{") :])
    assert metrics["recordsLoaded"] == 3 and metrics["highWaterMark"].startswith("2024-01-01 12:00:00")
    assert target.rows(f"SELECT id, name FROM {table} ORDER BY id") == [
        (1, "ada"),
        (2, "grace"),
        (3, "linus"),
    ]
    assert postgres.password not in done.stdout + done.stderr
    assert mysql.password not in done.stdout + done.stderr


# --- rows the table refuses ----------------------------------------------------------------------


def write_csv_files(folder: Path, rows: list[tuple[int, str, int]], files: int) -> dict[str, Any]:
    """`rows` split in order over `files` CSV files (with a header); an extract block reading them."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(rows) // files)
    for number in range(files):
        chunk = rows[number * per_file : (number + 1) * per_file]
        lines = "".join(f"{row_id},{name},{amount}\n" for row_id, name, amount in chunk)
        (folder / f"part-{number}.csv").write_text("id,name,amount\n" + lines)
    return {
        "sourceType": "S3",
        "path": str(folder),
        "format": "csv",
        "options": {"header": "true", "inferSchema": "true"},
    }


def test_issue_16_a_row_refused_by_a_check_in_the_last_file_leaves_the_table_as_it_was(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    """10,000 CSV rows in four files appended into a table holding one row; the CHECK refuses one
    row of the last file. The run fails as a data error naming the row and the cause, without
    retrying, and not one row is added (it used to end with exit code 4 and 2,501 or 5,001 rows:
    each partition committed on its own, and the retry tripped over their keys)."""
    db.execute(
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(20), amount INT, CHECK (amount >= 0))",
        f"INSERT INTO {table} VALUES (0, 'kept', 1)",
    )
    rows = [(i, f"n{i}", -5 if i == 9_000 else i % 100) for i in range(1, 10_001)]
    source = write_csv_files(tmp_path / "in", rows, files=4)
    pipeline = parse_manifest(
        {
            "metadata": {"name": "jdbc-test"},
            "spec": {
                "extract": source,
                "load": load(db, table, writeMode="append", primaryKey=["id"]),
                "errorHandling": {"retry": {"strategy": "fixed", "maxAttempts": 3, "initialDelaySeconds": 0}},
            },
        }
    )
    with pytest.raises(DataError) as failed:
        run_pipeline(pipeline, context(spark, db), NO_SCHEMAS)
    assert failed.value.exit_code == 3
    message = str(failed.value)
    cause = "CheckViolation/23514" if db.kind == "PostgreSQL" else "IntegrityError/4025"
    assert f"{table} of {db.kind}" in message and "row (id=9000)" in message and cause in message, message
    assert db.rows(f"SELECT id, name, amount FROM {table}") == [(0, "kept", 1)]
    assert db.tables_like("etl_stage_") == []


def create_refusing_table(db: Database, table: str, *existing: str) -> None:
    """A table whose column type, NOT NULL, CHECK and foreign key each refuse a row, holding the
    `existing` rows; its parent table holds ids 1 and 2."""
    db.execute(
        f"CREATE TABLE {table}_parent (id INT PRIMARY KEY)",
        f"INSERT INTO {table}_parent VALUES (1), (2)",
        f"CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(5) NOT NULL, amount INT, parent INT, "
        f"CHECK (amount >= 0), FOREIGN KEY (parent) REFERENCES {table}_parent (id))",
    )
    if existing:
        db.execute(f"INSERT INTO {table} VALUES {', '.join(existing)}")


REFUSING_SCHEMA = "id int, name string, amount int, parent int"
#: A row each of the table's rules refuses, by the rule, with the cause each database gives
#: (MySQL's LOAD DATA into staging reports a value too long and a NULL in a NOT NULL column as
#: warnings 1265 and 1263, where an INSERT would raise 1406 and 1048).
REFUSED_ROWS = {
    "too long": (
        (2, "toolong", 5, 1),
        {"PostgreSQL": "StringDataRightTruncation/22001", "MySQL": "DataError/1265"},
    ),
    "check": ((3, "bob", -1, 1), {"PostgreSQL": "CheckViolation/23514", "MySQL": "IntegrityError/4025"}),
    "not null": ((4, None, 5, 1), {"PostgreSQL": "NotNullViolation/23502", "MySQL": "IntegrityError/1263"}),
    "foreign key": (
        (5, "eve", 5, 9),
        {"PostgreSQL": "ForeignKeyViolation/23503", "MySQL": "IntegrityError/1452"},
    ),
}


@pytest.mark.parametrize("rule", list(REFUSED_ROWS))
@pytest.mark.parametrize("mode", ["append", "upsert", "overwrite"])
def test_with_tolerance_none_a_refused_row_fails_the_run_naming_it_and_the_table_is_unchanged(
    spark: Any, db: Database, table: str, tmp_path: Path, rule: str, mode: str
) -> None:
    create_refusing_table(db, table, "(0, 'kept', 1, 1)", "(6, 'old', 1, 2)")
    bad, causes = REFUSED_ROWS[rule]
    rows = [(1, "ada", 5, 1), bad, (6, "new", 7, 2)]
    source = from_rows(spark, tmp_path / "in", rows, REFUSING_SCHEMA)
    with pytest.raises(DataError) as failed:
        run(spark, db, {"extract": source, "load": load(db, table, writeMode=mode, primaryKey=["id"])})
    assert failed.value.exit_code == 3
    assert f"refused row (id={bad[0]}): {causes[db.kind]}" in str(failed.value), str(failed.value)
    assert db.rows(f"SELECT id, name, amount, parent FROM {table} ORDER BY id") == [
        (0, "kept", 1, 1),
        (6, "old", 1, 2),
    ]
    assert db.tables_like("etl_stage_") == []


def without_key(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda row: row[0])


def dead_letters(spark: Any, folder: Path) -> list[dict[str, Any]]:
    """The dead letters written as JSON under `folder`, by recordKey."""
    found = [row.asDict(recursive=True) for row in spark.read.json(str(folder)).collect()]
    return sorted(found, key=lambda letter: letter["context"]["recordKey"])


def dead_letter_queue(folder: Path) -> dict[str, Any]:
    return {"type": "s3", "path": str(folder), "format": "json", "partitionBy": "none"}


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_with_tolerance_all_refused_rows_are_dead_lettered_and_every_other_row_is_written(
    spark: Any, db: Database, table: str, tmp_path: Path, mode: str
) -> None:
    """Refused at staging (a value too long; MySQL's NOT NULL) and at the write (CHECK, NOT NULL,
    foreign key); for upsert also an update the CHECK refuses, which leaves the old row."""
    create_refusing_table(db, table, "(0, 'kept', 1, 1)", "(6, 'old', 1, 2)", "(7, 'same', 1, 1)")
    rows = [(1, "ada", 5, 1), *(bad for bad, _ in REFUSED_ROWS.values()), (6, "joy", 7, 2), (8, "max", 0, 2)]
    if mode == "upsert":
        rows.append((7, "same", -3, 1))
    source = from_rows(spark, tmp_path / "in", rows, REFUSING_SCHEMA)
    queue = tmp_path / "dead-letters"
    spec = {
        "extract": source,
        "load": load(db, table, writeMode=mode, primaryKey=["id"]),
        "errorHandling": {
            "tolerance": "all",
            "retry": {"strategy": "none"},
            "deadLetter": dead_letter_queue(queue),
        },
    }
    if mode == "append":  # a key the table holds already is refused too
        rows.append((0, "dup", 1, 1))
        spec["extract"] = from_rows(spark, tmp_path / "in", rows, REFUSING_SCHEMA)
    metrics = run(spark, db, spec)

    expected = [
        (0, "kept", 1, 1),
        (1, "ada", 5, 1),
        (6, "joy" if mode == "upsert" else "old", 7 if mode == "upsert" else 1, 2),
    ]
    expected += [(7, "same", 1, 1), (8, "max", 0, 2)]
    assert db.rows(f"SELECT id, name, amount, parent FROM {table} ORDER BY id") == without_key(expected)
    refused = {f"row (id={bad[0]})": causes[db.kind] for bad, causes in REFUSED_ROWS.values()}
    if mode == "upsert":
        refused["row (id=7)"] = REFUSED_ROWS["check"][1][db.kind]
    else:
        refused["row (id=0)"] = "UniqueViolation/23505" if db.kind == "PostgreSQL" else "IntegrityError/1062"
        refused["row (id=6)"] = refused["row (id=0)"]
    letters = dead_letters(spark, queue)
    assert {letter["context"]["recordKey"]: letter["errorType"] for letter in letters} == refused
    for letter in letters:
        assert letter["stage"] == "load" and letter["pipelineId"] == "jdbc-test" and letter["errorMessage"]
        assert letter["context"]["sink"] == f"{db.kind} {db.address}"
        assert letter["context"]["table"] == table and letter["context"]["batch"] == "test-run"
        assert letter["context"]["writeMode"] == mode
        original = json.loads(letter["originalRecord"])
        assert f"row (id={original['id']})" == letter["context"]["recordKey"]
        assert tuple(original.values()) in rows
    assert metrics.records_failed == len(refused) and metrics.records_failed_by_stage == {
        "load": len(refused)
    }
    assert metrics.records_extracted == len(rows) == metrics.records_loaded + metrics.records_failed
    assert db.tables_like("etl_stage_") == []


class OnRetry(logging.Handler):
    """Calls `action` once, when the load's first attempt has failed and a retry is due."""

    def __init__(self, action: Any) -> None:
        super().__init__(logging.WARNING)
        self.action = action
        self.retries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.retries.append(record.getMessage())
        if len(self.retries) == 1:
            self.action()


@contextmanager
def on_retry(action: Any) -> Iterator[OnRetry]:
    handler = OnRetry(action)
    retry_log = logging.getLogger("etl_job.retry")
    retry_log.addHandler(handler)
    try:
        yield handler
    finally:
        retry_log.removeHandler(handler)


RETRIED = {"tolerance": "all", "retry": {"strategy": "fixed", "maxAttempts": 3, "initialDelaySeconds": 0.2}}


def test_a_server_that_refuses_connections_is_retried_then_fails_unavailable_with_no_dead_letter(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    source = from_rows(spark, tmp_path / "in", [(1, "ada")], PEOPLE_SCHEMA)
    sink = load(db, table, writeMode="append")
    sink["connection"]["port"] = free_port()  # nothing listens there
    queue = tmp_path / "dead-letters"
    spec = {
        "extract": source,
        "load": sink,
        "errorHandling": {**RETRIED, "deadLetter": dead_letter_queue(queue)},
    }
    with on_retry(lambda: None) as retries, pytest.raises(SinkRejected) as failed:
        run(spark, db, spec)
    assert failed.value.exit_code == 4 and not failed.value.permanent
    assert len(retries.retries) == 2  # three attempts
    assert "refused" in str(failed.value)
    assert not queue.exists()


#: A connection option that makes a write give up on a lock after a second.
LOCK_TIMEOUT = {
    "PostgreSQL": {"options": "-c lock_timeout=1000"},
    "MySQL": {"sessionVariables": "lock_wait_timeout=1"},
}


def test_a_lock_that_times_out_is_retried_and_the_rows_are_written_once_with_no_dead_letter(
    spark: Any, db: Database, table: str, tmp_path: Path
) -> None:
    """Another session keeps the table from being written (it may still be read) until the
    load's first attempt has timed out on it; the retry writes every row, once."""
    create_people(db, table, "(1, 'ada', NULL)")
    other = db.server.connect()
    with other.cursor() as cur:
        if db.kind == "PostgreSQL":
            cur.execute(f"LOCK TABLE {table} IN SHARE MODE")
        else:
            cur.execute(f"LOCK TABLES {table} READ")

    def release() -> None:
        if db.kind == "PostgreSQL":
            other.rollback()
        else:
            with other.cursor() as cur:
                cur.execute("UNLOCK TABLES")

    source = from_rows(spark, tmp_path / "in", [(2, "grace"), (3, "linus")], PEOPLE_SCHEMA)
    sink = load(db, table, writeMode="append")
    sink["connection"]["options"] = LOCK_TIMEOUT[db.kind]
    queue = tmp_path / "dead-letters"
    spec = {
        "extract": source,
        "load": sink,
        "errorHandling": {**RETRIED, "deadLetter": dead_letter_queue(queue)},
    }
    try:
        with on_retry(release) as retries:
            metrics = run(spark, db, spec)
    finally:
        other.close()
    assert len(retries.retries) == 1 and "lock" in retries.retries[0].lower(), retries.retries
    assert (metrics.retry_count, metrics.records_loaded, metrics.records_failed) == (1, 2, 0)
    assert db.rows(f"SELECT id, name FROM {table} ORDER BY id") == [(1, "ada"), (2, "grace"), (3, "linus")]
    assert not queue.exists()
    assert db.tables_like("etl_stage_") == []
