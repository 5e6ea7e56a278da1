"""Database sinks broken mid-load: PostgreSQL killed while its merge runs, a MariaDB connection
killed while the staging table is loading. The run ends retried and complete, or failed with exit
code 4 and the table as it was; never a partial or doubled table.

"Mid-operation" is made certain with locks the test holds from a second session: the statement
to break waits on the lock, the test sees it waiting (pg_stat_activity, the processlist), and
only then breaks the server or the connection."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from etl_job.contract import SecretKeyRef
from etl_job.contract.credentials import secret_env_name
from tests.faults.runs import EtlRun, manifest, retry, wait_until, write_csv
from tests.infra.mariadb import MySQLServer
from tests.infra.postgres import PostgresServer

pytestmark = pytest.mark.integration

PASSWORD = SecretKeyRef(name="db", key="password")
#: The table before the run: ids 1..100, amount 0.
BEFORE = [(i, f"old{i}", 0) for i in range(1, 101)]
#: The input: ids 51..2050, amount = id; half of the old rows are updated, 2,000 - 50 added.
INPUT = [(i, f"new{i}", i) for i in range(51, 2051)]
AFTER = sorted({**{row[0]: row for row in BEFORE}, **{row[0]: row for row in INPUT}}.values())


def _sink(kind: str, server: PostgresServer | MySQLServer) -> dict[str, Any]:
    return {
        "sinkType": kind,
        "table": "people",
        "writeMode": "upsert",
        "primaryKey": ["id"],
        "connection": {"host": server.host, "port": server.port, "database": server.database,
                       "user": server.user},
        "credentialsRef": {"name": PASSWORD.name, "key": PASSWORD.key},
    }  # fmt: skip


def _rows(server: PostgresServer | MySQLServer, sql: str) -> list[tuple[Any, ...]]:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def _fill(server: PostgresServer | MySQLServer) -> None:
    connection = server.connect()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(20), amount INT)")
        cursor.executemany("INSERT INTO people VALUES (%s, %s, %s)", BEFORE)
    connection.commit()
    connection.close()


def _run(
    tmp_path: Path, kind: str, server: PostgresServer | MySQLServer, attempts: int, delay: float
) -> EtlRun:
    source = write_csv(tmp_path / "in", INPUT, "id,name,amount", files=4)
    document = manifest(
        "fault-upsert",
        {"extract": source, "load": _sink(kind, server),
         "errorHandling": {"retry": retry(attempts, delay)}},
    )  # fmt: skip
    return EtlRun(tmp_path / "run", document, {secret_env_name(PASSWORD): server.password})


def _staging_tables(server: PostgresServer | MySQLServer) -> list[tuple[Any, ...]]:
    return _rows(
        server, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'etl_stage%'"
    )


# --- PostgreSQL killed in the middle of the merge ----------------------------------------------


def _postgres_merge_waiting(postgres: PostgresServer, blocker_pid: int) -> Any:
    """True once the merge into people waits on the test's lock, with every row staged."""

    def waiting() -> bool:
        found = _rows(
            postgres,
            "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            f"AND pid <> {blocker_pid} AND query ILIKE '%people%'",
        )
        return bool(found)

    return waiting


def _hold_share_lock(postgres: PostgresServer) -> tuple[Any, int]:
    """A session holding SHARE on people: reads and staging go on, the merge's writes wait."""
    blocker = postgres.connect()
    with blocker.cursor() as cursor:
        cursor.execute("LOCK TABLE people IN SHARE MODE")
        cursor.execute("SELECT pg_backend_pid()")
        pid = int(cursor.fetchone()[0])
    return blocker, pid


def _kill_postgres(postgres: PostgresServer) -> None:
    """SIGKILL to the postmaster and every backend: a crash, the merge's transaction lost."""
    assert postgres.process.pid is not None
    os.killpg(postgres.process.pid, signal.SIGKILL)
    wait_until("PostgreSQL gone", lambda: not postgres.process.running, timeout=30)


def _restart(postgres: PostgresServer) -> None:
    postgres.process.start()
    postgres.process.wait_until(
        lambda: postgres.connect().close() is None, what="accepting connections", timeout=60
    )


def test_postgres_killed_during_the_merge_and_back_the_retry_writes_the_whole_upsert_once(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    postgres = own_postgres
    _fill(postgres)
    blocker, blocker_pid = _hold_share_lock(postgres)
    run = _run(tmp_path, "PostgreSQL", postgres, attempts=6, delay=3)
    run.wait_for("the merge waiting on the lock", _postgres_merge_waiting(postgres, blocker_pid))
    staged = _staging_tables(postgres)
    assert staged, "the merge runs after staging, so a staging table is there"

    _kill_postgres(postgres)
    _restart(postgres)

    assert run.finish() == 0, run.logged()[-4000:]
    metrics = run.metrics()
    assert metrics["recordsLoaded"] == len(INPUT) and metrics["retryCount"] >= 1, metrics
    assert _rows(postgres, "SELECT id, name, amount FROM people ORDER BY id") == AFTER
    # The first attempt's staging tables, which it could not drop, the retry dropped.
    assert _staging_tables(postgres) == []
    assert "left by an earlier attempt" in run.logged()
    blocker.close()


def test_postgres_killed_during_the_merge_and_still_down_fails_with_exit_4_and_the_table_as_it_was(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    postgres = own_postgres
    _fill(postgres)
    blocker, blocker_pid = _hold_share_lock(postgres)
    run = _run(tmp_path, "PostgreSQL", postgres, attempts=2, delay=1)
    run.wait_for("the merge waiting on the lock", _postgres_merge_waiting(postgres, blocker_pid))

    _kill_postgres(postgres)

    assert run.finish() == 4, run.logged()[-4000:]
    assert "SinkRejected" in run.logged()
    assert run.metrics()["errors"][0].startswith("load: cannot write table people of PostgreSQL")
    _restart(postgres)
    assert _rows(postgres, "SELECT id, name, amount FROM people ORDER BY id") == BEFORE
    # With the database down to the end, the staging tables outlive the run, and it says so.
    # (the first attempt's staging and parts tables; the second could not connect at all).
    assert len(_staging_tables(postgres)) == 2
    assert "could not drop staging table" in run.logged()
    blocker.close()
