"""Benchmark: the job engine against hand-written PySpark doing the same work, in one process.

Work: read N rows of event CSV -> aggregate per user and country -> write Parquet.
Six runs per round, order rotated between rounds so no run always gets a warm cache:
  baseline          hand-written PySpark (explicit schema, groupBy/agg, write) with Spark's own
                    session settings, as a hand-written job has them
  baseline_tuned    the same job with the engine's session settings (file splits per task slot)
  baseline_whole_files  baseline_tuned parsing each file whole (multiLine), as the engine does
                    with these files (etl_job.csv_files)
  baseline_checked  baseline_tuned with the schema's row checks written by hand
  framework         the same pipeline through etl_job.pipeline.run_pipeline, no row validation
  validated         the same with the events checked row by row against the user-event schema
The medians are reported as ratios to the baseline, and to baseline_tuned, baseline_whole_files
and baseline_checked, which show what the engine's own work costs; with rows/s, the JVM's CPU
seconds and the machine.

  .venv/bin/python bench/job_vs_pyspark.py --rows 5000000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from measure import jvm_cpu_seconds, machine, timed

REPO = Path(__file__).resolve().parents[1]


def make_events(spark: Any, rows: int, folder: Path) -> Path:
    """Deterministic event CSV with the columns of examples/data/events.csv, made once per size."""
    from pyspark.sql import functions as F

    target = folder / f"events-{rows}"
    if (target / "_SUCCESS").exists():
        return target
    countries = F.array(*[F.lit(c) for c in ("DE", "FR", "US", "BR", "JP", "IN")])
    kinds = F.array(F.lit("purchase"), F.lit("purchase"), F.lit("refund"), F.lit("view"))
    frame = spark.range(rows, numPartitions=8).select(
        (F.col("id") + 1).alias("event_id"),
        F.format_string("u%05d", (F.col("id") * 7919) % 50000).alias("user_id"),
        F.element_at(countries, ((F.col("id") * 31) % 6 + 1).cast("int")).alias("country"),
        F.element_at(kinds, ((F.col("id") * 17) % 4 + 1).cast("int")).alias("event_type"),
        F.format_number(((F.col("id") * 104729) % 25000) / 100.0, 2).alias("amount"),
        F.date_format(
            F.timestamp_seconds(F.lit(1793491200) + (F.col("id") * 37) % 1209600), "yyyy-MM-dd'T'HH:mm:ss'Z'"
        ).alias("event_time"),
    )
    # format_number adds thousands separators; the sample data has none.
    frame = frame.withColumn("amount", F.regexp_replace("amount", ",", ""))
    frame.write.mode("overwrite").option("header", "true").csv(str(target))
    return target


def baseline(spark: Any, source: Path, output: Path, whole_files: bool = False) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("event_id", LongType()),
            StructField("user_id", StringType()),
            StructField("country", StringType()),
            StructField("event_type", StringType()),
            StructField("amount", DoubleType()),
            StructField("event_time", StringType()),
        ]
    )
    (
        spark.read.option("header", "true")
        .option("multiLine", str(whole_files).lower())
        .schema(schema)
        .csv(str(source))
        .groupBy("user_id", "country")
        .agg(F.sum("amount").alias("total_amount"), F.count("event_id").alias("event_count"))
        .write.mode("overwrite")
        .parquet(str(output))
    )


def baseline_checked(spark: Any, source: Path, output: Path) -> None:
    """The baseline with the user-event schema's row checks written by hand: every field read as
    text, each checked (present, casts to its type, an enum symbol), the first bad row fails."""
    from pyspark.sql import functions as F

    events = spark.read.option("header", "true").csv(str(source))
    cast = {
        "event_id": F.col("event_id").try_cast("int"),
        "amount": F.col("amount").try_cast("double"),
        "event_time": F.col("event_time").try_cast("timestamp"),
    }
    good = (
        F.col("user_id").isNotNull()
        & F.col("country").isNotNull()
        & F.col("event_type").isin("purchase", "refund", "view")
        & cast["event_id"].isNotNull()
        & cast["amount"].isNotNull()
        & cast["event_time"].isNotNull()
    )
    bad_row = F.raise_error(F.concat(F.lit("bad event "), F.coalesce(F.col("event_id"), F.lit("?"))))
    (
        events.where(F.when(good, F.lit(True)).otherwise(bad_row))
        .select(cast["event_id"].alias("event_id"), "user_id", "country", cast["amount"].alias("amount"))
        .groupBy("user_id", "country")
        .agg(F.sum("amount").alias("total_amount"), F.count("event_id").alias("event_count"))
        .write.mode("overwrite")
        .parquet(str(output))
    )


def pipeline_manifest(source: Path, output: Path, validated: bool) -> dict[str, Any]:
    extract: dict[str, Any] = {
        "sourceType": "S3",
        "path": str(source),
        "format": "csv",
        "options": {"header": "true"},
    }
    if validated:
        extract["schemaName"] = "user-event"
    return {
        "metadata": {"name": "bench"},
        "spec": {
            "extract": extract,
            "transforms": [
                {
                    "transformType": "Aggregation",
                    "groupBy": ["user_id", "country"],
                    "aggregations": [
                        {"column": "amount", "function": "sum", "as": "total_amount"},
                        {"column": "event_id", "function": "count", "as": "event_count"},
                    ],
                }
            ],
            "load": {"sinkType": "S3", "path": str(output), "format": "parquet", "writeMode": "overwrite"},
        },
    }


def framework(spark: Any, source: Path, output: Path, validated: bool) -> dict[str, Any]:
    from etl_job.contract.manifest import parse_manifest
    from etl_job.pipeline import run_pipeline
    from etl_job.quality.schemas import SchemaRegistry
    from etl_job.runtime.context import RunContext

    pipeline = parse_manifest(pipeline_manifest(source, output, validated))
    metrics = run_pipeline(
        pipeline, RunContext(pipeline="bench", spark=spark), SchemaRegistry([REPO / "examples" / "schemas"])
    )
    return metrics.model_dump(mode="json")


def with_spark_defaults(spark: Any, action: Callable[[], object]) -> Callable[[], object]:
    """`action` run with Spark's own file-split setting instead of the engine's."""
    from etl_job.runtime.session import MIN_SPLITS

    def run() -> object:
        engine_value = spark.conf.get(MIN_SPLITS, None)
        spark.conf.unset(MIN_SPLITS)
        try:
            return action()
        finally:
            if engine_value is not None:
                spark.conf.set(MIN_SPLITS, engine_value)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("ETL_CACHE_DIR", Path.home() / ".cache/sparkops-etl")) / "bench",
    )
    args = parser.parse_args()

    from etl_job.contract import SparkSettings
    from etl_job.runtime.functions import has_functions
    from etl_job.runtime.session import build_session

    sys.path.insert(0, str(REPO))  # the test harness builds the job's functions jar
    from tests.infra.spark import functions_jar

    # The job's own functions, as in the job image (where the jar sits in Spark's jars/).
    os.environ["ETL_SPARK_JARS"] = str(functions_jar())
    spark = build_session(
        "bench",
        "local[2]",
        SparkSettings(conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "4g"}),
    )
    args.data.mkdir(parents=True, exist_ok=True)
    source = make_events(spark, args.rows, args.data)
    scratch = Path(tempfile.mkdtemp(prefix="etl-bench-"))
    runs: dict[str, Callable[[], object]] = {
        "baseline": with_spark_defaults(spark, lambda: baseline(spark, source, scratch / "baseline")),
        "baseline_tuned": lambda: baseline(spark, source, scratch / "baseline_tuned"),
        "baseline_whole_files": lambda: baseline(spark, source, scratch / "whole", whole_files=True),
        "baseline_checked": lambda: baseline_checked(spark, source, scratch / "baseline_checked"),
        "framework": lambda: framework(spark, source, scratch / "framework", validated=False),
        "validated": lambda: framework(spark, source, scratch / "validated", validated=True),
    }
    for action in runs.values():  # warm-up: JIT, file cache
        action()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    jvm_cpu = jvm_cpu_seconds(spark)
    names = list(runs)
    for round_number in range(args.rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            wall, used = timed(runs[name], jvm_cpu)
            seconds[name].append(wall)
            cpu[name].append(used)
    last = framework(spark, source, scratch / "validated", validated=True)
    functions_used = has_functions(spark)
    spark.stop()
    shutil.rmtree(scratch, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in seconds.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    report = {
        "rows": args.rows,
        "rounds": args.rounds,
        "machine": machine(),
        "load_average": Path("/proc/loadavg").read_text().split()[:3],
        "job_functions": functions_used,
        "seconds": {name: [round(v, 2) for v in values] for name, values in seconds.items()},
        "jvm_cpu_seconds": {name: [round(v, 2) for v in values] for name, values in cpu.items()},
        "rows_per_second": {name: round(args.rows / value) for name, value in median.items()},
        "ratio_framework_to_baseline": round(median["framework"] / median["baseline"], 3),
        "ratio_validated_to_baseline": round(median["validated"] / median["baseline"], 3),
        "ratio_framework_to_baseline_tuned": round(median["framework"] / median["baseline_tuned"], 3),
        "ratio_validated_to_baseline_tuned": round(median["validated"] / median["baseline_tuned"], 3),
        "ratio_framework_to_baseline_whole_files": round(
            median["framework"] / median["baseline_whole_files"], 3
        ),
        "ratio_validated_to_baseline_whole_files": round(
            median["validated"] / median["baseline_whole_files"], 3
        ),
        "ratio_validated_to_baseline_checked": round(median["validated"] / median["baseline_checked"], 3),
        "ratio_baseline_checked_to_baseline_tuned": round(
            median["baseline_checked"] / median["baseline_tuned"], 3
        ),
        "cpu_ratio_validated_to_baseline": round(median_cpu["validated"] / median_cpu["baseline"], 3),
        "validated_run_metrics": last,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
