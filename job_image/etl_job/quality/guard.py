"""Failing a run on its first bad record, inside the same pass over the data that loads it.

With tolerance `none` a bad record must fail the run and be named. Counting bad rows first
would read the data twice; instead the plan carries a filter that raises on the first bad row
(Spark's `raise_error`), so the run stops there and nothing is committed to a file sink."""

from __future__ import annotations

from typing import Any

MARKER = "[ETL_RECORD_VIOLATION]"


def fail_where(frame: Any, broken: Any, row_label: Any, errors: Any) -> Any:
    """`frame` unchanged where the boolean `broken` is false or null; raise on the first row
    where it is true, naming it by `row_label` with its `errors` (array<string>, computed for
    that row alone).

    A filter, not a projection: the optimizer may drop an unused column, never a filter."""
    from pyspark.sql import functions as F

    message = F.concat(F.lit(MARKER + " "), row_label, F.lit(": "), F.array_join(errors, "; "))
    return frame.where(F.when(broken, F.raise_error(message)).otherwise(F.lit(True)))


def record_violation(failed: BaseException) -> str | None:
    """The bad-record message inside a Spark failure, or None when it is some other failure."""
    text = str(failed)
    start = text.find(MARKER)
    if start < 0:
        return None
    line = text[start + len(MARKER) :].strip().splitlines()[0]
    # Spark appends its own context to the message: the SQL state, then a stack trace.
    for end_marker in (" SQLSTATE", "\tat "):
        cut = line.find(end_marker)
        if cut > 0:
            line = line[:cut]
    return line.strip().rstrip(".")
