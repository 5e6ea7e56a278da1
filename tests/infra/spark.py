"""The one SparkSession of a test run: local[2], UI off, few shuffle partitions, pinned jars."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from tests.infra.process import HarnessError, timed
from tests.infra.versions import REPO_ROOT, cache_dir, ensure_built, versions

COMPONENT = "spark"


def connector_jars() -> list[Path]:
    """The connector jars that Dockerfile.job bakes in, resolved by the same script."""
    ensure_built("spark-jars", REPO_ROOT / "job_image" / "fetch-jars.sh")
    pinned = versions()
    folder = cache_dir() / f"spark-jars-{pinned['SPARK_VERSION']}-{pinned['HADOOP_VERSION']}"
    jars = sorted(folder.glob("*.jar"))
    if not jars:
        raise HarnessError(f"spark-jars: no jars in {folder}; run job_image/fetch-jars.sh")
    return jars


def functions_jar() -> Path:
    """The job's own Spark SQL functions, which the job image has in Spark's jars/ too."""
    return Path(ensure_built("etl-functions", REPO_ROOT / "job_image" / "build-functions.sh"))


def start_spark() -> SparkSession:
    jars = [*connector_jars(), functions_jar()]
    warehouse = tempfile.mkdtemp(prefix="etl-spark-")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with timed(COMPONENT, "start"):
        session = (
            SparkSession.builder.master("local[2]")
            .appName("etl-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.driver.memory", "2g")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.warehouse.dir", warehouse)
            .config("spark.local.dir", warehouse)
            # On the JVM's own classpath, as in the job image where they sit in Spark's jars/
            # (so JDBC drivers register with DriverManager without a `driver` option).
            .config("spark.driver.extraClassPath", os.pathsep.join(str(jar) for jar in jars))
            .getOrCreate()
        )
    session.sparkContext.setLogLevel("WARN")
    return session
