"""Run metrics: counted inside Spark's own pass over the data, reported as one JSON document
to the log and to the container's termination message, where the operator reads them."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from etl_job.contract import RunMetrics

#: Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096


class RowCounter:
    """Counts the rows that flow through a point of the plan, with no extra pass: a Spark
    Observation, read after the action that ran the plan."""

    def __init__(self, name: str) -> None:
        from pyspark.sql import Observation

        self.name = name
        self._observation = Observation(name)
        #: The frame `attach` returned: the rows this counter counts, as they flow on.
        self.observed: Any = None

    def attach(self, frame: Any, **extra: Any) -> Any:
        from pyspark.sql import functions as F

        self.observed = frame.observe(
            self._observation,
            F.count(F.lit(1)).alias("rows"),
            *[expression.alias(alias) for alias, expression in extra.items()],
        )
        return self.observed

    def values(self) -> dict[str, int]:
        """The counts; call only after an action over the observed plan has succeeded."""
        if self.observed is None:
            return {}
        observed = self._observation.get
        return {key: int(value or 0) for key, value in observed.items()}

    @property
    def rows(self) -> int:
        return self.values().get("rows", 0)


def success_rate(extracted: int, failed: int) -> float:
    """The share of extracted records that were not dead-lettered; 1.0 for an empty run."""
    if extracted <= 0:
        return 1.0
    return round(max(extracted - failed, 0) / extracted, 6)


def termination_message(metrics: RunMetrics, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Metrics as compact JSON that fits the limit: error texts are shortened, then dropped
    from the end, never the counts."""
    document = metrics.model_dump(mode="json", exclude_none=True)
    errors: list[str] = list(document.get("errors", []))
    for width in (500, 200, 80):
        document["errors"] = [text[:width] for text in errors]
        text = json.dumps(document, separators=(",", ":"))
        if len(text.encode()) <= limit:
            return text
    while errors:
        errors.pop()
        document["errors"] = [text[:80] for text in errors] + ["(more errors omitted)"]
        text = json.dumps(document, separators=(",", ":"))
        if len(text.encode()) <= limit:
            return text
    document["errors"] = []
    return json.dumps(document, separators=(",", ":"))


def write_termination_message(path: Path, metrics: RunMetrics) -> None:
    """Best effort: a missing /dev/termination-log outside a pod is not an error."""
    with contextlib.suppress(OSError):
        path.write_text(termination_message(metrics))
