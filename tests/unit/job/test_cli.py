"""The `etl` command: each subcommand, its output, and exit codes that tell failures apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_job.cli import main
from etl_job.contract import ETLPipeline
from etl_job.contract.crd import crd_yaml

REPO = Path(__file__).resolve().parents[3]


def etl_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`etl` in its own process, with its own JVM, as `make run` and a driver pod run it."""
    return subprocess.run(
        [sys.executable, "-m", "etl_job.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


def test_version_is_the_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"etl {version('sparkops-etl')}"


def test_crd_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_convert_prints_a_valid_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(REPO / "examples" / "legacy" / "user-summary.json")]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    assert ETLPipeline.model_validate(manifest).spec.load.write_mode == "upsert"


def test_convert_refuses_a_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(REPO / "examples" / "quickstart.yaml")]) == 2
    assert "not a pipeline in the older JSON format" in capsys.readouterr().err


def test_validate_accepts_the_examples(spark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for example in (
        "quickstart.yaml",
        "user-summary.yaml",
        "legacy/quickstart.json",
        "streaming-kafka-to-postgres.yaml",
        "streaming-files.yaml",
    ):
        assert main(["validate", str(REPO / "examples" / example)]) == 0
    assert "pipeline quickstart is valid" in capsys.readouterr().out


def test_validate_names_sql_that_does_not_parse(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad-sql.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "spec": {
                    "extract": {"sourceType": "S3", "path": "in/"},
                    "transforms": [
                        {"transformType": "SQL", "query": "SELECT user_id FROM input"},
                        {"transformType": "Filter", "condition": "amount > AND ("},
                    ],
                    "load": {"sinkType": "S3", "path": "out/"},
                }
            }
        )
    )
    assert main(["validate", str(config)]) == 2
    error = capsys.readouterr().err
    assert "transforms[1].condition: expression 'amount > AND (' does not parse" in error


def test_validate_names_the_condition_of_an_older_format_filter(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads((REPO / "tests" / "data" / "seed-format" / "batch-s3-to-postgres.json").read_text())
    document["transforms"].insert(0, {"transformType": "Filter", "parameters": {"condition": "amount >"}})
    config = tmp_path / "old.json"
    config.write_text(json.dumps(document))
    assert main(["validate", "--schemas", str(REPO / "examples" / "schemas"), str(config)]) == 2
    assert (
        "etl validate: transforms[0].condition: expression 'amount >' does not parse"
        in capsys.readouterr().err
    )


def test_convert_prints_the_command_that_creates_the_secret_without_a_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["convert", str(REPO / "tests" / "data" / "seed-format" / "batch-s3-to-postgres.json")]) == 0
    printed = capsys.readouterr()
    assert "  kubectl create secret generic postgres --from-literal=password=<password>\n" in printed.err
    manifest = yaml.safe_load(printed.out)
    assert manifest["spec"]["load"]["credentialsRef"] == {"name": "postgres", "key": "password"}


def test_validate_names_a_missing_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "no-schema.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "spec": {
                    "extract": {"sourceType": "S3", "path": "in/", "schemaName": "no-such-schema"},
                    "load": {"sinkType": "S3", "path": "out/"},
                }
            }
        )
    )
    assert main(["validate", str(config), "--no-sql", "--schemas", str(REPO / "examples" / "schemas")]) == 2
    assert "no-such-schema" in capsys.readouterr().err


def test_run_of_an_invalid_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "spec:\n  extract: {sourceType: S3, path: in/}\n"
        "  load: {sinkType: S3, path: out/, writeMode: upsert}\n"
    )
    done = etl_process("run", str(config), "--termination-log", str(tmp_path / "term"), cwd=tmp_path)
    assert done.returncode == 2
    assert "spec.load: writeMode upsert needs a database sink" in done.stderr


def test_run_quickstart_end_to_end_in_its_own_process(tmp_path: Path) -> None:
    termination_log = tmp_path / "termination-log"
    done = etl_process(
        "run",
        str(REPO / "examples" / "quickstart.yaml"),
        "--master",
        "local[2]",
        "--termination-log",
        str(termination_log),
        "--show",
        "3",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(termination_log.read_text())
    assert metrics["recordsExtracted"] == 2000
    assert metrics["recordsFailed"] == 0
    assert metrics["recordsLoaded"] == metrics["recordsTransformed"] > 0
    assert "first 3 rows" in done.stdout


def test_run_with_a_bad_record_exits_3_and_reports_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "events.csv").write_text(
        "event_id,user_id,country,event_type,amount,event_time\n"
        "1,u001,DE,purchase,10.50,2026-11-01T10:00:00Z\n"
        "2,u002,FR,purchase,lots,2026-11-01T11:00:00Z\n"
    )
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "metadata": {"name": "bad-data"},
                "spec": {
                    "extract": {
                        "sourceType": "S3",
                        "path": "in/",
                        "format": "csv",
                        "options": {"header": "true"},
                        "schemaName": "user-event",
                    },
                    "load": {"sinkType": "S3", "path": "out/"},
                },
            }
        )
    )
    termination_log = tmp_path / "termination-log"
    done = etl_process(
        "run",
        str(config),
        "--master",
        "local[1]",
        "--schemas",
        str(REPO / "examples" / "schemas"),
        "--termination-log",
        str(termination_log),
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    report = json.loads(termination_log.read_text())
    assert report["successRate"] == 0.0
    assert "event_id=2" in report["errors"][0]
    assert "amount" in report["errors"][0]


@pytest.mark.parametrize(
    "example", sorted(path.relative_to(REPO).as_posix() for path in (REPO / "examples").rglob("*.yaml"))
)
def test_every_example_pipeline_validates_offline(example: str) -> None:
    assert main(["validate", str(REPO / example), "--no-sql"]) == 0
