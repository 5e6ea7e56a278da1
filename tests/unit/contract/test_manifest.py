"""Pipelines load from every accepted shape, and bad ones fail naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl_job.connectors.files.paths import resolve_path
from etl_job.contract import ConfigurationError, S3Source
from etl_job.contract.manifest import load_pipeline
from etl_job.quality.guard import MARKER, record_violation

REPO = Path(__file__).resolve().parents[3]


def test_the_examples_load() -> None:
    quickstart = load_pipeline(REPO / "examples" / "quickstart.yaml")
    assert quickstart.pipeline.name == "quickstart"
    assert quickstart.base_dir == (REPO / "examples").resolve()
    assert load_pipeline(REPO / "examples" / "user-summary.yaml").pipeline.spec.load.sink_type == "PostgreSQL"


def test_a_bare_spec_in_json_takes_its_name_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "daily-totals.json"
    config.write_text(
        json.dumps(
            {
                "extract": {"sourceType": "S3", "path": "in/", "format": "json"},
                "load": {"sinkType": "S3", "path": "out/"},
            }
        )
    )
    loaded = load_pipeline(config)
    assert loaded.pipeline.name == "daily-totals"
    assert isinstance(loaded.pipeline.spec.extract, S3Source)
    assert loaded.pipeline.spec.extract.format == "json"


def test_the_older_format_loads_with_its_warnings() -> None:
    loaded = load_pipeline(REPO / "examples" / "legacy" / "quickstart.json")
    assert loaded.pipeline.spec.extract.source_type == "S3"


def test_errors_name_each_field_as_the_user_wrote_it(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "spec:\n"
        "  extract: {sourceType: Kafka, bootstrapServers: 'k:9092'}\n"
        "  transforms: [{transformType: Filter}]\n"
        "  load: {sinkType: PostgreSQL, table: t, writeMode: upsert,\n"
        "         connection: {host: h, port: 70000, database: d, user: u},\n"
        "         credentialsRef: {name: s, key: password}}\n"
    )
    with pytest.raises(ConfigurationError) as raised:
        load_pipeline(config)
    message = str(raised.value)
    assert "spec.extract.topic: Field required" in message
    assert "spec.transforms[0].condition: Field required" in message
    assert "spec.load.connection.port: Input should be less than or equal to 65535" in message


def test_a_missing_file_and_broken_yaml_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_pipeline(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_pipeline(broken)


def test_relative_paths_are_taken_from_the_manifest_folder(tmp_path: Path) -> None:
    assert resolve_path("data/x.csv", tmp_path) == str(tmp_path / "data" / "x.csv")
    assert resolve_path("out/", tmp_path) == str(tmp_path / "out") + "/"
    assert resolve_path("s3a://bucket/raw/", tmp_path) == "s3a://bucket/raw/"
    assert resolve_path("/abs/path", tmp_path) == "/abs/path"


def test_a_bad_record_message_is_found_inside_a_spark_error() -> None:
    spark_text = (
        "An error occurred while calling o123.save.\n: org.apache.spark.SparkRuntimeException: "
        f'[USER_RAISED_EXCEPTION] {MARKER} row event_id=17: amount: "abc" does not cast to double'
        " SQLSTATE: P0001\n"
        "\tat org.apache.spark..."
    )
    assert (
        record_violation(RuntimeError(spark_text)) == 'row event_id=17: amount: "abc" does not cast to double'
    )
    assert record_violation(RuntimeError("Connection refused")) is None
