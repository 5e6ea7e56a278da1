"""The run settings: performance, logging, Spark resources, restart and concurrency policies, mode."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from etl_job.contract.base import Name, SparkMemory, SpecModel, cel, cel_rules


class Performance(SpecModel):
    batch_size: int = Field(
        default=10000, ge=1, description="Rows per JDBC batch of a database sink without its own batchSize."
    )
    parallelism: int | None = Field(default=None, ge=1, description="Partitions to repartition to.")


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Logging(SpecModel):
    level: LogLevel = LogLevel.INFO
    structured: bool = Field(default=True, description="One JSON object per log line.")


class SparkResources(SpecModel):
    cores: int = Field(default=1, ge=1, le=64)
    memory: SparkMemory = "2g"


class SparkSettings(SpecModel):
    executors: int = Field(
        default=0, ge=0, le=1000, description="0: the job runs in local mode in the driver pod."
    )
    driver: SparkResources = Field(default_factory=SparkResources)
    executor: SparkResources = Field(default_factory=SparkResources)
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark configuration.")
    image: str | None = Field(default=None, description="Job image; the operator's default when absent.")
    service_account: Name | None = Field(
        default=None,
        description="ServiceAccount of the driver pod (it creates executor pods when executors > 0); "
        "the operator's default when absent.",
    )


class RestartPolicyType(StrEnum):
    never = "Never"
    on_failure = "OnFailure"
    always = "Always"


class RestartPolicy(SpecModel):
    """What happens after a run ends: restart it, with exponential backoff and jitter, or not."""

    type: RestartPolicyType = Field(
        default=RestartPolicyType.on_failure,
        description="Never: a failed run stays failed. OnFailure: a failed run is retried. "
        "Always: streaming drivers are restarted whenever they end.",
    )
    max_retries: int = Field(
        default=3, ge=0, le=1000, description="Retries of one run trigger (a generation, a schedule slot)."
    )
    initial_backoff_seconds: int = Field(default=10, ge=1, description="Delay before the first retry.")
    max_backoff_seconds: int = Field(default=300, ge=1, description="Cap of the growing delay.")
    backoff_multiplier: float = Field(default=2.0, ge=1.0, le=10.0)

    @model_validator(mode="after")
    def _backoff_ordered(self) -> RestartPolicy:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("maxBackoffSeconds must be >= initialBackoffSeconds")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.maxBackoffSeconds) || !has(self.initialBackoffSeconds) || "
                "self.maxBackoffSeconds >= self.initialBackoffSeconds",
                "maxBackoffSeconds must be >= initialBackoffSeconds",
                ".maxBackoffSeconds",
            ),
        )
    )


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"  # upper case: `replace` would shadow str.replace
    ALLOW = "Allow"


class Mode(StrEnum):
    batch = "batch"
    streaming = "streaming"
