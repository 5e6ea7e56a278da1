"""A whole batch run on local files: rows, metrics, bad records and failures, exactly."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from etl_job.contract import DataError, SchemaViolation, SourceUnavailable
from etl_job.contract.manifest import load_pipeline, parse_manifest
from etl_job.pipeline import run_pipeline
from etl_job.quality.schemas import SchemaRegistry
from etl_job.runtime.context import RunContext
from etl_job.runtime.metrics import RowCounter

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = SchemaRegistry([REPO / "examples" / "schemas"])
HEADER = "event_id,user_id,country,event_type,amount,event_time\n"
GOOD_ROWS = [
    "1,u001,DE,purchase,10.50,2026-11-01T10:00:00Z",
    "2,u001,DE,purchase,4.50,2026-11-01T11:00:00Z",
    "3,u002,FR,view,0.00,2026-11-01T12:00:00Z",
    "4,u003,FR,purchase,7.25,2026-11-02T09:30:00Z",
    "5,u002,FR,refund,-3.00,2026-11-02T10:00:00Z",
]


def write_events(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "events.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return folder


def run(spark: SparkSession, tmp_path: Path, spec: dict[str, Any]) -> Any:
    pipeline = parse_manifest({"metadata": {"name": "test-run"}, "spec": spec})
    return run_pipeline(pipeline, RunContext(pipeline="test-run", spark=spark, base_dir=tmp_path), SCHEMAS)


def extract(schema: bool = True) -> dict[str, Any]:
    block: dict[str, Any] = {
        "sourceType": "S3",
        "path": "in/",
        "format": "csv",
        "options": {"header": "true"},
    }
    if schema:
        block["schemaName"] = "user-event"
    return block


def parquet_rows(spark: SparkSession, path: Path, *columns: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(row) for row in spark.read.parquet(str(path)).select(*columns).collect())


def test_filter_aggregate_load_with_exact_rows_and_metrics(spark: SparkSession, tmp_path: Path) -> None:
    write_events(tmp_path / "in", GOOD_ROWS)
    metrics = run(
        spark,
        tmp_path,
        {
            "extract": extract(),
            "transforms": [
                {"transformType": "Filter", "condition": "event_type = 'purchase'"},
                {
                    "transformType": "Aggregation",
                    "groupBy": ["user_id", "country"],
                    "aggregations": [
                        {"column": "amount", "function": "sum", "as": "total_amount"},
                        {"column": "event_id", "function": "count", "as": "event_count"},
                    ],
                },
            ],
            "load": {
                "sinkType": "S3",
                "path": "out/",
                "format": "parquet",
                "writeMode": "overwrite",
                "schemaName": "user-summary",
            },
        },
    )
    assert parquet_rows(spark, tmp_path / "out", "user_id", "country", "total_amount", "event_count") == [
        ("u001", "DE", 15.0, 2),
        ("u003", "FR", 7.25, 1),
    ]
    assert (metrics.records_extracted, metrics.records_filtered, metrics.records_transformed) == (5, 2, 2)
    assert (metrics.records_loaded, metrics.records_failed, metrics.retry_count) == (2, 0, 0)
    assert metrics.success_rate == 1.0


def test_a_bad_record_fails_the_run_naming_row_and_field_and_writes_nothing(
    spark: SparkSession, tmp_path: Path
) -> None:
    write_events(tmp_path / "in", [*GOOD_ROWS, "6,u004,US,purchase,abc,2026-11-03T08:00:00Z"])
    with pytest.raises(DataError) as raised:
        run(
            spark,
            tmp_path,
            {
                "extract": extract(),
                "load": {"sinkType": "S3", "path": "out/", "format": "parquet"},
            },
        )
    message = str(raised.value)
    assert "event_id=6" in message
    assert "amount" in message
    assert "abc" in message
    # The failed job committed nothing: no data files, no _SUCCESS marker.
    assert not list((tmp_path / "out").rglob("*.parquet"))
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert raised.value.exit_code == 3


def test_tolerance_all_dead_letters_bad_records_and_the_counts_add_up(
    spark: SparkSession, tmp_path: Path
) -> None:
    bad = ["6,u004,US,purchase,abc,2026-11-03T08:00:00Z", "7,u005,XX,teleport,1.00,2026-11-03T09:00:00Z"]
    write_events(tmp_path / "in", [*GOOD_ROWS, *bad])
    metrics = run(
        spark,
        tmp_path,
        {
            "extract": extract(),
            "load": {"sinkType": "S3", "path": "out/", "format": "parquet"},
            "errorHandling": {
                "tolerance": "all",
                "deadLetter": {"type": "s3", "path": "dlq/", "format": "json"},
            },
        },
    )
    assert parquet_rows(spark, tmp_path / "out", "event_id") == [(1,), (2,), (3,), (4,), (5,)]
    assert (metrics.records_extracted, metrics.records_loaded, metrics.records_failed) == (7, 5, 2)
    assert metrics.records_failed_by_stage == {"extract": 2}
    assert metrics.records_extracted == metrics.records_loaded + metrics.records_failed
    assert metrics.success_rate == pytest.approx(5 / 7, abs=1e-6)

    letters = [
        json.loads(line)
        for path in (tmp_path / "dlq").rglob("*.json")
        for line in path.read_text().splitlines()
    ]
    assert sorted(json.loads(letter["originalRecord"])["event_id"] for letter in letters) == ["6", "7"]
    by_id = {json.loads(letter["originalRecord"])["event_id"]: letter for letter in letters}
    assert set(by_id["6"]) >= {
        "timestamp",
        "pipelineId",
        "stage",
        "errorType",
        "errorMessage",
        "originalRecord",
        "originalSchema",
        "attemptNumber",
        "context",
    }
    assert by_id["6"]["pipelineId"] == "test-run"
    assert by_id["6"]["stage"] == "extract"
    assert by_id["6"]["originalSchema"] == "user-event"
    assert "amount" in by_id["6"]["errorMessage"]
    assert "event_type" in by_id["7"]["errorMessage"]
    today = datetime.now(UTC).date().isoformat()
    assert [p.name for p in (tmp_path / "dlq").iterdir() if p.is_dir()] == [f"date={today}"]


def test_a_missing_input_path_is_source_unavailable(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="path in/ does not exist") as raised:
        run(spark, tmp_path, {"extract": extract(schema=False), "load": {"sinkType": "S3", "path": "out/"}})
    assert raised.value.exit_code == 4


def test_columns_that_cannot_fit_the_schema_fail_before_reading_rows(
    spark: SparkSession, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "events.csv").write_text("event_id,user_id\n1,u001\n")
    with pytest.raises(SchemaViolation, match="extract"):
        run(spark, tmp_path, {"extract": extract(), "load": {"sinkType": "S3", "path": "out/"}})


def test_partitioned_json_output_with_compression(spark: SparkSession, tmp_path: Path) -> None:
    write_events(tmp_path / "in", GOOD_ROWS)
    metrics = run(
        spark,
        tmp_path,
        {
            "extract": extract(schema=False),
            "transforms": [{"transformType": "Select", "columns": ["event_id", "country"]}],
            "load": {
                "sinkType": "S3",
                "path": "out/",
                "format": "json",
                "partitionBy": ["country"],
                "compression": "gzip",
            },
        },
    )
    assert metrics.records_loaded == 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["country=DE", "country=FR"]
    assert list((tmp_path / "out" / "country=DE").glob("*.json.gz"))


@pytest.mark.parametrize("example", ["quickstart.yaml", "legacy/quickstart.json"])
def test_the_quickstart_and_its_legacy_twin_run(spark: SparkSession, tmp_path: Path, example: str) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(REPO / "examples", examples, ignore=shutil.ignore_patterns("output"))
    loaded = load_pipeline(examples / example)
    context = RunContext(pipeline=loaded.pipeline.name, spark=spark, base_dir=loaded.base_dir)
    metrics = run_pipeline(loaded.pipeline, context, SCHEMAS)
    purchases = spark.read.option("header", "true").csv(str(examples / "data" / "events.csv"))
    expected_groups = purchases.where("event_type = 'purchase' AND CAST(amount AS DOUBLE) > 0").select(
        "user_id", "country"
    )
    assert metrics.records_extracted == 2000
    assert metrics.records_failed == 0
    assert metrics.records_filtered == 2000 - expected_groups.count()
    assert metrics.records_loaded == expected_groups.distinct().count()


@pytest.mark.parametrize("file_format", ["avro", "parquet", "json", "csv"])
def test_each_file_format_round_trips(spark: SparkSession, tmp_path: Path, file_format: str) -> None:
    write_events(tmp_path / "in", GOOD_ROWS)
    options = {"header": "true"} if file_format == "csv" else {}
    first = run(
        spark,
        tmp_path,
        {
            "extract": extract(),
            "load": {"sinkType": "S3", "path": "stage/", "format": file_format, "options": options},
        },
    )
    second = run(
        spark,
        tmp_path,
        {
            "extract": {"sourceType": "S3", "path": "stage/", "format": file_format, "options": options},
            "load": {"sinkType": "S3", "path": "out/", "format": "parquet"},
        },
    )
    assert first.records_loaded == second.records_extracted == second.records_loaded == 5
    assert parquet_rows(spark, tmp_path / "out", "user_id") == [
        ("u001",),
        ("u001",),
        ("u002",),
        ("u002",),
        ("u003",),
    ]


def test_one_count_serves_extract_and_load_when_nothing_between_changes_the_rows(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tolerance none the rows checked are the rows past the check, so the extract's count
    may sit on either side: past it when it serves the load too, else before it (on the rows as
    read, their event_id still text), off the transforms' way."""
    write_events(tmp_path / "in", GOOD_ROWS)
    counted: list[str] = []
    event_id_type: dict[str, str] = {}
    attach = RowCounter.attach

    def recording_attach(self: RowCounter, frame: Any, **extra: Any) -> Any:
        counted.append(self.name)
        event_id_type[self.name] = dict(frame.dtypes).get("event_id", "")
        return attach(self, frame, **extra)

    monkeypatch.setattr(RowCounter, "attach", recording_attach)
    load = {"sinkType": "S3", "path": "out/", "format": "parquet", "writeMode": "overwrite"}

    direct = run(spark, tmp_path, {"extract": extract(), "load": load})
    direct_counts = list(counted)
    assert event_id_type == {"extract-validation": "int"}
    counted.clear()
    filtered = run(
        spark,
        tmp_path,
        {
            "extract": extract(),
            "transforms": [{"transformType": "Filter", "condition": "amount > 0"}],
            "load": load,
        },
    )

    assert direct_counts == ["extract-validation"]
    assert (direct.records_extracted, direct.records_transformed, direct.records_loaded) == (5, 5, 5)
    assert counted == ["extract-validation", "transforms[0] (Filter)", "loaded"]
    assert event_id_type["extract-validation"] == "string"
    assert (filtered.records_extracted, filtered.records_loaded, filtered.records_filtered) == (5, 3, 2)
