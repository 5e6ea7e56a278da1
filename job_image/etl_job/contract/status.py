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
    records_failed: int = 0
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
    secrets_version: str | None = Field(
        default=None,
        description="Digest of the referenced Secrets' resourceVersions at launch (no values): a "
        "streaming driver is replaced when it changes.",
    )


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
    last_schedule_time: str | None = Field(default=None, description="The schedule slot last launched.")
