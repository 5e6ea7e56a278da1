"""`etl run` on a terminal: one line, rewritten every second, with the Spark stage under way,
its tasks, the rows read so far and the time since the run started. In place of Spark's own
progress bar, which shows tasks only; nothing is shown off a terminal or with --quiet."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class StageFigures:
    stage_id: int
    active: bool
    tasks_done: int
    tasks: int
    input_records: int


def progress_line(elapsed: float, stages: list[StageFigures]) -> str:
    """The line shown: the newest active stage (if any), rows read by all stages, elapsed time."""
    read = sum(stage.input_records for stage in stages)
    active = [stage for stage in stages if stage.active]
    parts = []
    if active:
        stage = max(active, key=lambda s: s.stage_id)
        parts.append(f"stage {stage.stage_id}: {stage.tasks_done}/{stage.tasks} tasks")
    parts.append(f"{read:,} rows read")
    parts.append(f"{int(elapsed)} s")
    return " · ".join(parts)


def stage_figures(spark: Any) -> list[StageFigures]:
    """Every stage of the session so far, from Spark's status store (through the JVM)."""
    figures = []
    gateway = spark.sparkContext._gateway
    # stageList(statuses: all, details, withSummaries, quantiles, taskStatus): Scala's defaults
    # are not seen through py4j, so each is given.
    no_quantiles = gateway.new_array(gateway.jvm.double, 0)
    stages = spark._jsc.sc().statusStore().stageList(None, False, False, no_quantiles, None).iterator()
    while stages.hasNext():
        stage = stages.next()
        figures.append(
            StageFigures(
                stage_id=int(stage.stageId()),
                active=str(stage.status().toString()) == "ACTIVE",
                tasks_done=int(stage.numCompleteTasks()),
                tasks=int(stage.numTasks()),
                input_records=int(stage.inputRecords()),
            )
        )
    return figures


class TerminalProgress:
    """A thread drawing progress_line on `stream` until stopped; the line is cleared at the end."""

    def __init__(self, spark: Any, stream: TextIO = sys.stderr, interval: float = 1.0) -> None:
        self._spark = spark
        self._stream = stream
        self._interval = interval
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._draw, name="progress", daemon=True)

    def __enter__(self) -> TerminalProgress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._stream.write("\r\033[K")
        self._stream.flush()

    def _draw(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                line = progress_line(time.monotonic() - self._started, stage_figures(self._spark))
            except Exception:  # noqa: BLE001 - the JVM going away at the end is no reason to fail
                return
            self._stream.write(f"\r\033[K{line}")
            self._stream.flush()
