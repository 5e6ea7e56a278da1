"""An overwrite of files replaces the output only when the new output is whole: a run that fails
on the way leaves the files it found, and a successful one leaves only its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from etl_job.contract import DataError
from tests.unit.job.test_pipeline import GOOD_ROWS, extract, parquet_rows, run, write_events

BAD_ROW = "6,u004,US,purchase,abc,2026-11-03T08:00:00Z"


def overwrite(path: str = "out/", partition_by: list[str] | None = None) -> dict[str, object]:
    block: dict[str, object] = {"sinkType": "S3", "path": path, "format": "parquet", "writeMode": "overwrite"}
    if partition_by:
        block["partitionBy"] = partition_by
    return block


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_failed_overwrite_leaves_the_files_it_found(
    spark: SparkSession, tmp_path: Path, partitioned: bool
) -> None:
    partitions = ["country"] if partitioned else None
    write_events(tmp_path / "in", GOOD_ROWS)
    run(spark, tmp_path, {"extract": extract(), "load": overwrite(partition_by=partitions)})
    before = parquet_rows(spark, tmp_path / "out", "event_id", "country")
    assert len(before) == 5

    write_events(tmp_path / "in", [*GOOD_ROWS[:2], BAD_ROW])
    with pytest.raises(DataError):
        run(spark, tmp_path, {"extract": extract(), "load": overwrite(partition_by=partitions)})
    assert parquet_rows(spark, tmp_path / "out", "event_id", "country") == before
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]  # nothing left beside it


def test_a_successful_overwrite_leaves_only_its_own_rows_and_no_staging(
    spark: SparkSession, tmp_path: Path
) -> None:
    write_events(tmp_path / "in", GOOD_ROWS)
    run(spark, tmp_path, {"extract": extract(), "load": overwrite("out/summary/")})
    write_events(tmp_path / "in", GOOD_ROWS[:2])
    metrics = run(spark, tmp_path, {"extract": extract(), "load": overwrite("out/summary/")})
    assert metrics.records_loaded == 2
    assert parquet_rows(spark, tmp_path / "out" / "summary", "event_id") == [(1,), (2,)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary"]
