"""The file source: rows from files on any Hadoop filesystem (s3a://, file://, local paths)."""

from __future__ import annotations

from typing import Any

from etl_job.connectors.files.csv_files import MULTI_LINE, file_sizes, parse_whole_files
from etl_job.connectors.files.paths import resolve_path
from etl_job.connectors.files.s3 import describe_failure, failure_text, lasting, use_connection
from etl_job.connectors.registry import register_source
from etl_job.contract import S3Source, SourceUnavailable, first_line
from etl_job.runtime.context import RunContext


@register_source("S3")
class FileSource:
    """Files on any Hadoop filesystem: s3a://, file://, local paths."""

    def read(self, block: S3Source, context: RunContext) -> Any:
        path = resolve_path(block.path, context.base_dir)
        bucket = use_connection(context.spark, path, block.s3, context.env, stage="extract")
        reader = context.spark.read.format(block.format)
        # Without a declared schema, CSV columns stay strings: validation casts them and
        # reports values that do not cast, where inference would turn them into nulls.
        for key, value in block.options.items():
            reader = reader.option(key, value)
        try:
            frame = reader.load(path)
            if block.format == "csv" and _whole_files(frame, block.options, context):
                # Same columns, so no second look at the header; Spark lists the files again.
                frame = reader.option(MULTI_LINE, "true").schema(frame.schema).load(path)
            return frame
        except Exception as failed:  # noqa: BLE001 - Spark reports a missing path as a generic error
            details = failure_text(failed)
            store_failure = bucket and describe_failure(details, bucket, block.s3)
            if store_failure:
                raise SourceUnavailable(
                    store_failure, stage="extract", field="path", permanent=lasting(details)
                ) from None
            text = first_line(failed)
            if "PATH_NOT_FOUND" in text or "does not exist" in text:
                raise SourceUnavailable(
                    f"path {block.path} does not exist", stage="extract", field="path"
                ) from None
            raise SourceUnavailable(f"cannot read {block.path}: {text}", stage="extract") from None


def _whole_files(frame: Any, options: dict[str, str], context: RunContext) -> bool:
    """Whether the CSV files `frame` reads are best parsed whole (csv_files)."""
    sizes = file_sizes(frame)
    slots = context.task_slots or int(context.spark.sparkContext.defaultParallelism)
    return sizes is not None and parse_whole_files(options, sizes, slots)
