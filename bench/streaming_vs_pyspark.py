"""Benchmark: a streaming run of the job against hand-written PySpark Structured Streaming doing
the same, in one process, on a local Kafka broker and PostgreSQL server from the test harness.

Work: Kafka JSON click events -> 1-minute event-time windows per user (sum of amount, count,
latest event time; 10-minute watermark) -> upserted into a PostgreSQL table keyed by
(window_start, user_id), in update mode.
  baseline    hand-written PySpark: readStream kafka, from_json with an explicit schema,
              withWatermark, groupBy(window, user_id), foreachBatch writing the batch to a
              staging table over JDBC and merging it with INSERT ... ON CONFLICT
  job         the same pipeline as a manifest, through etl_job.streaming.StreamingRun (what
              `etl run` runs for a streaming pipeline): the events decoded and checked against
              their Avro schema on the stream, each micro-batch upserted through the job's
              PostgreSQL sink (bulk COPY into staging, one merge)

Two phases:
  throughput  N messages put on a topic first, then drained with trigger availableNow (at most
              --batch-messages a micro-batch); rounds in alternating order after one warm-up run
              of each on a small topic. Events/s per wall second and per CPU second (the Spark
              JVM, the Python workers it forks and the driver's Python, which runs foreachBatch:
              steadier than wall time on a shared machine), the job/baseline ratio (goal >= 0.9,
              and >= 200,000 events/s on 2 cores), PostgreSQL's CPU seconds, and Spark's own
              milliseconds per phase of the micro-batches.
  latency     a producer process paces itself to --rate events/s for --latency-seconds (after
              --latency-warmup seconds not counted), each event carrying its produce time as
              its event time; processingTime trigger 1 second. A trigger on the sink table logs
              every row write with the time it was written; per micro-batch (one merge
              transaction) the newest event is its largest event time and the oldest is taken
              as the previous batch's largest (the producer writes in time order). Reported:
              p50/p95 over batches of the oldest and the newest event's event-to-sink latency,
              and per event assuming events spread evenly between the two (goal p95 < 2 s).

Every run's table is checked: its events add up to the messages read, and the job's final table
equals the baseline's.

  .venv/bin/python bench/streaming_vs_pyspark.py --messages 5000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import cpu_seconds, machine, tree_cpu_seconds

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
USERS = 1000
#: Event times of the throughput topic: one event a millisecond from here (in order per
#: partition, so none is late for the watermark), 60,000 events a window.
BASE_MS = 1_793_491_200_000
WATERMARK = "10 minutes"
WINDOW = "1 minute"
SCHEMA_NAME = "click-event"
EVENT_SCHEMA = {
    "type": "record",
    "name": "ClickEvent",
    "fields": [
        {"name": "event_id", "type": "long"},
        {"name": "user_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
PRIMARY_KEY = ("window_start", "user_id")
COLUMNS = ("window_start", "window_end", "user_id", "total", "events", "last_event")
GOAL_RATIO = 0.9
GOAL_EVENTS_PER_SECOND = 200_000
GOAL_P95_SECONDS = 2.0
#: How long the latency phase waits, after the producer stops, for the sink to hold every event.
CATCH_UP_SECONDS = 600


# --- events --------------------------------------------------------------------------------------


def event_json(i: int, event_ms: int) -> bytes:
    return (
        f'{{"event_id":{i},"user_id":"u{(i * 7919) % USERS:04d}",'
        f'"amount":{(i * 104729) % 10000 / 100:.2f},"event_time":{event_ms}}}'
    ).encode()


def amount_cents(i: int) -> int:
    return (i * 104729) % 10000


def producer_config(bootstrap_servers: str, linger_ms: int) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "linger.ms": linger_ms,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000,
    }


def fill_topic(bootstrap_servers: str, topic: str, count: int) -> float:
    """`count` events as fast as librdkafka takes them; returns the seconds taken."""
    from confluent_kafka import Producer

    producer = Producer(producer_config(bootstrap_servers, 50))
    started = time.perf_counter()
    for i in range(count):
        value = event_json(i, BASE_MS + i)
        while True:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(180) != 0:
        raise RuntimeError(f"messages left unsent to {topic}")
    return time.perf_counter() - started


def produce_steadily(bootstrap_servers: str, topic: str, rate: int, seconds: float, report: Any) -> None:
    """In its own process (the driver's Python would slow it, and it the driver): `rate`
    events a second for `seconds`, each stamped with the wall-clock millisecond it is handed
    to the producer. Puts on `report` what was sent and when."""
    from confluent_kafka import Producer

    producer = Producer(producer_config(bootstrap_servers, 5))
    sent, behind = 0, 0
    started = time.time()
    deadline = started + seconds
    first_ms = int(started * 1000)
    last_ms = first_ms
    while (now := time.time()) < deadline:
        due = int((now - started) * rate)
        behind = max(behind, due - sent)
        while sent < due:
            last_ms = int(time.time() * 1000)
            try:
                producer.produce(topic, event_json(sent, last_ms), partition=sent % PARTITIONS)
            except BufferError:
                producer.poll(0.01)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    unsent = producer.flush(60)
    report.put(
        {
            "sent": sent,
            "unsent": unsent,
            "first_ms": first_ms,
            "last_ms": last_ms,
            "events_per_second": round(sent / (time.time() - started)),
            "most_events_behind_schedule": behind,
        }
    )


# --- the sink ------------------------------------------------------------------------------------


@dataclass
class Database:
    """The harness's PostgreSQL: the tables each run writes, and what is checked in them."""

    server: Any

    def cpu(self) -> float:
        """CPU seconds of the server and its backends, ended ones too."""
        return tree_cpu_seconds(self.server.process.pid)

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        connection = self.server.connect()
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                yield cursor
        finally:
            connection.close()

    def create(self, table: str, log_writes: bool = False) -> None:
        """The sink table, its staging twin for the baseline, and optionally a log of every row
        written to it, stamped with the writing transaction and the time."""
        with self.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE {table} (window_start timestamptz NOT NULL, window_end timestamptz, "
                "user_id text NOT NULL, total double precision, events bigint, last_event timestamptz, "
                f"PRIMARY KEY ({', '.join(PRIMARY_KEY)}))"
            )
            cursor.execute(f"CREATE UNLOGGED TABLE {table}_staging (LIKE {table})")
            if log_writes:
                cursor.execute(
                    f"CREATE UNLOGGED TABLE {table}_writes (tx bigint, written_at timestamptz, "
                    "window_start timestamptz, user_id text, events bigint, last_event timestamptz)"
                )
                # AFTER ROW triggers fire at the end of the statement: just before the commit.
                cursor.execute(
                    f"CREATE FUNCTION {table}_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"INSERT INTO {table}_writes VALUES (txid_current(), clock_timestamp(), "
                    "NEW.window_start, NEW.user_id, NEW.events, NEW.last_event); RETURN NULL; END $$"
                )
                cursor.execute(
                    f"CREATE TRIGGER {table}_note AFTER INSERT OR UPDATE ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {table}_note()"
                )

    def drop(self, table: str) -> None:
        with self.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}, {table}_staging, {table}_writes")
            cursor.execute(f"DROP FUNCTION IF EXISTS {table}_note()")

    def totals(self, table: str) -> dict[str, int]:
        with self.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), coalesce(sum(events), 0), coalesce(round(sum(total) * 100), 0) "
                f"FROM {table}"
            )
            rows, events, cents = cursor.fetchone()
        return {"rows": int(rows), "events": int(events), "amount_cents": int(cents)}

    def differences(self, left: str, right: str) -> int:
        """Rows of either table that the other does not hold alike."""
        columns = "window_start, window_end, user_id, round(total::numeric, 2), events, last_event"
        with self.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM ((SELECT {columns} FROM {left} EXCEPT SELECT {columns} FROM {right}) "
                f"UNION ALL (SELECT {columns} FROM {right} EXCEPT SELECT {columns} FROM {left})) AS d"
            )
            return int(cursor.fetchone()[0])

    def newest_event_ms(self, table: str) -> int:
        with self.cursor() as cursor:
            cursor.execute(f"SELECT coalesce(extract(epoch FROM max(last_event)) * 1000, 0) FROM {table}")
            return int(cursor.fetchone()[0])

    def batches(self, table: str) -> list[tuple[float, float, int]]:
        """Per writing transaction, in order: (last write ms, newest event ms, events added)."""
        with self.cursor() as cursor:
            cursor.execute(
                "WITH w AS (SELECT tx, written_at, last_event, events - coalesce(lag(events) OVER "
                f"(PARTITION BY window_start, user_id ORDER BY written_at), 0) AS added FROM {table}_writes) "
                "SELECT extract(epoch FROM max(written_at)) * 1000, "
                "extract(epoch FROM max(last_event)) * 1000, sum(added) FROM w GROUP BY tx ORDER BY 1"
            )
            return [(float(w), float(e), int(n)) for w, e, n in cursor.fetchall()]


# --- the two implementations ----------------------------------------------------------------------


def baseline_query(
    spark: Any,
    bootstrap_servers: str,
    topic: str,
    database: Database,
    table: str,
    checkpoint: Path,
    trigger: dict[str, Any],
    batch_messages: int | None,
) -> Any:
    """Hand-written Structured Streaming of the same aggregate into the same table; started."""
    import psycopg2
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("event_id", LongType()),
            StructField("user_id", StringType()),
            StructField("amount", DoubleType()),
            StructField("event_time", LongType()),
        ]
    )
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
    )
    if batch_messages:
        reader = reader.option("maxOffsetsPerTrigger", str(batch_messages))
    windows = (
        reader.load()
        .select(F.from_json(F.col("value").cast("string"), schema).alias("event"))
        .select("event.*")
        .withColumn("event_time", F.timestamp_millis("event_time"))
        .withWatermark("event_time", WATERMARK)
        .groupBy(F.window("event_time", WINDOW), "user_id")
        .agg(
            F.sum("amount").alias("total"),
            F.count(F.lit(1)).alias("events"),
            F.max("event_time").alias("last_event"),
        )
        .select(
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            "user_id",
            "total",
            "events",
            "last_event",
        )
    )
    server = database.server
    properties = {"user": server.user, "password": server.password, "driver": "org.postgresql.Driver"}
    url = server.jdbc_url + "?reWriteBatchedInserts=true"
    names = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c not in PRIMARY_KEY)
    merge = (
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_staging "
        f"ON CONFLICT ({', '.join(PRIMARY_KEY)}) DO UPDATE SET {updates}"
    )

    def upsert(batch: Any, batch_id: int) -> None:
        batch.write.option("truncate", "true").jdbc(url, f"{table}_staging", "overwrite", properties)
        connection = psycopg2.connect(
            host=server.host,
            port=server.port,
            dbname=server.database,
            user=server.user,
            password=server.password,
        )
        try:
            with connection, connection.cursor() as cursor:
                cursor.execute(merge)
        finally:
            connection.close()

    return (
        windows.writeStream.foreachBatch(upsert)
        .outputMode("update")
        .option("checkpointLocation", str(checkpoint))
        .queryName(f"baseline_{table}")
        .trigger(**trigger)
        .start()
    )


PASSWORD = {"name": "bench-postgres", "key": "password"}


def job_run(
    spark: Any,
    bootstrap_servers: str,
    topic: str,
    database: Database,
    table: str,
    checkpoint: Path,
    trigger: dict[str, Any],
    batch_messages: int | None,
    schema_dir: Path,
) -> Any:
    """The same pipeline as a manifest: a StreamingRun, not yet running."""
    from etl_job.contract import SecretKeyRef, secret_env_name
    from etl_job.contract.manifest import parse_manifest
    from etl_job.quality.schemas import SchemaRegistry
    from etl_job.runtime.context import RunContext
    from etl_job.streaming import StreamingRun

    server = database.server
    streaming: dict[str, Any] = {"checkpointLocation": str(checkpoint), "trigger": trigger}
    if batch_messages:
        streaming["maxOffsetsPerTrigger"] = batch_messages
    name = table.replace("_", "-")
    pipeline = parse_manifest(
        {
            "metadata": {"name": name},
            "spec": {
                "mode": "streaming",
                "extract": {
                    "sourceType": "Kafka",
                    "bootstrapServers": bootstrap_servers,
                    "topic": topic,
                    "schemaName": SCHEMA_NAME,
                },
                "transforms": [
                    {
                        "transformType": "Window",
                        "timeColumn": "event_time",
                        "windowDuration": WINDOW,
                        "watermark": WATERMARK,
                        "groupBy": ["user_id"],
                        "aggregations": [
                            {"column": "amount", "function": "sum", "as": "total"},
                            {"column": "*", "function": "count", "as": "events"},
                            {"column": "event_time", "function": "max", "as": "last_event"},
                        ],
                    }
                ],
                "load": {
                    "sinkType": "PostgreSQL",
                    "table": table,
                    "connection": {
                        "host": server.host,
                        "port": server.port,
                        "database": server.database,
                        "user": server.user,
                    },
                    "credentialsRef": PASSWORD,
                    "writeMode": "upsert",
                    "primaryKey": list(PRIMARY_KEY),
                },
                "streaming": streaming,
            },
        }
    )
    schemas = SchemaRegistry([schema_dir])
    env = {secret_env_name(SecretKeyRef(**PASSWORD)): server.password}
    context = RunContext(
        pipeline=name, spark=spark, env=env, schemas=schemas, task_slots=spark.sparkContext.defaultParallelism
    )
    return StreamingRun(pipeline, context, schemas)


# --- progress of every query, from Spark's listener ----------------------------------------------


def progress_listener(spark: Any) -> dict[str, list[dict[str, Any]]]:
    """Each query's micro-batches as Spark reports them (rows, durations by phase), by name."""
    from pyspark.sql.streaming.listener import StreamingQueryListener

    by_query: dict[str, list[dict[str, Any]]] = defaultdict(list)

    class Progress(StreamingQueryListener):
        def onQueryStarted(self, event: Any) -> None:
            return

        def onQueryProgress(self, event: Any) -> None:
            progress = event.progress
            if progress.numInputRows:
                by_query[progress.name].append(
                    {"rows": int(progress.numInputRows), "ms": dict(progress.durationMs or {})}
                )

        def onQueryIdle(self, event: Any) -> None:
            return

        def onQueryTerminated(self, event: Any) -> None:
            return

    spark.streams.addListener(Progress())
    return by_query


def phase_summary(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Milliseconds of a query's batches by phase: the sum over batches, and the median."""
    phases = sorted({phase for batch in batches for phase in batch["ms"]})
    rows = sum(batch["rows"] for batch in batches)
    busy = sum(int(batch["ms"].get("triggerExecution", 0)) for batch in batches) / 1000
    return {
        "batches": len(batches),
        "rows": rows,
        # What the query can sustain: its rows over the time its batches took.
        "rows_per_second_of_batch_time": round(rows / busy) if busy else None,
        "ms_total": {p: sum(int(b["ms"].get(p, 0)) for b in batches) for p in phases},
        "ms_median": {p: round(statistics.median(int(b["ms"].get(p, 0)) for b in batches)) for p in phases}
        if batches
        else {},
    }


# --- the phases ------------------------------------------------------------------------------------


@dataclass
class Bench:
    spark: Any
    broker: Any
    database: Database
    scratch: Path
    schema_dir: Path
    progress: dict[str, list[dict[str, Any]]]
    batch_messages: int

    def cpu(self) -> float:
        """CPU seconds of the Spark JVM with the Python workers it forks, and of this process,
        the driver's Python, which runs each foreachBatch: both sides do work in all three."""
        jvm = int(self.spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        return tree_cpu_seconds(jvm) + cpu_seconds(os.getpid())

    def throughput_run(self, kind: str, topic: str, table: str) -> dict[str, Any]:
        """One drain of `topic` into a fresh `table`: seconds, JVM CPU seconds, Spark's phases."""
        self.database.create(table)
        checkpoint = self.scratch / f"checkpoint-{table}"
        cpu, database_cpu = self.cpu, self.database.cpu
        trigger = {"availableNow": True}
        servers = self.broker.bootstrap_servers
        started, cpu_before, database_before = time.perf_counter(), cpu(), database_cpu()
        if kind == "job":
            run = job_run(
                self.spark, servers, topic, self.database, table, checkpoint, trigger,
                self.batch_messages, self.schema_dir,
            )  # fmt: skip
            metrics = run.run().model_dump(mode="json", exclude_none=True)
            name = f"etl_{table}"
        else:
            query = baseline_query(
                self.spark, servers, topic, self.database, table, checkpoint,
                {"availableNow": True}, self.batch_messages,
            )  # fmt: skip
            query.awaitTermination()
            metrics = {}
            name = f"baseline_{table}"
        seconds, used = time.perf_counter() - started, cpu() - cpu_before
        database_used = database_cpu() - database_before
        time.sleep(0.5)  # the listener hears of the last batch a moment later
        shutil.rmtree(checkpoint, ignore_errors=True)
        return {
            "seconds": seconds,
            "cpu_seconds": used,
            "database_cpu_seconds": database_used,
            "totals": self.database.totals(table),
            "spark": phase_summary(self.progress.pop(name, [])),
            "job_metrics": metrics,
        }

    def latency_run(self, kind: str, rate: int, warmup: float, seconds: float) -> dict[str, Any]:
        """The query started first on an empty topic, then a steady stream of events for
        warmup + seconds; latencies of the batches after the warm-up."""
        topic, table = f"bench-latency-{kind}", f"latency_{kind}"
        self.broker.create_topic(topic, PARTITIONS)
        self.database.create(table, log_writes=True)
        checkpoint = self.scratch / f"checkpoint-{table}"
        trigger = {"processingTime": "1 second"}
        servers = self.broker.bootstrap_servers
        stop: Callable[[], None]
        if kind == "job":
            run = job_run(
                self.spark, servers, topic, self.database, table, checkpoint,
                trigger, None, self.schema_dir,
            )  # fmt: skip
            runner = threading.Thread(target=run.run, name="job-stream", daemon=True)
            runner.start()
            deadline = time.monotonic() + 120
            while not run.progress.active and time.monotonic() < deadline:
                time.sleep(0.1)

            def stop() -> None:
                run.stop.set()
                runner.join(300)

            name = f"etl_{table}"
        else:
            query = baseline_query(
                self.spark, servers, topic, self.database, table, checkpoint, trigger, None
            )
            stop = query.stop
            name = f"baseline_{table}"
        time.sleep(3)  # a first, idle trigger: the query is planned and polling

        report: Any = multiprocessing.get_context("spawn").Queue()
        producer = multiprocessing.get_context("spawn").Process(
            target=produce_steadily, args=(servers, topic, rate, warmup + seconds, report), daemon=True
        )
        producer.start()
        produced = report.get(timeout=warmup + seconds + 180)
        producer.join(30)
        # Caught up when the newest event produced is in the table; a query that cannot keep up
        # is given a while, then stopped: its latencies say so.
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while not (caught_up := self.database.newest_event_ms(table) >= produced["last_ms"]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        stop()
        time.sleep(0.5)
        totals = self.database.totals(table)
        batches = self.database.batches(table)
        shutil.rmtree(checkpoint, ignore_errors=True)
        measured_from = produced["first_ms"] + warmup * 1000
        return {
            "produced": produced,
            "totals": totals,
            "caught_up": caught_up,
            "complete": totals["events"] == produced["sent"],
            **latencies(batches, measured_from, produced["last_ms"]),
            "spark": phase_summary(self.progress.pop(name, [])),
        }


def latencies(batches: list[tuple[float, float, int]], start_ms: float, end_ms: float) -> dict[str, Any]:
    """p50/p95 over the batches whose events were all produced in [start_ms, end_ms]: of the
    oldest event's and the newest event's latency, and per event, taking each batch's events
    as evenly spread between the previous batch's newest event and its own."""
    oldest, newest, per_event = [], [], []
    intervals = []
    for (previous_written, previous_newest, _), (written, newest_ms, added) in itertools.pairwise(batches):
        intervals.append(written - previous_written)
        if previous_newest < start_ms or newest_ms > end_ms or added == 0:
            continue
        oldest.append((written - previous_newest) / 1000)
        newest.append((written - newest_ms) / 1000)
        samples = max(1, added // 100)  # one a hundred events
        span = newest_ms - previous_newest
        per_event += [(written - previous_newest - span * (j + 0.5) / samples) / 1000 for j in range(samples)]

    def p(values: list[float], q: int) -> float | None:
        if len(values) < 2:
            return None
        return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3)

    return {
        "batches_measured": len(oldest),
        "latency_seconds": {
            "per_event": {"p50": p(per_event, 50), "p95": p(per_event, 95)},
            "oldest_event_of_batch": {
                "p50": p(oldest, 50),
                "p95": p(oldest, 95),
                "max": max(oldest, default=None),
            },
            "newest_event_of_batch": {"p50": p(newest, 50), "p95": p(newest, 95)},
        },
        "seconds_between_batch_writes_median": round(statistics.median(intervals) / 1000, 3)
        if intervals
        else None,
    }


# --- main -----------------------------------------------------------------------------------------


def memory_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5_000_000, help="messages of the throughput phase")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs of each, order alternating")
    parser.add_argument(
        "--batch-messages", type=int, default=500_000, help="maxOffsetsPerTrigger (throughput)"
    )
    parser.add_argument("--rate", type=int, default=50_000, help="events/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=60)
    parser.add_argument("--latency-warmup", type=float, default=10)
    parser.add_argument("--shuffle-partitions", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))  # the test harness starts the servers and finds the connector jars
    from etl_job.contract import SparkSettings
    from etl_job.runtime.session import build_session
    from tests.infra.kafka import start_kafka
    from tests.infra.postgres import start_postgres
    from tests.infra.spark import connector_jars, functions_jar

    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    with ExitStack() as cleanup:
        scratch = Path(tempfile.mkdtemp(prefix="etl-bench-streaming-"))
        cleanup.callback(shutil.rmtree, scratch, ignore_errors=True)
        schema_dir = scratch / "schemas"
        schema_dir.mkdir()
        (schema_dir / f"{SCHEMA_NAME}.avsc").write_text(json.dumps(EVENT_SCHEMA))
        # Stopped, then their folders removed (callbacks run last first): the broker's log holds
        # every message, gigabytes at bench sizes.
        broker = start_kafka()
        cleanup.callback(shutil.rmtree, broker.process.log_path.parent, ignore_errors=True)
        cleanup.callback(broker.process.stop)
        postgres = start_postgres()
        cleanup.callback(shutil.rmtree, postgres.process.log_path.parent, ignore_errors=True)
        cleanup.callback(postgres.process.stop)
        database = Database(postgres)
        warm_messages = min(args.messages, 200_000)
        broker.create_topic("bench-warmup", PARTITIONS)
        fill_topic(broker.bootstrap_servers, "bench-warmup", warm_messages)
        if not args.skip_throughput:
            broker.create_topic("bench-events", PARTITIONS)
            results["topic_fill_seconds"] = round(
                fill_topic(broker.bootstrap_servers, "bench-events", args.messages), 1
            )
        jars = [*connector_jars(), functions_jar()]
        os.environ["ETL_SPARK_JARS"] = os.pathsep.join(str(jar) for jar in jars)
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
        spark = build_session(
            "bench-streaming",
            "local[2]",
            SparkSettings(
                conf={
                    "spark.sql.shuffle.partitions": str(args.shuffle_partitions),
                    "spark.driver.memory": "3g",
                    "spark.driver.host": "127.0.0.1",
                    "spark.driver.bindAddress": "127.0.0.1",
                    "spark.local.dir": str(scratch),
                }
            ),
        )
        bench = Bench(
            spark, broker, database, scratch, schema_dir, progress_listener(spark), args.batch_messages
        )
        # Warm-up: the JVM's JIT and the broker's page cache, for both.
        for kind in ("baseline", "job"):
            warm = bench.throughput_run(kind, "bench-warmup", f"warmup_{kind}")
            if warm["totals"]["events"] != warm_messages:
                raise RuntimeError(f"{kind} warm-up loaded {warm['totals']} of {warm_messages} events")
            database.drop(f"warmup_{kind}")
        if not args.skip_throughput:
            results["throughput"] = throughput(bench, args.messages, args.rounds)
        if not args.skip_latency:
            results["latency"] = {
                kind: bench.latency_run(kind, args.rate, args.latency_warmup, args.latency_seconds)
                for kind in ("job", "baseline")
            }
        spark.stop()

    report = {
        "machine": machine(),
        "memory": memory_gib(),
        "master": "local[2]",
        "shuffle_partitions": args.shuffle_partitions,
        "sink": "PostgreSQL upsert (harness server, loopback)",
        "load_average_1m_5m_15m_before_after": [
            [round(v, 1) for v in load_before],
            [round(v, 1) for v in os.getloadavg()],
        ],
        **results,
    }
    print(markdown(report, args))
    print(json.dumps(report, indent=2))


def throughput(bench: Bench, messages: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "job": []}
    expected_cents = sum(amount_cents(i) for i in range(messages))
    for round_number in range(rounds):
        order = ["baseline", "job"] if round_number % 2 == 0 else ["job", "baseline"]
        for kind in order:
            table = f"throughput_{kind}_{round_number}"
            run = bench.throughput_run(kind, "bench-events", table)
            run["correct"] = (
                run["totals"]["events"] == messages and run["totals"]["amount_cents"] == expected_cents
            )
            runs[kind].append(run)
            if round_number < rounds - 1:
                bench.database.drop(table)
    last = rounds - 1
    differences = bench.database.differences(f"throughput_job_{last}", f"throughput_baseline_{last}")
    median = {kind: statistics.median(r["seconds"] for r in values) for kind, values in runs.items()}
    cpu = {kind: statistics.median(r["cpu_seconds"] for r in values) for kind, values in runs.items()}
    database_cpu = {
        kind: statistics.median(r["database_cpu_seconds"] for r in values) for kind, values in runs.items()
    }
    rate = {kind: round(messages / value) for kind, value in median.items()}
    cpu_rate = {kind: round(messages / value) for kind, value in cpu.items()}
    return {
        "messages": messages,
        "messages_per_batch": bench.batch_messages,
        "rounds": rounds,
        "events_per_second": rate,
        "ratio_job_to_baseline": round(rate["job"] / rate["baseline"], 3),
        "events_per_cpu_second": cpu_rate,
        "ratio_job_to_baseline_per_cpu_second": round(cpu_rate["job"] / cpu_rate["baseline"], 3),
        "seconds": {kind: [round(r["seconds"], 2) for r in values] for kind, values in runs.items()},
        "cpu_seconds": {kind: [round(r["cpu_seconds"], 2) for r in values] for kind, values in runs.items()},
        "database_cpu_seconds_median": {kind: round(value, 2) for kind, value in database_cpu.items()},
        "every_table_correct": all(r["correct"] for values in runs.values() for r in values),
        "rows_differing_job_vs_baseline_last_round": differences,
        "table_rows": runs["job"][-1]["totals"]["rows"],
        "spark_last_round": {kind: values[-1]["spark"] for kind, values in runs.items()},
        "job_metrics_last_round": runs["job"][-1]["job_metrics"],
    }


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {report['machine']}, {report['memory']} (/proc); {report['master']}, "
        f"{report['shuffle_partitions']} shuffle partitions; sink: {report['sink']}; "
        f"load average before/after: {report['load_average_1m_5m_15m_before_after']}",
        "",
    ]
    if "throughput" in report:
        t = report["throughput"]
        rate, cpu_rate = t["events_per_second"], t["events_per_cpu_second"]
        lines += [
            f"Throughput: {t['messages']:,} messages, availableNow, {t['messages_per_batch']:,} a batch, "
            f"median of {t['rounds']} runs each",
            "",
            "| | baseline | job | job/baseline | goal |",
            "|---|---:|---:|---:|---:|",
            f"| events/s | {rate['baseline']:,} | {rate['job']:,} | {t['ratio_job_to_baseline']} | "
            f">= {GOAL_RATIO}, >= {GOAL_EVENTS_PER_SECOND:,}/s |",
            f"| events/CPU s (Spark, its Python) | {cpu_rate['baseline']:,} | {cpu_rate['job']:,} | "
            f"{t['ratio_job_to_baseline_per_cpu_second']} | |",
            "",
            f"Tables correct: {t['every_table_correct']}; rows differing job vs baseline: "
            f"{t['rows_differing_job_vs_baseline_last_round']}",
            "",
        ]
    if "latency" in report:
        lines += [
            f"Latency: {args.rate:,} events/s for {args.latency_seconds:g} s "
            f"(after {args.latency_warmup:g} s not counted), processingTime 1 second; "
            "seconds from produce to sink commit",
            "",
            "| | produced/s | sustains/s | batches | per event p50 | p95 | oldest in batch p50 | p95 "
            "| newest p50 | p95 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, run in report["latency"].items():
            s = run["latency_seconds"]
            lines.append(
                f"| {kind} | {run['produced']['events_per_second']:,} | "
                f"{run['spark']['rows_per_second_of_batch_time'] or 0:,} | {run['batches_measured']} | "
                f"{s['per_event']['p50']} | {s['per_event']['p95']} | {s['oldest_event_of_batch']['p50']} | "
                f"{s['oldest_event_of_batch']['p95']} | {s['newest_event_of_batch']['p50']} | "
                f"{s['newest_event_of_batch']['p95']} |"
            )
        lines += [
            "",
            f"Goal: p95 < {GOAL_P95_SECONDS} s. sustains/s: events over the time the query's batches took.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
