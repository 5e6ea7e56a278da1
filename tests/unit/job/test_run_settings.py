"""Run settings the older format's users rely on, as the job applies them: the write batch size
inherited from performance.batchSize, the log line's format, and SQL errors named by field."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from etl_job.contract import ETLPipelineSpec, SparkSettings
from etl_job.pipeline import load_settings
from etl_job.runtime.logs import JVM_LOG_CONFIGS, JsonFormatter, RunLabels, choose_format, jvm_log_config
from etl_job.runtime.session import session_conf
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
    labels = RunLabels("batch-s3-to-postgres", "analytics", "run-7", "3", "4bf92f3577b34da6a3ce929d0e0e4736")
    line = json.loads(JsonFormatter(execution_id="run-7", labels=labels).format(record))
    example = json.loads((SEED / "log-record.json").read_text())
    assert set(example) <= set(line)
    assert line["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (line["pipeline"], line["namespace"], line["run"], line["generation"]) == (
        "batch-s3-to-postgres",
        "analytics",
        "run-7",
        "3",
    )
    assert line["executionId"] == "run-7"
    assert line["pipelineId"] == "batch-s3-to-postgres"
    assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == len(example["timestamp"])


def test_a_local_run_names_its_pipeline_and_nothing_it_does_not_know() -> None:
    record = logging.LogRecord("etl_job", logging.INFO, __file__, 1, "run succeeded", None, None)
    labels = RunLabels.from_env("quickstart", {}, "local")
    line = json.loads(JsonFormatter(labels=labels).format(record))
    assert (line["pipeline"], line["run"]) == ("quickstart", "local")
    assert not {"namespace", "generation", "traceId"} & set(line)
    # Spark's lines then name the same two: a label of its layout may not come out blank.
    assert jvm_log_config("json", labels) == JVM_LOG_CONFIGS["json-local"]
    pod = RunLabels("orders", "shop", "orders-run-4", "2", "0af7651916cd43dd8448eb211c80319c")
    assert jvm_log_config("json", pod) == JVM_LOG_CONFIGS["json"]
    assert jvm_log_config("text", pod) == JVM_LOG_CONFIGS["text"]


def test_labels_come_from_the_operators_environment() -> None:
    env = {"ETL_PIPELINE": "orders", "POD_NAMESPACE": "shop", "ETL_RUN_ID": "orders-run-4",
           "ETL_GENERATION": "2", "ETL_TRACE_ID": "0af7651916cd43dd8448eb211c80319c"}  # fmt: skip
    labels = RunLabels.from_env("from-the-file", env)
    assert labels == RunLabels("orders", "shop", "orders-run-4", "2", "0af7651916cd43dd8448eb211c80319c")
    assert labels.env() == env


@pytest.mark.parametrize(
    ("flag", "env", "structured", "tty", "chosen"),
    [
        ("text", {"ETL_LOG_FORMAT": "json"}, True, False, "text"),  # the flag first
        (None, {"ETL_LOG_FORMAT": "text"}, True, False, "text"),  # then the environment
        (None, {}, False, False, "text"),  # then the spec, when it says
        (None, {}, None, True, "text"),  # else text on a terminal
        (None, {}, None, False, "json"),  # and JSON anywhere else
    ],
)
def test_the_log_format_is_chosen_flag_env_spec_then_terminal(
    flag: str | None, env: dict[str, str], structured: bool | None, tty: bool, chosen: str
) -> None:
    assert choose_format(flag, env, structured, tty) == chosen


def test_spark_logs_through_the_jobs_log4j2_settings_before_the_specs_own_options() -> None:
    for path in JVM_LOG_CONFIGS.values():
        assert path.is_file(), path  # shipped in the package (pyproject's package-data)
    ours = f"-Dlog4j2.configurationFile=file:{JVM_LOG_CONFIGS['json']}"
    conf = session_conf(SparkSettings(), log_config=JVM_LOG_CONFIGS["json"])
    assert conf["spark.driver.extraJavaOptions"] == conf["spark.executor.extraJavaOptions"] == ours
    tuned = SparkSettings(conf={"spark.executor.extraJavaOptions": "-XX:+UseG1GC"})
    conf = session_conf(tuned, log_config=JVM_LOG_CONFIGS["json"])
    assert conf["spark.executor.extraJavaOptions"] == f"{ours} -XX:+UseG1GC"
    assert "spark.driver.extraJavaOptions" not in session_conf(SparkSettings())
