"""A streaming driver's progress report turned into `status.streaming`, pure.

The driver answers GET /progress (etl_job.streaming) with its figures; sync.py fetches them and
reconcile calls `streaming_status` with the status it has. Figures that have not changed keep the
status as it was, so an idle stream writes nothing to the API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from etl_job.contract import StreamingStatus
from etl_operator.observe import format_time

#: How often a running streaming driver's progress is read: "every few seconds", not per batch.
PROGRESS_INTERVAL_SECONDS = 5.0

#: Report keys that are not figures of the status (ready is the probe's, breaker is renamed).
_REPORT_ONLY = ("ready", "lastBatchAgeSeconds", "breaker")


def streaming_status(
    previous: StreamingStatus | None, run: int, report: Mapping[str, Any], now: datetime
) -> StreamingStatus:
    """The status for `run` from its driver's report; the previous one when nothing changed."""
    figures = {k: v for k, v in report.items() if k not in _REPORT_ONLY}
    figures["sinkBreaker"] = report.get("breaker", "closed")
    try:
        new = StreamingStatus.model_validate({**figures, "run": run})
    except ValidationError:
        return previous or StreamingStatus(run=run, message="the driver's progress report is unreadable")
    if previous is not None and previous.run == run and _same_figures(previous, new):
        return previous
    age = report.get("lastBatchAgeSeconds")
    if isinstance(age, int):
        # The batch's time once, when it is first seen: a time recomputed on each read would
        # move by a second now and then and cost a write for nothing.
        if previous is not None and (previous.run, previous.last_batch_id) == (run, new.last_batch_id):
            last_batch_time = previous.last_batch_time
        else:
            last_batch_time = format_time(now - timedelta(seconds=age))
        new = new.model_copy(update={"last_batch_time": last_batch_time})
    return new.model_copy(update={"observed_at": format_time(now)})


def _same_figures(old: StreamingStatus, new: StreamingStatus) -> bool:
    keep = {"observed_at", "last_batch_time"}
    return old.model_dump(exclude=keep) == new.model_dump(exclude=keep)
