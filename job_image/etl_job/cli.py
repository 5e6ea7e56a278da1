"""`etl`: the job's command line. `etl run PIPELINE.yaml` runs a pipeline in local Spark mode."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def _load_spec(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or "spec" not in document:
        raise SystemExit(f"{path}: not an ETLPipeline manifest (no spec)")
    spec: dict[str, Any] = document["spec"]
    return spec


def _resolve(path: str, base: Path) -> str:
    """Relative file paths in a manifest are relative to the manifest's folder."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def run(manifest: Path, master: str) -> dict[str, Any]:
    from pyspark.sql import SparkSession, functions

    spec = _load_spec(manifest)
    extract, load = spec["extract"], spec["load"]
    spark = (
        SparkSession.builder.master(master)
        .appName(manifest.stem)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    reader = spark.read.format(extract.get("format", "csv"))
    for key, value in extract.get("options", {}).items():
        reader = reader.option(key, str(value))
    frame = reader.load(_resolve(extract["path"], manifest.parent))
    extracted = frame.count()
    for transform in spec.get("transforms", []):
        if transform["transformType"] == "Filter":
            frame = frame.where(transform["condition"])
        elif transform["transformType"] == "Aggregation":
            columns = [
                getattr(functions, item["function"])(item["column"]).alias(item["as"])
                for item in transform["aggregations"]
            ]
            frame = frame.groupBy(*transform["groupBy"]).agg(*columns)
        else:
            raise SystemExit(f"transforms: {transform['transformType']} is not supported yet")
    output = _resolve(load["path"], manifest.parent)
    frame.write.mode(load.get("writeMode", "append")).format(load.get("format", "parquet")).save(output)
    loaded = spark.read.format(load.get("format", "parquet")).load(output).count()
    spark.stop()
    return {"recordsExtracted": extracted, "recordsLoaded": loaded, "output": output}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="etl", description="Run an ETLPipeline with Spark.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_command = commands.add_parser("run", help="run a pipeline manifest in local Spark mode")
    run_command.add_argument("manifest", type=Path)
    run_command.add_argument("--master", default="local[*]")
    args = parser.parse_args(argv)
    metrics = run(args.manifest, args.master)
    json.dump(metrics, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
