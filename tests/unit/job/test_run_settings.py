"""Run settings the older format's users rely on, as the job applies them: the write batch size
inherited from performance.batchSize, the log line's format, and SQL errors named by field."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from etl_job.contract import ETLPipelineSpec
from etl_job.pipeline import load_settings
from etl_job.runtime.logs import JsonFormatter
from etl_job.transforms.sql_check import sql_fragments

SEED = Path(__file__).resolve().parents[2] / "data" / "seed-format"

PG_LOAD = {
    "sinkType": "PostgreSQL",
    "table": "t",
    "connection": {"host": "pg", "port": 5432, "database": "d", "user": "u"},
    "credentialsRef": {"name": "pg", "key": "password"},
}


def spec(**blocks: Any) -> ETLPipelineSpec:
    return ETLPipelineSpec.model_validate({"extract": {"sourceType": "S3", "path": "in/"}, **blocks})


@pytest.mark.parametrize(
    ("load", "performance", "batch_size"),
    [
        (PG_LOAD, {}, 10000),
        (PG_LOAD, {"batchSize": 250}, 250),
        ({**PG_LOAD, "batchSize": 40}, {"batchSize": 250}, 40),
    ],
)
def test_a_database_sink_writes_in_batches_of_performance_batch_size_unless_it_sets_its_own(
    load: dict[str, Any], performance: dict[str, Any], batch_size: int
) -> None:
    assert load_settings(spec(load=load, performance=performance)).batch_size == batch_size


def test_a_file_sink_is_left_as_it_is() -> None:
    settings = spec(load={"sinkType": "S3", "path": "out/"}, performance={"batchSize": 5})
    assert load_settings(settings) is settings.load


def test_sql_is_named_by_its_field_path() -> None:
    settings = spec(
        transforms=[
            {"transformType": "Filter", "condition": "amount > 0"},
            {"transformType": "Select", "columns": ["a", "b + 1 AS c"]},
            {"transformType": "SQL", "query": "SELECT * FROM input"},
        ],
        load={"sinkType": "S3", "path": "out/"},
    )
    assert [field for field, _, _ in sql_fragments(settings)] == [
        "transforms[0].condition",
        "transforms[1].columns[0]",
        "transforms[1].columns[1]",
        "transforms[2].query",
    ]


def test_a_structured_log_line_has_the_fields_of_the_older_format() -> None:
    record = logging.LogRecord("etl_job", logging.INFO, __file__, 1, "run succeeded", None, None)
    record.pipeline, record.recordsLoaded, record.duration = "batch-s3-to-postgres", 3, 4500
    line = json.loads(JsonFormatter(execution_id="run-7").format(record))
    example = json.loads((SEED / "log-record.json").read_text())
    # traceId: the job has no tracing, so no trace to name.
    assert list(line) == [key for key in example if key != "traceId"]
    assert line["executionId"] == "run-7"
    assert line["pipelineId"] == "batch-s3-to-postgres"
    assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == len(example["timestamp"])
