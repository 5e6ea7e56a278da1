"""The ETLPipeline object: its spec, put together from the blocks the other contract modules
define, and the whole manifest as `kubectl apply` takes it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from etl_job.contract.base import SpecModel, cel, cel_rules
from etl_job.contract.connections import SecretKeyRef
from etl_job.contract.error_handling import ErrorHandling, Tolerance
from etl_job.contract.extract import Source
from etl_job.contract.load import Sink
from etl_job.contract.settings import (
    ConcurrencyPolicy,
    Logging,
    Mode,
    Performance,
    RestartPolicy,
    SparkSettings,
)
from etl_job.contract.status import ETLPipelineStatus
from etl_job.contract.streaming import StreamingSettings, streaming_problems
from etl_job.contract.transforms import MAX_TRANSFORMS, Transform

STREAMING_NEEDS_BLOCK = "mode streaming needs streaming (checkpointLocation, trigger)"
STREAMING_BLOCK_IN_BATCH = "streaming is only for mode streaming"
STREAMING_SOURCES = (
    "a streaming pipeline reads Kafka or S3: extract.sourceType PostgreSQL and MySQL are batch only"
)


class ETLPipelineSpec(SpecModel):
    """The desired pipeline: where data comes from, what happens to it, where it goes."""

    mode: Mode = Field(default=Mode.batch, description="batch or streaming.")
    schedule: str | None = Field(
        default=None,
        min_length=1,
        description="Cron schedule of batch runs; absent: once per spec generation.",
    )
    suspend: bool = Field(default=False, description="Pause scheduling new runs.")
    extract: Source
    # Bounded so the API server can bound the cost of the CEL rules on each transform.
    transforms: list[Transform] = Field(default_factory=list, max_length=MAX_TRANSFORMS)
    load: Sink
    streaming: StreamingSettings | None = Field(
        default=None, description="Checkpoint, trigger and rate limits; required in mode streaming."
    )
    error_handling: ErrorHandling = Field(default_factory=ErrorHandling)
    performance: Performance = Field(default_factory=Performance)
    logging: Logging = Field(default_factory=Logging)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="When a scheduled run is due while one runs: Forbid skips it, Replace stops "
        "the running one, Allow runs both.",
    )
    successful_runs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Driver pods of succeeded runs kept for their logs."
    )
    failed_runs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Driver pods of failed runs kept for their logs."
    )
    start_timeout_seconds: int = Field(
        default=600,
        ge=10,
        description="A driver not running after this long fails its run (image, scheduling).",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="A batch run still running after this long is stopped and failed."
    )
    pod_template: dict[str, Any] = Field(
        default_factory=dict,
        description="Merged into the driver pod: metadata (labels, annotations) and spec (volumes, "
        "volumeMounts of the driver container via spec.containers[name=driver], tolerations, "
        "affinity, nodeSelector, priorityClassName, ...).",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> ETLPipelineSpec:
        if self.schedule is not None and self.mode != Mode.batch:
            raise ValueError("schedule is only for batch pipelines")
        if self.error_handling.tolerance == Tolerance.all and self.error_handling.dead_letter is None:
            raise ValueError("errorHandling.tolerance all needs errorHandling.deadLetter")
        if self.mode == Mode.streaming:
            if self.streaming is None:
                raise ValueError(STREAMING_NEEDS_BLOCK)
            problems = streaming_problems(self)
            if problems:
                raise ValueError("Spark cannot run this pipeline on a stream: " + "; ".join(problems))
        elif self.streaming is not None:
            raise ValueError(STREAMING_BLOCK_IN_BATCH)
        else:
            for index, transform in enumerate(self.transforms):
                if getattr(transform, "refresh_interval", None) is not None:
                    raise ValueError(
                        f"transforms[{index}].refreshInterval is for streaming pipelines: "
                        "a batch run reads the right side once"
                    )
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.schedule) || !has(self.mode) || self.mode == 'batch'",
                "schedule is only for batch pipelines",
                ".schedule",
            ),
            cel(
                "!has(self.errorHandling) || !has(self.errorHandling.tolerance) || "
                "self.errorHandling.tolerance != 'all' || has(self.errorHandling.deadLetter)",
                "errorHandling.tolerance all needs errorHandling.deadLetter",
                ".errorHandling",
            ),
            cel(
                "!has(self.mode) || self.mode != 'streaming' || has(self.streaming)",
                STREAMING_NEEDS_BLOCK,
                ".streaming",
            ),
            cel(
                "(has(self.mode) && self.mode == 'streaming') || !has(self.streaming)",
                STREAMING_BLOCK_IN_BATCH,
                ".streaming",
            ),
            cel(
                "!has(self.mode) || self.mode != 'streaming' || "
                "self.extract.sourceType == 'Kafka' || self.extract.sourceType == 'S3'",
                STREAMING_SOURCES,
                ".extract.sourceType",
            ),
        )
    )

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every Secret key the pipeline reads, in spec order, for the operator to check and inject."""
        refs: list[SecretKeyRef] = []
        _collect_secret_refs(self, refs)
        return refs


def _collect_secret_refs(node: Any, refs: list[SecretKeyRef]) -> None:
    if isinstance(node, SecretKeyRef):
        refs.append(node)
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            _collect_secret_refs(getattr(node, name), refs)
    elif isinstance(node, list | tuple):
        for item in node:
            _collect_secret_refs(item, refs)


class ETLPipeline(SpecModel):
    """A whole manifest, as `kubectl apply` takes it."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["etl.sparkops.io/v1alpha1"] = "etl.sparkops.io/v1alpha1"
    kind: Literal["ETLPipeline"] = "ETLPipeline"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ETLPipelineSpec
    status: ETLPipelineStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "pipeline"))
