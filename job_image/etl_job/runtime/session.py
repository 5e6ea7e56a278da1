"""The job's SparkSession: local mode by default, the spec's Spark settings, and any extra
connector jars named in ETL_SPARK_JARS (the job image has them in Spark's own jars/)."""

from __future__ import annotations

import os
import sys
from typing import Any

from etl_job.contract import SparkSettings

#: File reads are cut into at least this many splits per task slot. Spark's default of one
#: split per slot, capped at 128 MB, leaves the last wave of a read part-empty: 254 MB of CSV on
#: 2 slots becomes 3 splits, so one slot idles through a third of the read. Several smaller
#: splits per slot even the waves out at the cost of a few more tasks.
SPLITS_PER_SLOT = 3
MIN_SPLITS = "spark.sql.files.minPartitionNum"


def build_session(app_name: str, master: str | None, settings: SparkSettings, progress: bool = False) -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in session_conf(settings, progress, os.environ.get("ETL_SPARK_JARS")).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    size_file_splits(session, settings)
    return session


def session_conf(settings: SparkSettings, progress: bool = False, jars: str | None = None) -> dict[str, str]:
    """The job's Spark configuration: its defaults, then the spec's own settings over them."""
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
    return {**defaults, **settings.conf}


def size_file_splits(session: Any, settings: SparkSettings) -> None:
    """SPLITS_PER_SLOT splits per task slot for file reads, unless the spec sets its own."""
    if MIN_SPLITS not in settings.conf:
        session.conf.set(MIN_SPLITS, str(SPLITS_PER_SLOT * task_slots(session, settings)))


def task_slots(session: Any, settings: SparkSettings) -> int:
    """How many tasks run at once: the executors' cores, or the local master's threads."""
    if settings.executors:
        return settings.executors * settings.executor.cores
    return int(session.sparkContext.defaultParallelism)
