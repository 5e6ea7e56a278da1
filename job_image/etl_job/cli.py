"""`etl`: the job's command line.

  etl run CONFIG        run a pipeline (local Spark unless --master says otherwise)
  etl replay CONFIG     run the pipeline's dead letters through it again, once each
  etl validate CONFIG   check the spec, its schema files and its SQL, without running it
  etl convert OLD.json  print the ETLPipeline YAML equivalent of a pipeline in the older format
  etl crd               print the ETLPipeline CustomResourceDefinition
  etl vault ...         keep Secret values for local runs in an encrypted file (init, set, get,
                        list, rm, export-secret)

Exit codes: 0 success, 2 configuration error, 3 data error, 4 infrastructure error (a source or
sink unavailable), 1 anything else. The operator classifies runs by them."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etl_job.connectors.letters import STAGES, ReplayFilter, parse_since
from etl_job.contract import ConfigurationError, EtlError, RunMetrics
from etl_job.contract.manifest import LoadedPipeline, load_pipeline
from etl_job.runtime import health, logs
from etl_job.runtime.context import RunContext
from etl_job.runtime.metrics import write_termination_message
from etl_job.runtime.progress import TerminalProgress
from etl_job.runtime.run_progress import RunProgress

log = logging.getLogger("etl_job")

EXIT_UNEXPECTED = 1
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {
        "run": _run,
        "replay": _replay,
        "validate": _validate,
        "convert": _convert,
        "crd": _crd,
        "vault": _vault,
    }[args.command]
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
    _run_options(run)
    run.add_argument(
        "--high-water-mark",
        default=None,
        metavar="MARK",
        help="read an incremental source past MARK (default: status.highWaterMark of CONFIG)",
    )
    run.add_argument(
        "--show", type=int, default=0, metavar="N", help="print the first N output rows after the run"
    )

    replay = commands.add_parser(
        "replay",
        help="run a pipeline's dead letters through it again, once each",
        description="Takes this pipeline's letters from its errorHandling.deadLetter queue that "
        "no replay took before, runs their records through validation, transforms and load, and "
        "marks them in a ledger beside the letters. Records that fail again become new letters "
        "(attemptNumber + 1).",
    )
    _run_options(replay)
    replay.add_argument("--stage", choices=STAGES, default=None, help="only letters of this stage")
    replay.add_argument(
        "--error-type", default=None, metavar="TYPE", help="only letters of this errorType (NullValue, ...)"
    )
    replay.add_argument(
        "--since", default=None, metavar="TIME", help="only letters written at or after TIME (ISO-8601, UTC)"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="print how many letters would be replayed; change nothing"
    )

    validate = commands.add_parser("validate", help="check a pipeline without running it")
    validate.add_argument("config", type=Path)
    validate.add_argument("--schemas", type=Path, action="append", default=None)
    validate.add_argument("--no-sql", action="store_true", help="skip parsing SQL (which starts a local JVM)")

    convert = commands.add_parser("convert", help="print the ETLPipeline YAML for an older pipeline JSON")
    convert.add_argument("config", type=Path)

    commands.add_parser("crd", help="print the ETLPipeline CustomResourceDefinition")
    _vault_parser(commands)
    return parser


def _run_options(command: argparse.ArgumentParser) -> None:
    """The options of a command that runs a pipeline: `etl run` and `etl replay`."""
    command.add_argument(
        "config", type=Path, help="ETLPipeline YAML, a pipeline JSON, or the older JSON format"
    )
    command.add_argument(
        "--master",
        default=os.environ.get("ETL_SPARK_MASTER", "local[*]"),
        help="Spark master (default local[*]; empty to let spark-submit decide)",
    )
    command.add_argument(
        "--schemas",
        type=Path,
        action="append",
        default=None,
        help="folder of .avsc files (repeatable); default: ./schemas beside CONFIG, $ETL_SCHEMA_DIRS",
    )
    command.add_argument(
        "--termination-log",
        type=Path,
        default=Path(os.environ.get("ETL_TERMINATION_LOG", DEFAULT_TERMINATION_LOG)),
        help="where the metrics JSON goes for the operator (default /dev/termination-log)",
    )
    command.add_argument(
        "--run-id",
        default=os.environ.get("ETL_RUN_ID", "local"),
        help="the run's name in headers and dead letters",
    )
    command.add_argument(
        "--log-format",
        choices=("json", "text"),
        default=None,
        help="log lines as JSON or text (default: $ETL_LOG_FORMAT, else spec.logging.structured, "
        "else text on a terminal and JSON elsewhere)",
    )
    command.add_argument(
        "--quiet", action="store_true", help="log warnings and errors only, and no progress bar"
    )
    secrets = command.add_mutually_exclusive_group()
    secrets.add_argument(
        "--vault",
        type=Path,
        default=None,
        help="take Secret values the environment lacks from this vault (default: $ETL_VAULT, "
        "else ~/.config/sparkops-etl/vault.enc), opened with $VAULT_MASTER_KEY",
    )
    secrets.add_argument(
        "--kube-secrets",
        action="store_true",
        help="take Secret values the environment lacks from the current kubeconfig's cluster instead",
    )


def _vault_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`etl vault`: values come from stdin (or a prompt), never from the command line."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--vault",
        type=Path,
        default=None,
        help="the vault file (default: $ETL_VAULT, else ~/.config/sparkops-etl/vault.enc)",
    )
    vault = commands.add_parser(
        "vault",
        help="keep Secret values for local runs in a file encrypted with $VAULT_MASTER_KEY",
        description="Entries are named as Kubernetes Secret references are: Secret name and key. "
        "`etl run` takes the values a pipeline's references need from here when the environment "
        "lacks them. The master key comes from $VAULT_MASTER_KEY.",
    )
    actions = vault.add_subparsers(dest="vault_command", required=True)
    actions.add_parser("init", parents=[where], help="create an empty vault")
    put = actions.add_parser(
        "set", parents=[where], help="set NAME KEY to the value on stdin (one trailing newline dropped)"
    )
    put.add_argument("name", help="Secret name, as a credentialsRef names it")
    put.add_argument("key", help="key inside the Secret")
    put.add_argument("--keep-newline", action="store_true", help="keep a trailing newline of the value")
    get = actions.add_parser("get", parents=[where], help="print the value of NAME KEY")
    get.add_argument("name")
    get.add_argument("key")
    listing = actions.add_parser("list", parents=[where], help="print NAME KEY of each entry, no values")
    listing.add_argument("name", nargs="?", help="only this Secret's keys")
    remove = actions.add_parser("rm", parents=[where], help="remove KEY of NAME, or all of NAME")
    remove.add_argument("name")
    remove.add_argument("key", nargs="?")
    export = actions.add_parser(
        "export-secret", parents=[where], help="print the Kubernetes Secret NAME with all its keys"
    )
    export.add_argument("name")
    export.add_argument("-n", "--namespace", default=None, help="put metadata.namespace in the manifest")


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
    labels = logs.RunLabels.from_env(loaded.pipeline.name, os.environ, args.run_id)
    level = "WARNING" if args.quiet else str(spec.logging.level)
    logs.configure(level, log_format, execution_id=args.run_id, labels=labels)
    for warning in loaded.warnings:
        log.warning("conversion: %s", warning, extra={"pipeline": loaded.pipeline.name})
    try:
        env = _secret_env(args, loaded)
    except EtlError as failed:
        return _report_failure(loaded, args.termination_log, failed)
    schemas = SchemaRegistry(schema_dirs(args.schemas, args.config))
    progress = RunProgress()
    session: list[Any] = []
    port = int(os.environ.get(health.HEALTH_PORT_ENV, "0"))
    if spec.mode == "batch" and port:
        # A streaming run serves its own figures (etl_job.streaming), from its query's progress.
        try:
            health.serve_batch(port, loaded.pipeline.name, progress, lambda: session[0] if session else None)
        except OSError as taken:  # a driver pod has the port to itself; a run beside others may not
            log.warning("no /metrics on port %d: %s", port, taken)
    progress.begin("start")
    spark = build_session(
        loaded.pipeline.name,
        args.master or None,
        spec.spark,
        progress=False,  # etl run draws its own line on a terminal (runtime.progress)
        log_config=logs.jvm_log_config(log_format, labels),
    )
    session.append(spark)
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
        env=env,
        progress=progress,
    )
    try:
        if spec.mode == "streaming":
            from etl_job.streaming import run_stream

            metrics = run_stream(loaded.pipeline, context, schemas, termination_log=args.termination_log)
        else:
            shown = TerminalProgress(spark) if terminal and not args.quiet else contextlib.nullcontext()
            with shown:
                metrics = run_pipeline(loaded.pipeline, context, schemas)
    except Exception as failed:  # noqa: BLE001 - reported with its class; its exit code says which
        exit_code = _report_failure(loaded, args.termination_log, failed)
        spark.stop()
        return exit_code
    progress.records = metrics.model_dump(by_alias=True)
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


def _replay(args: argparse.Namespace) -> int:
    """`etl replay`: as `etl run`, with the pipeline's dead letters as its source."""
    from etl_job.quality.schemas import SchemaRegistry
    from etl_job.replay import replay
    from etl_job.runtime.session import build_session, task_slots

    loaded = load_pipeline(args.config)
    spec = loaded.pipeline.spec
    if spec.error_handling.dead_letter is None:
        raise ConfigurationError(
            f"pipeline {loaded.pipeline.name} has no dead-letter queue to replay",
            field="errorHandling.deadLetter",
        )
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError:
        raise ConfigurationError(f"--since {args.since!r} is not an ISO-8601 date or time") from None
    wanted = ReplayFilter(loaded.pipeline.name, stage=args.stage, error_type=args.error_type, since=since)
    structured = spec.logging.structured if "structured" in spec.logging.model_fields_set else None
    log_format = logs.choose_format(args.log_format, os.environ, structured, sys.stderr.isatty())
    labels = logs.RunLabels.from_env(loaded.pipeline.name, os.environ, args.run_id)
    level = "WARNING" if args.quiet else str(spec.logging.level)
    logs.configure(level, log_format, execution_id=args.run_id, labels=labels)
    try:
        env = _secret_env(args, loaded)
    except EtlError as failed:
        return _report_failure(loaded, args.termination_log, failed)
    schemas = SchemaRegistry(schema_dirs(args.schemas, args.config))
    spark = build_session(
        loaded.pipeline.name,
        args.master or None,
        spec.spark,
        progress=False,
        log_config=logs.jvm_log_config(log_format, labels),
    )
    context = RunContext(
        pipeline=loaded.pipeline.name,
        spark=spark,
        base_dir=loaded.base_dir,
        run_id=args.run_id,
        tolerance=str(spec.error_handling.tolerance),
        schemas=schemas,
        task_slots=task_slots(spark, spec.spark),
        env=env,
    )
    try:
        metrics, selection = replay(loaded.pipeline, context, schemas, wanted, dry_run=args.dry_run)
    except Exception as failed:  # noqa: BLE001 - reported with its class; its exit code says which
        exit_code = _report_failure(loaded, args.termination_log, failed)
        spark.stop()
        return exit_code
    spark.stop()
    if args.dry_run:
        print(json.dumps(selection.summary(), indent=2))
        return 0
    write_termination_message(args.termination_log, metrics)
    log.info(
        "replay succeeded",
        extra={
            "pipeline": loaded.pipeline.name,
            "recordsLoaded": metrics.records_loaded,
            "metrics": metrics.model_dump(mode="json", exclude_none=True),
        },
    )
    print(json.dumps(metrics.model_dump(mode="json", exclude_none=True), indent=2))
    return 0


def _secret_env(args: argparse.Namespace, loaded: LoadedPipeline) -> dict[str, str]:
    """The environment connectors take Secret values from: the process's, completed from the
    vault, or with --kube-secrets from the cluster, for the references it lacks (an env var
    wins). The master key is taken out of the process's environment, so Spark never inherits it."""
    from etl_job.runtime import secret_sources, vault

    master_key = os.environ.pop(vault.MASTER_KEY_ENV, "")
    env = dict(os.environ)
    if args.kube_secrets:
        source = secret_sources.kube_source(loaded.pipeline.metadata.get("namespace"))
    else:
        path = vault.vault_path(args.vault, env)
        source = secret_sources.vault_source(
            path, lambda: vault.master_key({vault.MASTER_KEY_ENV: master_key})
        )
    return secret_sources.resolve_secrets(loaded.pipeline.spec.secret_refs(), env, source)


def _report_failure(loaded: LoadedPipeline, termination_log: Path, failed: BaseException) -> int:
    """Log the failure and write it to the termination log; the exit code it stands for."""
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
    return failed.exit_code if isinstance(failed, EtlError) else EXIT_UNEXPECTED


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


def _vault(args: argparse.Namespace) -> int:
    from etl_job.runtime import vault

    path = vault.vault_path(args.vault, os.environ)
    action = args.vault_command
    if action == "init":
        vault.create_vault(path, vault.master_key(os.environ))
        print(f"created the vault {path}", file=sys.stderr)
        return 0
    if action == "set":
        vault.check_entry_name(args.name, args.key)
        value = _value_from_stdin(args.keep_newline)

        def put(entries: vault.Entries) -> vault.Entries:
            return {**entries, args.name: {**entries.get(args.name, {}), args.key: value}}

        vault.update_vault(path, vault.master_key(os.environ), put)
        return 0
    if action == "rm":

        def remove(entries: vault.Entries) -> vault.Entries:
            keys = _entry(entries, args.name, args.key, path)
            rest = {key: value for key, value in keys.items() if args.key not in (None, key)}
            return {name: found for name, found in entries.items() if name != args.name} | (
                {args.name: rest} if rest else {}
            )

        vault.update_vault(path, vault.master_key(os.environ), remove)
        return 0
    entries = vault.read_vault(path, vault.master_key(os.environ))
    if action == "get":
        value = _entry(entries, args.name, args.key, path)[args.key]
        sys.stdout.write(value + ("\n" if sys.stdout.isatty() else ""))
    elif action == "list":
        names = [args.name] if args.name else sorted(entries)
        for name in names:
            for key in sorted(_entry(entries, name, None, path)):
                print(name, key)
    else:  # export-secret
        print(
            vault.secret_manifest(args.name, _entry(entries, args.name, None, path), args.namespace), end=""
        )
    return 0


def _entry(entries: dict[str, dict[str, str]], name: str, key: str | None, path: Path) -> dict[str, str]:
    """The keys of entry `name`, or VaultError if it (or its `key`) is not in the vault."""
    from etl_job.runtime.vault import VaultError

    keys = entries.get(name, {})
    if not keys or (key is not None and key not in keys):
        what = f"key {key} of {name}" if key is not None and keys else name
        raise VaultError(f"no {what} in the vault {path} (etl vault list shows what is there)")
    return keys


def _value_from_stdin(keep_newline: bool) -> str:
    """A secret value: typed at a prompt without echo on a terminal, else all of stdin, less
    one trailing newline unless `keep_newline` (a file or `echo` ends with one, a password not)."""
    from etl_job.runtime.vault import VaultError

    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass("value (not echoed): ")
    else:
        try:
            value = sys.stdin.buffer.read().decode()
        except UnicodeDecodeError:
            raise VaultError("the value on stdin is not UTF-8 text") from None
        if not keep_newline:
            value = value.removesuffix("\n") if not value.endswith("\r\n") else value[:-2]
    if not value:
        raise VaultError("no value on stdin: etl vault set NAME KEY < FILE")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
