"""The file sink: rows written as files on any Hadoop filesystem, optionally partitioned."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from etl_job.connectors.files.paths import resolve_path
from etl_job.connectors.files.s3 import describe_failure, failure_text, lasting, use_connection
from etl_job.connectors.registry import register_sink
from etl_job.contract import ConfigurationError, S3Sink, SinkRejected, first_line
from etl_job.quality.guard import record_violation
from etl_job.runtime.context import RunContext


@register_sink("S3")
class FileSink:
    """Files on any Hadoop filesystem, optionally partitioned into folders by columns."""

    def write(self, frame: Any, block: S3Sink, context: RunContext) -> None:
        missing = [column for column in block.partition_by if column not in frame.columns]
        if missing:
            raise ConfigurationError(
                f"partition column {missing[0]} is not in the output (columns: {', '.join(frame.columns)})",
                stage="load",
                field="partitionBy",
            )
        writer = frame.write.format(block.format).mode(str(block.write_mode))
        for key, value in self.writer_options(block).items():
            writer = writer.option(key, value)
        if block.partition_by:
            writer = writer.partitionBy(*block.partition_by)
        path = resolve_path(block.path, context.base_dir)
        bucket = use_connection(context.spark, path, block.s3, context.env, stage="load")
        staging = staging_path(path, context.run_id) if replaces_whole_path(block) else None
        try:
            if staging is None:
                writer.save(path)
            else:
                # Spark deletes the old files before it writes the new ones, so a run failing on
                # the way would leave nothing: the new output is written beside the old, whole,
                # then put in its place.
                try:
                    writer.mode("overwrite").save(staging)
                except Exception:
                    _delete(context.spark, staging)
                    raise
                _replace(context.spark, staging, path)
        except Exception as failed:
            if _raised_by_job(failed):
                raise
            details = failure_text(failed)
            store_failure = bucket and describe_failure(details, bucket, block.s3)
            if store_failure:
                raise SinkRejected(
                    store_failure, stage="load", field="path", permanent=lasting(details)
                ) from None
            text = first_line(failed)
            raise SinkRejected(f"cannot write {block.path}: {text}", stage="load") from failed

    @staticmethod
    def writer_options(block: S3Sink) -> dict[str, str]:
        """The Spark writer's options for the block; the user's own options come last and win."""
        options: dict[str, str] = {}
        if block.compression:
            options["compression"] = block.compression
        # Always given, so a session-wide spark.sql.sources.partitionOverwriteMode cannot turn
        # the spec's static (replace the whole path) into dynamic, or back.
        options["partitionOverwriteMode"] = block.partition_overwrite_mode
        return {**options, **block.options}


def replaces_whole_path(block: S3Sink) -> bool:
    """An overwrite that Spark runs by deleting the path first: every static one (a dynamic one
    with partitions stages its partitions itself and replaces them at its commit)."""
    return str(block.write_mode) == "overwrite" and (
        not block.partition_by or block.partition_overwrite_mode == "static"
    )


def staging_path(path: str, run_id: str) -> str | None:
    """A hidden folder beside `path`, on the same filesystem and in the same bucket, that readers
    of the parent skip (Hadoop ignores names starting with '.'); None for a bucket's root, which
    has nothing beside it."""
    trimmed = path.rstrip("/")
    parent, _, name = trimmed.rpartition("/")
    if not name or not parent or parent.endswith(":/") or parent.endswith(":"):
        return None
    token = "".join(c if c.isalnum() or c in "-_" else "_" for c in run_id)
    return f"{parent}/.{name}.etl-staging-{token}-{secrets.token_hex(4)}"


def _filesystem(spark: Any, path: str) -> tuple[Any, Any]:
    hadoop_path = spark._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()), hadoop_path


def _replace(spark: Any, staging: str, path: str) -> None:
    """Put the whole new output in place of the old: a rename where the filesystem has one (local,
    HDFS), a copy by the S3A client otherwise."""
    filesystem, target = _filesystem(spark, path)
    _, staged = _filesystem(spark, staging)
    if filesystem.exists(target):
        filesystem.delete(target, True)
    filesystem.mkdirs(target.getParent())
    if not filesystem.rename(staged, target):
        raise SinkRejected(f"cannot move the new output from {staging} to {path}", stage="load")


def _delete(spark: Any, path: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the failure that got here is the one to report
        filesystem, hadoop_path = _filesystem(spark, path)
        filesystem.delete(hadoop_path, True)


def _raised_by_job(failed: BaseException) -> bool:
    """A write also runs the plan before it: a bad record found on the way is not the sink's fault."""
    return record_violation(failed) is not None
