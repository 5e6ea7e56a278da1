"""The `errorHandling` block: tolerance, retries, the circuit breaker and the dead-letter queue."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from etl_job.contract.base import Name, SpecModel, cel, cel_rules
from etl_job.contract.connections import KafkaSecurity, S3Connection


class Tolerance(StrEnum):
    none = "none"
    all = "all"


class RetryStrategy(StrEnum):
    exponential = "exponential"
    fixed = "fixed"
    none = "none"


class RetryPolicy(SpecModel):
    strategy: RetryStrategy = RetryStrategy.exponential
    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_delay_seconds: float = Field(default=1.0, ge=0)
    max_delay_seconds: float = Field(default=60.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    jitter: bool = True

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryPolicy:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("maxDelaySeconds must be >= initialDelaySeconds")
        return self

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.maxDelaySeconds) || !has(self.initialDelaySeconds) || "
                "self.maxDelaySeconds >= self.initialDelaySeconds",
                "maxDelaySeconds must be >= initialDelaySeconds",
                ".maxDelaySeconds",
            ),
        )
    )


class CircuitBreakerPolicy(SpecModel):
    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout_seconds: int = Field(default=60, ge=1)
    half_open_max_attempts: int = Field(default=1, ge=1)


class KafkaDeadLetter(SpecModel):
    type: Literal["kafka"]
    bootstrap_servers: Name
    topic: Name
    security: KafkaSecurity | None = None


class S3DeadLetter(SpecModel):
    type: Literal["s3"]
    path: Name
    partition_by: Literal["date", "none"] = "date"
    buffer_size: int = Field(default=500, ge=1)
    format: Literal["parquet", "json"] = "parquet"
    s3: S3Connection | None = Field(
        default=None, description="Endpoint, region and credentials of the store."
    )


DeadLetter = Annotated[KafkaDeadLetter | S3DeadLetter, Field(discriminator="type")]


class ErrorHandling(SpecModel):
    tolerance: Tolerance = Field(
        default=Tolerance.none,
        description="none: a bad record fails the run; all: it goes to the dead-letter queue.",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit_breaker: CircuitBreakerPolicy = Field(default_factory=CircuitBreakerPolicy)
    dead_letter: DeadLetter | None = None
