"""What a connector needs to know about the run it serves, besides its own spec block."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_job.runtime.metrics import RowCounter
from etl_job.runtime.run_progress import RunProgress


@dataclass
class Checkpoint:
    """A point of the plan where records are checked: its counter (left unattached, counting
    nothing, where a bad record fails the run) and, when rows were set aside, the dead letters
    describing them."""

    stage: str
    counter: RowCounter
    rejected: Any = None  # DataFrame of dead letters (deadletter.DEAD_LETTER_COLUMNS)
    failed: int = 0


@dataclass(frozen=True)
class SinkRefusals:
    """Rows the sink refused in a load that went on without them (tolerance all)."""

    count: int
    #: DataFrame of their dead letters (deadletter.DEAD_LETTER_COLUMNS), stage "load".
    letters: Any


@dataclass
class RunReport:
    """What connectors hand back to the run besides rows."""

    #: The incremental source's new mark, reported in the metrics when the run succeeds.
    high_water_mark: str | None = None
    #: Records a connector could not turn into rows (such as undecodable messages), set aside
    #: and counted as validation sets aside invalid rows.
    checkpoints: list[Checkpoint] = field(default_factory=list)
    #: Rows the sink refused and left out of its (successful) write; None when it refused none.
    sink_refusals: SinkRefusals | None = None


@dataclass(frozen=True)
class RunContext:
    """The run's identity and surroundings, handed to every source, transform and sink."""

    pipeline: str
    spark: Any
    #: Folder of the manifest: relative paths in the spec are taken from here.
    base_dir: Path | None = None
    #: Where credentials come from (Secret values injected as env vars, or from the local vault);
    #: never logged, and left out of the context's repr.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    #: The run's identity, as the operator numbers runs; carried in Kafka headers and dead letters.
    run_id: str = "local"
    #: errorHandling.tolerance: "none" fails the run on a bad record, "all" sets it aside.
    tolerance: str = "none"
    #: The Avro schemas of the run (a SchemaRegistry), for connectors that decode or encode Avro.
    schemas: Any = None
    #: The mark of the last successful run, for an incremental source; None reads everything.
    high_water_mark: str | None = None
    #: How many tasks run at once (session.task_slots); None: the session's default parallelism.
    task_slots: int | None = None
    #: The micro-batch of a streaming run (carried in Kafka headers); None in a batch run.
    batch_id: int | None = None
    report: RunReport = field(default_factory=RunReport)
    #: The phase under way and the retries so far, for the driver's /metrics.
    progress: RunProgress = field(default_factory=RunProgress, repr=False)
