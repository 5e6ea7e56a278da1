"""The file sink: rows written as files on any Hadoop filesystem, optionally partitioned."""

from __future__ import annotations

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
        try:
            writer.save(path)
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


def _raised_by_job(failed: BaseException) -> bool:
    """A write also runs the plan before it: a bad record found on the way is not the sink's fault."""
    return record_violation(failed) is not None
