"""Benchmark: the database sinks' upsert against the database's own bulk load, in one process.

For each database (PostgreSQL, and MariaDB for MySQL), per round:
  baseline   the rows from a CSV file prepared beforehand, loaded by the database's bulk loader
             into an empty table with the same definition: COPY ... FROM STDIN (psycopg2),
             LOAD DATA LOCAL INFILE (PyMySQL); one connection, no Spark
  upsert     the same rows through the job's sink (writeMode upsert, primaryKey id) into a table
             already holding every other key with older values: half updates, half inserts;
             its phases (as the sink logs them) are reported too: count (the pass that renders,
             sorts and counts the rows), stage (the bulk load into staging), merge (the merge
             transaction, commit included)
  --write-mode append: the sink appends the rows to an empty table instead (its staging load
             and INSERT ... SELECT in one transaction, against COPY into an empty table)
The rows come from a DataFrame cached beforehand, so the sink alone is timed. Medians of the
rounds, rows/s and the ratio upsert/baseline (goal: at least 0.5) are printed with the machine,
its load average, and the CPU seconds the database server spent on each side: a figure that
other work on the machine hardly moves, where wall times on a shared machine swing.

  .venv/bin/python bench/db_upsert_vs_bulk.py --rows 1000000 --rounds 3 [--write-mode append]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from measure import cpu_seconds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TABLE = "bench_upsert"
GOAL = 0.5
COLUMNS = "id, user_id, amount, status, updated_at"
#: Equal for two tables holding the same rows: the upsert's target must end as the COPY's does.
SUMMARY = "SELECT COUNT(*), SUM(amount), MIN(user_id), MAX(updated_at) FROM {table}"


def table_ddl(kind: str, name: str) -> str:
    if kind == "PostgreSQL":
        # No autovacuum: a worker started by one round's writes would land its CPU seconds in a
        # later round's measure (it counts the server's ended processes); reset() vacuums.
        return (
            f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, user_id TEXT, amount NUMERIC(12,2), "
            "status TEXT, updated_at TIMESTAMP WITH TIME ZONE) WITH (autovacuum_enabled = false)"
        )
    return (
        f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, user_id LONGTEXT, amount DECIMAL(12,2), "
        "status LONGTEXT, updated_at DATETIME(6))"
    )


def make_rows(spark: Any, rows: int, version: int) -> Any:
    """Deterministic rows; `version` changes every value but the key."""
    from pyspark.sql import functions as F

    statuses = F.array(*[F.lit(s) for s in ("new", "paid", "shipped", "returned, refunded")])
    return spark.range(1, rows + 1, numPartitions=8).select(
        F.col("id"),
        F.format_string("u%06d", (F.col("id") * 7919 + version) % 100000).alias("user_id"),
        (((F.col("id") * 104729 + version) % 1000000) / 100).cast("decimal(12,2)").alias("amount"),
        F.element_at(statuses, ((F.col("id") + version) % 4 + 1).cast("int")).alias("status"),
        F.timestamp_seconds(F.lit(1793491200 + version * 86400) + F.col("id") % 86400).alias("updated_at"),
    )


def write_csv(frame: Any, path: Path, kind: str) -> None:
    """One CSV file of the rows, as each loader reads it (MySQL takes no UTC offset)."""
    from pyspark.sql import functions as F

    out = path.with_suffix(".parts")
    stamp = "yyyy-MM-dd HH:mm:ss.SSSSSSXXX" if kind == "PostgreSQL" else "yyyy-MM-dd HH:mm:ss.SSSSSS"
    frame.select(
        "id", "user_id", "amount", "status", F.date_format("updated_at", stamp).alias("updated_at")
    ).coalesce(1).write.mode("overwrite").option("escape", '"').csv(str(out))
    part = next(out.glob("part-*.csv"))
    shutil.move(str(part), path)
    shutil.rmtree(out)


# --- the two databases ---------------------------------------------------------------------


class Postgres:
    kind = "PostgreSQL"

    def __init__(self, server: Any) -> None:
        self.server = server

    def execute(self, *statements: str) -> None:
        conn = self.server.connect()
        conn.autocommit = True  # VACUUM cannot run in a transaction
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.close()

    def summary(self, table: str) -> tuple[Any, ...]:
        with self.server.connect() as conn, conn.cursor() as cur:
            cur.execute(SUMMARY.format(table=table))
            return tuple(cur.fetchone())

    def bulk_load(self, table: str, csv_file: Path) -> None:
        with self.server.connect() as conn, conn.cursor() as cur, csv_file.open("rb") as data:
            cur.copy_expert(f"COPY {table} ({COLUMNS}) FROM STDIN WITH (FORMAT csv)", data, size=1 << 20)

    def server_pid(self) -> int:
        with self.server.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW data_directory")
            data_directory = Path(cur.fetchone()[0])
        return int((data_directory / "postmaster.pid").read_text().split()[0])


class MariaDB:
    kind = "MySQL"

    def __init__(self, server: Any) -> None:
        self.server = server

    def _connect(self) -> Any:
        import pymysql

        return pymysql.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            password=self.server.password,
            database=self.server.database,
            local_infile=True,
            autocommit=True,
        )

    def execute(self, *statements: str) -> None:
        conn = self._connect()
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.close()

    def summary(self, table: str) -> tuple[Any, ...]:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(SUMMARY.format(table=table))
            found = tuple(cur.fetchone())
        conn.close()
        return found

    def bulk_load(self, table: str, csv_file: Path) -> None:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE {table} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
                f"LINES TERMINATED BY '\\n' ({COLUMNS})",
                (str(csv_file),),
            )
        conn.close()

    def server_pid(self) -> int:
        conn = self._connect()
        with conn.cursor() as cur:
            cur.execute("SELECT @@pid_file")
            pid_file = Path(cur.fetchone()[0])
        conn.close()
        return int(pid_file.read_text().split()[0])


# --- the runs --------------------------------------------------------------------------------


def upsert_through_sink(spark: Any, db: Any, frame: Any, run: int, write_mode: str = "upsert") -> None:
    from etl_job.connectors.jdbc.connector import JdbcSinkConnector
    from etl_job.contract import JdbcSink, SecretKeyRef
    from etl_job.contract.credentials import secret_env_name
    from etl_job.runtime.context import RunContext

    ref = SecretKeyRef(name="bench-db", key="password")
    server = db.server
    block = JdbcSink.model_validate(
        {
            "sinkType": db.kind,
            "connection": {
                "host": server.host,
                "port": server.port,
                "database": server.database,
                "user": server.user,
            },
            "credentialsRef": {"name": ref.name, "key": ref.key},
            "table": TABLE,
            "writeMode": write_mode,
            "primaryKey": ["id"],
        }
    )
    context = RunContext(
        pipeline="bench", spark=spark, env={secret_env_name(ref): server.password}, run_id=f"bench-{run}"
    )
    JdbcSinkConnector().write(frame, block, context)


class PhaseLog(logging.Handler):
    """Keeps the phase timings of each upsert the sink logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.upserts: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        phases = getattr(record, "upsert_seconds", None) or getattr(record, "write_seconds", None)
        if phases is not None:
            self.upserts.append(dict(phases))


def timed(action: Callable[[], object], server_pid: int) -> tuple[float, float]:
    """Wall seconds of the action, and the database server's CPU seconds during it."""
    cpu_before = cpu_seconds(server_pid, with_ended_children=True)
    started = time.perf_counter()
    action()
    wall = time.perf_counter() - started
    time.sleep(0.2)  # PostgreSQL's backends end just after their connections close
    return wall, cpu_seconds(server_pid, with_ended_children=True) - cpu_before


def bench_database(
    spark: Any,
    db: Any,
    rows: int,
    rounds: int,
    new_rows: Any,
    old_half: Any,
    folder: Path,
    write_mode: str = "upsert",
) -> dict[str, Any]:
    csv_file = folder / f"rows-{db.kind}.csv"
    old_file = folder / f"old-half-{db.kind}.csv"
    write_csv(new_rows, csv_file, db.kind)
    write_csv(old_half, old_file, db.kind)
    baseline_table = f"{TABLE}_copy"
    db.execute(f"DROP TABLE IF EXISTS {TABLE}", f"DROP TABLE IF EXISTS {baseline_table}")
    db.execute(table_ddl(db.kind, TABLE), table_ddl(db.kind, baseline_table))

    def baseline() -> None:
        db.bulk_load(baseline_table, csv_file)

    def upsert(run: int) -> None:
        upsert_through_sink(spark, db, new_rows, run, write_mode)

    def reset() -> None:  # untimed: the upsert's target holds the older half again
        db.execute(f"TRUNCATE TABLE {TABLE}", f"TRUNCATE TABLE {baseline_table}")
        if write_mode == "upsert":
            db.bulk_load(TABLE, old_file)
        if db.kind == "PostgreSQL":
            db.execute(f"VACUUM ANALYZE {TABLE}")

    reset()
    upsert(0)  # warm-up: Python workers, JIT, caches
    reset()
    baseline()
    server_pid = db.server_pid()
    phase_log = PhaseLog()
    sink_log = logging.getLogger("etl_job.jdbc")
    sink_log.addHandler(phase_log)
    sink_log.setLevel(logging.INFO)
    seconds: dict[str, list[float]] = {"baseline": [], "upsert": []}
    server_cpu: dict[str, list[float]] = {"baseline": [], "upsert": []}
    for run in range(1, rounds + 1):
        reset()
        runs: dict[str, Callable[[], object]] = {
            "baseline": baseline,
            "upsert": functools.partial(upsert, run),
        }
        # Alternate the order, so that neither side always meets the other's leftovers.
        for name in list(runs) if run % 2 else reversed(list(runs)):
            wall, cpu = timed(runs[name], server_pid)
            seconds[name].append(wall)
            server_cpu[name].append(cpu)
    sink_log.removeHandler(phase_log)
    phases = {
        phase: round(statistics.median(upsert[phase] for upsert in phase_log.upserts), 2)
        for phase in (phase_log.upserts[0] if phase_log.upserts else {})
    }
    upserted, copied = db.summary(TABLE), db.summary(baseline_table)
    assert upserted == copied and copied[0] == rows, f"{db.kind}: upsert left {upserted}, COPY {copied}"
    median = {name: statistics.median(values) for name, values in seconds.items()}
    cpu_median = {name: statistics.median(values) for name, values in server_cpu.items()}
    return {
        "seconds": {name: [round(v, 2) for v in values] for name, values in seconds.items()},
        "rows_per_second": {name: round(rows / value) for name, value in median.items()},
        "ratio_upsert_to_baseline": round(median["baseline"] / median["upsert"], 3),
        "server_cpu_seconds": {name: round(value, 2) for name, value in cpu_median.items()},
        "server_cpu_ratio": round(cpu_median["baseline"] / cpu_median["upsert"], 3),
        "upsert_phase_seconds": phases,
    }


def machine() -> dict[str, str]:
    cpu = "unknown"
    memory = "unknown"
    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cores": str(os.cpu_count()),
        "RAM": memory,
        "CPU": cpu,
        "Python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("PostgreSQL", "MySQL"), default=None)
    parser.add_argument("--write-mode", choices=("upsert", "append"), default="upsert")
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    from tests.infra.mariadb import start_mariadb
    from tests.infra.postgres import start_postgres
    from tests.infra.spark import connector_jars

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    folder = Path(tempfile.mkdtemp(prefix="etl-bench-db-"))
    spark = (
        SparkSession.builder.master(f"local[{os.cpu_count() or 2}]")
        .appName("bench-db")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.local.dir", str(folder))
        .config("spark.driver.extraClassPath", os.pathsep.join(str(jar) for jar in connector_jars()))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    from pyspark.sql import functions as F

    new_rows = make_rows(spark, args.rows, version=1).cache()
    old_half = make_rows(spark, args.rows, version=0).where(F.col("id") % 2 == 0).cache()
    new_rows.count()
    old_half.count()

    results: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    kinds = [args.only] if args.only else ["PostgreSQL", "MySQL"]
    for kind in kinds:
        server = start_postgres() if kind == "PostgreSQL" else start_mariadb()
        try:
            db = Postgres(server) if kind == "PostgreSQL" else MariaDB(server)
            results[kind] = bench_database(
                spark, db, args.rows, args.rounds, new_rows, old_half, folder, args.write_mode
            )
        finally:
            server.process.stop()
    spark.stop()
    shutil.rmtree(folder, ignore_errors=True)

    print(f"{'':11} {'rows/s':-^38}   {'database server CPU seconds':-^30}")
    print(
        f"{'database':<11} {'baseline':>12} {'upsert':>10} {'ratio':>6} {'goal':>6}   "
        f"{'baseline':>10} {'upsert':>10} {'ratio':>6}"
    )
    for kind, result in results.items():
        rates, cpu = result["rows_per_second"], result["server_cpu_seconds"]
        print(
            f"{kind:<11} {rates['baseline']:>12,} {rates['upsert']:>10,} "
            f"{result['ratio_upsert_to_baseline']:>6.2f} {GOAL:>6}   "
            f"{cpu['baseline']:>10.2f} {cpu['upsert']:>10.2f} {result['server_cpu_ratio']:>6.2f}"
        )
    facts = {
        **machine(),
        "load average (1 min) before, after": f"{load_before:.1f}, {os.getloadavg()[0]:.1f}",
    }
    report = {
        "rows": args.rows,
        "rounds": args.rounds,
        "writeMode": args.write_mode,
        "machine": facts,
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
