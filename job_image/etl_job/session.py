"""The job's SparkSession: local mode by default, the spec's Spark settings, and any extra
connector jars named in ETL_SPARK_JARS (the job image has them in Spark's own jars/)."""

from __future__ import annotations

import os
import sys
from typing import Any

from etl_job.spec import SparkSettings


def build_session(app_name: str, master: str | None, settings: SparkSettings, progress: bool = False) -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    defaults = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "true" if progress else "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(max(2 * (os.cpu_count() or 2), 4)),
        "spark.sql.adaptive.enabled": "true",
    }
    jars = os.environ.get("ETL_SPARK_JARS")
    if jars:
        defaults["spark.driver.extraClassPath"] = jars
    for key, value in {**defaults, **settings.conf}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
