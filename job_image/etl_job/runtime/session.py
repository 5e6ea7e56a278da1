"""The job's SparkSession: local mode by default, the spec's Spark settings, and any extra
connector jars named in ETL_SPARK_JARS (the job image has them in Spark's own jars/)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from etl_job.contract import SparkSettings

#: File reads are cut into at least this many splits per task slot. Spark's default of one
#: split per slot, capped at 128 MB, leaves the last wave of a read part-empty: 254 MB of CSV on
#: 2 slots becomes 3 splits, so one slot idles through a third of the read. Several smaller
#: splits per slot even the waves out at the cost of a few more tasks.
SPLITS_PER_SLOT = 3
MIN_SPLITS = "spark.sql.files.minPartitionNum"
#: The run's labels, which the executors' JVM log layout reads from their environment too.
LABEL_ENV = ("ETL_PIPELINE", "POD_NAMESPACE", "ETL_RUN_ID", "ETL_GENERATION", "ETL_TRACE_ID")


def build_session(
    app_name: str,
    master: str | None,
    settings: SparkSettings,
    progress: bool = False,
    log_config: Path | None = None,
) -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    conf = session_conf(settings, progress, os.environ.get("ETL_SPARK_JARS"), log_config)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    size_file_splits(session, settings)
    return session


def session_conf(
    settings: SparkSettings, progress: bool = False, jars: str | None = None, log_config: Path | None = None
) -> dict[str, str]:
    """The job's Spark configuration: its defaults, then the spec's own settings over them. A
    log4j2 file, when given, is the driver's and the executors' (the driver's takes effect where
    this session starts the JVM, in local mode; spark-submit is given it by the operator)."""
    defaults = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "true" if progress else "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(max(2 * (os.cpu_count() or 2), 4)),
        "spark.sql.adaptive.enabled": "true",
        # PySpark would walk the Python stack at every column expression the engine builds, to
        # name the line in errors: lines of the engine, not of the pipeline a user wrote, at
        # about a tenth of a second of planning per run.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
    }
    if jars:
        defaults["spark.driver.extraClassPath"] = jars
    conf = {**defaults, **settings.conf}
    if log_config is not None:
        option = f"-Dlog4j2.configurationFile=file:{log_config}"
        for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
            # Before the spec's own options, so a -Dlog4j2.configurationFile there wins.
            conf[key] = " ".join(filter(None, (option, conf.get(key))))
        for name in LABEL_ENV:
            if os.environ.get(name):
                conf.setdefault(f"spark.executorEnv.{name}", os.environ[name])
    return conf


def size_file_splits(session: Any, settings: SparkSettings) -> None:
    """SPLITS_PER_SLOT splits per task slot for file reads, unless the spec sets its own."""
    if MIN_SPLITS not in settings.conf:
        session.conf.set(MIN_SPLITS, str(SPLITS_PER_SLOT * task_slots(session, settings)))


def task_slots(session: Any, settings: SparkSettings) -> int:
    """How many tasks run at once: the executors' cores, or the local master's threads."""
    if settings.executors:
        return settings.executors * settings.executor.cores
    return int(session.sparkContext.defaultParallelism)
