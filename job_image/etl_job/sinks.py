"""Sinks, keyed by `sinkType`: each writes a DataFrame as its spec block says.

Adding a sink is adding one class and registering it. The database and Kafka sinks are
registered by their own modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from etl_job.context import RunContext
from etl_job.errors import ConfigurationError, SinkRejected, first_line
from etl_job.guard import record_violation
from etl_job.paths import resolve_path
from etl_job.s3 import describe_failure, failure_text, lasting, use_connection
from etl_job.spec import S3Sink


class Sink(Protocol):
    def write(self, frame: Any, block: Any, context: RunContext) -> None:
        """Write every row of `frame`; raise SinkRejected when the target refuses."""
        ...


SINKS: dict[str, Sink] = {}


def register_sink(*sink_types: str) -> Callable[[type[Any]], type[Any]]:
    def decorate(cls: type[Any]) -> type[Any]:
        for sink_type in sink_types:
            SINKS[sink_type] = cls()
        return cls

    return decorate


def sink_for(block: Any) -> Sink:
    sink = SINKS.get(block.sink_type)
    if sink is None:
        raise ConfigurationError(f"no connector for sinkType {block.sink_type}", stage="load")
    return sink


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
