"""What a batch run is doing while it runs, as its driver's /metrics shows it: the phase under way,
how long each phase took (or has taken so far), the attempts retried, and the run's record counts
once its load has them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

#: The phases of a batch run, in order. Everything before the load is planned lazily, so
#: `extract` opens the source (schema, file listing, offsets) and `load` is the one pass that
#: reads, validates, transforms and writes the rows.
PHASES = ("start", "extract", "load", "dead-letter")


class RunProgress:
    """Filled by the run's thread, read by the health server's: each value is replaced whole."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._spans: dict[str, tuple[float, float | None]] = {}
        self.retries = 0
        #: recordsExtracted, recordsLoaded, ... of the run's metrics, once it has them.
        self.records: Mapping[str, int] = {}

    def begin(self, name: str) -> None:
        """Phase `name` starts now, and the one under way ends; a phase begun again (a streaming
        run's next micro-batch) starts its clock again."""
        with self._lock:
            now = self._clock()
            self._end(now)
            self._spans[name] = (now, None)

    def end(self) -> None:
        """The phase under way ends (the run is over, or failed within it)."""
        with self._lock:
            self._end(self._clock())

    def _end(self, now: float) -> None:
        for name, (start, end) in self._spans.items():
            if end is None:
                self._spans[name] = (start, now)

    def retried(self) -> None:
        self.retries += 1

    def durations(self) -> dict[str, float]:
        """Seconds per phase begun: its whole length when it ended, its length so far when not."""
        now = self._clock()
        with self._lock:
            return {
                name: (end if end is not None else now) - start for name, (start, end) in self._spans.items()
            }

    def running(self) -> str | None:
        """The phase under way, if any."""
        with self._lock:
            return next((name for name, (_, end) in self._spans.items() if end is None), None)
