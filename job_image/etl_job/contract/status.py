"""The `status` the operator writes: run metrics, run records, conditions, the circuit and the phase."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from etl_job.contract.base import SpecModel


class RunMetrics(SpecModel):
    """What one run did, as the job reports it in its termination message."""

    records_extracted: int = 0
    records_transformed: int = 0
    records_filtered: int = 0
    records_loaded: int = 0
    records_failed: int = Field(
        default=0, description="Records set aside (dead-lettered when a queue is set)."
    )
    records_failed_by_stage: dict[str, int] | None = Field(
        default=None,
        description="recordsFailed by the stage that set them aside: extract (source and validation), "
        "load (validation, and rows the sink refused); absent when none failed.",
    )
    records_late: int = Field(
        default=0, description="Streaming: events behind the watermark, dropped by a time window's rules."
    )
    retry_count: int = 0
    duration_ms: int = 0
    success_rate: float = 1.0
    high_water_mark: str | None = None
    errors: list[str] = Field(default_factory=list)


class Condition(SpecModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class ExecutorCounts(SpecModel):
    """A distributed run's executor pods, as the operator last saw them."""

    requested: int = Field(description="spec.spark.executors at launch.")
    running: int = Field(default=0, description="Executor pods running now.")
    max_running: int = Field(default=0, description="Most executor pods seen running at once.")


class RunRecord(SpecModel):
    run: int = Field(description="Run number within the pipeline.")
    pod: str | None = None
    generation: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    phase: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    metrics: RunMetrics | None = None
    executors: ExecutorCounts | None = None
    trace_id: str | None = Field(
        default=None, description="On every log line of the run, the operator's and the driver's."
    )
    replay: bool | None = Field(
        default=None,
        description="True for a replay of the dead letters (etl replay), started by the "
        "etl.sparkops.io/replay annotation.",
    )
    secrets_version: str | None = Field(
        default=None,
        description="Digest of the referenced Secrets' resourceVersions at launch (no values): a "
        "streaming driver is replaced when it changes.",
    )


class StreamingStatus(SpecModel):
    """A streaming driver's progress, as its /progress endpoint last reported it."""

    model_config = ConfigDict(extra="ignore")

    run: int | None = Field(default=None, description="The run whose driver reported these figures.")
    observed_at: str | None = Field(default=None, description="When the operator last read them.")
    last_batch_id: int | None = None
    last_batch_time: str | None = Field(default=None, description="When the last micro-batch completed.")
    batches: int = Field(default=0, description="Micro-batches this driver completed.")
    input_rows_per_second: float = 0.0
    processed_rows_per_second: float = 0.0
    batch_duration_ms: int = 0
    watermark: str | None = Field(default=None, description="Event-time watermark of a windowed stream.")
    records_extracted: int = 0
    records_loaded: int = 0
    records_failed: int = 0
    records_late: int = Field(default=0, description="Events behind the watermark, dropped as late.")
    sink_breaker: str = Field(default="closed", description="The job's breaker around the sink.")
    stalled: bool = Field(default=False, description="No micro-batch completed within stallTimeoutSeconds.")
    message: str = ""


class CircuitState(StrEnum):
    closed = "Closed"
    open = "Open"
    half_open = "HalfOpen"


class CircuitStatus(SpecModel):
    state: CircuitState = CircuitState.closed
    consecutive_failures: int = 0
    opened_at: str | None = None


class Phase(StrEnum):
    pending = "Pending"
    running = "Running"
    succeeded = "Succeeded"
    failed = "Failed"
    backoff = "Backoff"
    circuit_open = "CircuitOpen"
    suspended = "Suspended"


class ETLPipelineStatus(SpecModel):
    """What the operator observed. Written only by the operator, never by users."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    current_run: RunRecord | None = None
    last_run: RunRecord | None = None
    runs: list[RunRecord] = Field(default_factory=list, description="Most recent runs, newest first.")
    run_count: int = 0
    circuit: CircuitStatus | None = None
    next_run_at: str | None = None
    high_water_mark: str | None = None
    retries: int = Field(default=0, description="Retries so far of the current run trigger.")
    backoff_until: str | None = Field(default=None, description="No launch before this time.")
    rerun_token: str | None = Field(
        default=None, description="The last value of the etl.sparkops.io/rerun annotation acted on."
    )
    replay_token: str | None = Field(
        default=None, description="The last value of the etl.sparkops.io/replay annotation acted on."
    )
    last_schedule_time: str | None = Field(default=None, description="The schedule slot last launched.")
    streaming: StreamingStatus | None = Field(
        default=None, description="A streaming pipeline's progress, refreshed every few seconds."
    )
