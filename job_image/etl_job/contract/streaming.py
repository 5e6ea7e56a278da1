"""The `streaming` block of a streaming pipeline (checkpoint, trigger, rate limits), and the rules
that say which pipelines Spark can run on a stream."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from etl_job.contract.base import Duration, Name, SpecModel, cel, cel_rules
from etl_job.contract.connections import S3Connection


class StreamingTrigger(SpecModel):
    """When a micro-batch starts: every processingTime, or once over what is there (availableNow)."""

    processing_time: Duration | None = Field(
        default=None, description='Start a micro-batch every interval, such as "10 seconds".'
    )
    available_now: bool = Field(
        default=False, description="Process everything available now, in micro-batches, then stop."
    )

    @model_validator(mode="after")
    def _one_trigger(self) -> StreamingTrigger:
        if (self.processing_time is not None) == self.available_now:
            raise ValueError("give exactly one of processingTime or availableNow: true")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "has(self.processingTime) != (has(self.availableNow) && self.availableNow)",
                "give exactly one of processingTime or availableNow: true",
            ),
        )
    )


def _default_trigger() -> StreamingTrigger:
    return StreamingTrigger(processing_time="10 seconds")


class StreamingSettings(SpecModel):
    """Where a streaming run keeps its progress and how fast it reads."""

    checkpoint_location: Name = Field(
        description="Durable folder of the query's offsets and state: s3a://bucket/checkpoints/x "
        "(with `s3`), or a local path for `etl run`. A restart resumes from it."
    )
    s3: S3Connection | None = Field(
        default=None, description="Endpoint, region and credentials of the checkpoint's store."
    )
    trigger: StreamingTrigger = Field(default_factory=_default_trigger)
    max_offsets_per_trigger: int | None = Field(
        default=None, ge=1, description="Kafka source: at most this many messages per micro-batch."
    )
    max_files_per_trigger: int | None = Field(
        default=None, ge=1, description="S3 source: at most this many new files per micro-batch."
    )
    stall_timeout_seconds: int = Field(
        default=300,
        ge=5,
        description="The driver reports not ready (/readyz) when no micro-batch has completed "
        "for this long while data waits.",
    )
    health_port: int = Field(
        default=8080, ge=1024, le=65535, description="Port of the driver's /healthz and /readyz."
    )


def streaming_problems(spec: Any) -> list[str]:
    """Why Spark cannot run this pipeline on a stream: one reason per offending block, empty when
    it can. `spec` is an ETLPipelineSpec in mode streaming."""
    problems: list[str] = []
    if spec.extract.source_type not in ("Kafka", "S3"):
        problems.append(
            f"extract.sourceType {spec.extract.source_type}: a streaming pipeline reads Kafka or S3"
        )
    stateful = [
        index for index, t in enumerate(spec.transforms) if t.transform_type in ("Aggregation", "Window")
    ]
    for index, transform in enumerate(spec.transforms):
        where = f"transforms[{index}] ({transform.transform_type})"
        if transform.transform_type == "Window" and transform.functions:
            problems.append(
                f"{where}: analytic window functions are not supported on a stream; "
                "use a time window (timeColumn, windowDuration, watermark)"
            )
        if transform.transform_type == "Window" and transform.time_column and not transform.watermark:
            problems.append(f"{where}: a time window on a stream needs watermark, or its state grows forever")
        if transform.transform_type == "Join" and transform.join_type in ("right", "full"):
            problems.append(
                f"{where}: joinType {transform.join_type} is not supported with the stream on the left "
                "(inner, left, semi and anti are)"
            )
    for index, transform in enumerate(spec.transforms):
        if (
            transform.transform_type == "Join"
            and transform.refresh_interval
            and stateful
            and index < stateful[0]
        ):
            problems.append(
                f"transforms[{index}] (Join): refreshInterval applies to joins after the aggregation; "
                "before it, Spark reads the right side in every micro-batch"
            )
    if len(stateful) > 1:
        problems.append(
            f"transforms[{stateful[1]}]: only one aggregation or time window per stream "
            "(Spark cannot chain streaming aggregations)"
        )
    if stateful and spec.load.write_mode != "upsert" and not _final_windows_only(spec, stateful[0]):
        problems.append(
            f"transforms[{stateful[0]}]: a streaming aggregation emits updated rows, so load needs "
            "writeMode upsert with the grouping columns as primaryKey (or use a time window with "
            "watermark, whose final rows are appended once)"
        )
    return problems


def _final_windows_only(spec: Any, index: int) -> bool:
    transform = spec.transforms[index]
    return transform.transform_type == "Window" and bool(transform.watermark)
