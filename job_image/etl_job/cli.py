"""`etl`: the job's command line.

  etl run CONFIG        run a pipeline (local Spark unless --master says otherwise)
  etl validate CONFIG   check the spec, its schema files and its SQL, without running it
  etl convert OLD.json  print the ETLPipeline YAML equivalent of a pipeline in the older format
  etl crd               print the ETLPipeline CustomResourceDefinition

Exit codes: 0 success, 2 configuration error, 3 data error, 4 infrastructure error (a source or
sink unavailable), 1 anything else. The operator classifies runs by them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from etl_job.contract import ConfigurationError, EtlError, RunMetrics
from etl_job.contract.manifest import LoadedPipeline, load_pipeline
from etl_job.runtime import logs
from etl_job.runtime.context import RunContext
from etl_job.runtime.metrics import write_termination_message

log = logging.getLogger("etl_job")

EXIT_UNEXPECTED = 1
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _run, "validate": _validate, "convert": _convert, "crd": _crd}[args.command]
    try:
        return command(args)
    except EtlError as failed:
        print(f"etl {args.command}: {failed}", file=sys.stderr)
        return failed.exit_code


def _version() -> str:
    """The installed distribution's version (pyproject.toml), as the images are tagged."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sparkops-etl")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl", description="Run and check ETLPipeline definitions.")
    parser.add_argument("--version", action="version", version=f"etl {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline once")
    run.add_argument("config", type=Path, help="ETLPipeline YAML, a pipeline JSON, or the older JSON format")
    run.add_argument(
        "--master",
        default=os.environ.get("ETL_SPARK_MASTER", "local[*]"),
        help="Spark master (default local[*]; empty to let spark-submit decide)",
    )
    run.add_argument(
        "--schemas",
        type=Path,
        action="append",
        default=None,
        help="folder of .avsc files (repeatable); default: ./schemas beside CONFIG, $ETL_SCHEMA_DIRS",
    )
    run.add_argument(
        "--termination-log",
        type=Path,
        default=Path(os.environ.get("ETL_TERMINATION_LOG", DEFAULT_TERMINATION_LOG)),
        help="where the metrics JSON goes for the operator (default /dev/termination-log)",
    )
    run.add_argument(
        "--high-water-mark",
        default=None,
        metavar="MARK",
        help="read an incremental source past MARK (default: status.highWaterMark of CONFIG)",
    )
    run.add_argument(
        "--run-id",
        default=os.environ.get("ETL_RUN_ID", "local"),
        help="the run's name in headers and dead letters",
    )
    run.add_argument(
        "--show", type=int, default=0, metavar="N", help="print the first N output rows after the run"
    )
    run.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=None,
        help="log lines as JSON or text (default: $ETL_LOG_FORMAT, else spec.logging.structured, "
        "else text on a terminal and JSON elsewhere)",
    )
    run.add_argument("--quiet", action="store_true", help="log warnings and errors only, and no progress bar")

    validate = commands.add_parser("validate", help="check a pipeline without running it")
    validate.add_argument("config", type=Path)
    validate.add_argument("--schemas", type=Path, action="append", default=None)
    validate.add_argument("--no-sql", action="store_true", help="skip parsing SQL (which starts a local JVM)")

    convert = commands.add_parser("convert", help="print the ETLPipeline YAML for an older pipeline JSON")
    convert.add_argument("config", type=Path)

    commands.add_parser("crd", help="print the ETLPipeline CustomResourceDefinition")
    return parser


def schema_dirs(explicit: list[Path] | None, config: Path) -> list[Path]:
    """Where Avro schemas are looked up, first match wins."""
    if explicit:
        return explicit
    # The nearest schemas/ folder at or above the pipeline file, as a project keeps them.
    nearest = next(
        (folder / "schemas" for folder in config.resolve().parents if (folder / "schemas").is_dir()), None
    )
    dirs = [nearest] if nearest else []
    dirs += [Path(p) for p in os.environ.get("ETL_SCHEMA_DIRS", "").split(os.pathsep) if p]
    return [d for d in dirs if d.is_dir()]


def _run(args: argparse.Namespace) -> int:
    from etl_job.pipeline import run_pipeline
    from etl_job.quality.schemas import SchemaRegistry
    from etl_job.runtime.session import build_session, task_slots

    loaded = load_pipeline(args.config)
    spec = loaded.pipeline.spec
    terminal = sys.stderr.isatty()
    structured = spec.logging.structured if "structured" in spec.logging.model_fields_set else None
    log_format = logs.choose_format(args.log_format, os.environ, structured, terminal)
    labels = logs.RunLabels.from_env(loaded.pipeline.name, os.environ)
    level = "WARNING" if args.quiet else str(spec.logging.level)
    logs.configure(level, log_format, execution_id=args.run_id, labels=labels)
    for warning in loaded.warnings:
        log.warning("conversion: %s", warning, extra={"pipeline": loaded.pipeline.name})
    schemas = SchemaRegistry(schema_dirs(args.schemas, args.config))
    spark = build_session(
        loaded.pipeline.name,
        args.master or None,
        spec.spark,
        progress=terminal and not args.quiet,
        log_config=logs.JVM_LOG_CONFIG[log_format],
    )
    status = loaded.pipeline.status
    context = RunContext(
        pipeline=loaded.pipeline.name,
        spark=spark,
        base_dir=loaded.base_dir,
        run_id=args.run_id,
        tolerance=str(spec.error_handling.tolerance),
        schemas=schemas,
        high_water_mark=args.high_water_mark or (status.high_water_mark if status else None),
        task_slots=task_slots(spark, spec.spark),
    )
    try:
        if spec.mode == "streaming":
            from etl_job.streaming import run_stream

            metrics = run_stream(loaded.pipeline, context, schemas, termination_log=args.termination_log)
        else:
            metrics = run_pipeline(loaded.pipeline, context, schemas)
    except EtlError as failed:
        _report_failure(loaded, args.termination_log, failed)
        spark.stop()
        return failed.exit_code
    except Exception as failed:  # noqa: BLE001 - reported with its class; the exit code says "unexpected"
        _report_failure(loaded, args.termination_log, failed)
        spark.stop()
        return EXIT_UNEXPECTED
    write_termination_message(args.termination_log, metrics)
    log.info(
        "run succeeded",
        extra={
            "pipeline": loaded.pipeline.name,
            "recordsLoaded": metrics.records_loaded,
            "duration": metrics.duration_ms,
            "metrics": metrics.model_dump(mode="json", exclude_none=True),
        },
    )
    print(json.dumps(metrics.model_dump(mode="json", exclude_none=True), indent=2))
    if args.show:
        _show_output(loaded, context, args.show)
    spark.stop()
    return 0


def _report_failure(loaded: LoadedPipeline, termination_log: Path, failed: BaseException) -> None:
    reason = failed.reason if isinstance(failed, EtlError) else type(failed).__name__
    first_line = (str(failed).splitlines() or [reason])[0]
    message = f"{reason}: {first_line}" if not isinstance(failed, EtlError) else str(failed)
    write_termination_message(termination_log, RunMetrics(success_rate=0.0, errors=[message]))
    log.error(
        "run failed: %s",
        message,
        extra={
            "pipeline": loaded.pipeline.name,
            "reason": reason,
            "exitCode": getattr(failed, "exit_code", EXIT_UNEXPECTED),
        },
    )


def _show_output(loaded: LoadedPipeline, context: RunContext, rows: int) -> None:
    from etl_job.connectors.files.paths import resolve_path

    load = loaded.pipeline.spec.load
    if load.sink_type != "S3":
        return
    frame = context.spark.read.format(load.format).load(resolve_path(load.path, context.base_dir))
    print(f"first {rows} rows of {load.path}:")
    frame.show(rows, truncate=False)


def _validate(args: argparse.Namespace) -> int:
    from etl_job.quality.schemas import SchemaRegistry

    loaded = load_pipeline(args.config)
    spec = loaded.pipeline.spec
    registry = SchemaRegistry(schema_dirs(args.schemas, args.config))
    names = [block.schema_name for block in (spec.extract, spec.load) if block.schema_name]
    for name in names:
        registry.get(name)
    if not args.no_sql:
        from etl_job.transforms.sql_check import check_expressions

        check_expressions(spec)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.config}: pipeline {loaded.pipeline.name} is valid")
    return 0


def _convert(args: argparse.Namespace) -> int:
    import yaml

    from etl_job.contract import legacy

    try:
        document = yaml.safe_load(args.config.read_text())
    except (OSError, yaml.YAMLError) as broken:
        raise ConfigurationError(f"cannot read {args.config}: {broken}") from None
    if not isinstance(document, dict) or not legacy.is_legacy(document):
        raise ConfigurationError(f"{args.config} is not a pipeline in the older JSON format (no pipelineId)")
    result = legacy.convert(document)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    commands = legacy.secret_commands(result.secrets)
    if commands:
        print("create the Secrets it names, in the pipeline's namespace:", file=sys.stderr)
        for command in commands:
            print(f"  {command}", file=sys.stderr)
    print(legacy.to_yaml(result.manifest), end="")
    return 0


def _crd(args: argparse.Namespace) -> int:
    from etl_job.contract.crd import crd_yaml

    print(crd_yaml(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
