"""The operator's limit of concurrent runs across every pipeline it watches
(ETL_OPERATOR_MAX_CONCURRENT_RUNS), so a burst of pipelines cannot flood the cluster with drivers.

Alive driver pods are learnt from pod events. A pass that wants to launch takes a slot first,
under a lock, so passes in parallel worker threads never launch past the limit; a pass that
finds none leaves its pipeline waiting, and the next run to end wakes the waiting ones."""

from __future__ import annotations

import threading
from collections.abc import Hashable

_ENDED_PHASES = frozenset({"Succeeded", "Failed"})


def pod_alive(phase: str | None, deleted: bool) -> bool:
    """A driver holds a slot until it ended or is gone (a pod being deleted still runs)."""
    return not deleted and phase not in _ENDED_PHASES


class RunSlots:
    def __init__(self, limit: int) -> None:
        #: 0: no limit.
        self.limit = limit
        self._lock = threading.Lock()
        self._alive: set[str] = set()
        self._waiting: set[Hashable] = set()

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._alive)

    def try_take(self, pod: str) -> bool:
        """Count `pod` (namespace/name) as alive if a slot is free; always when there is no limit."""
        with self._lock:
            if self.limit and pod not in self._alive and len(self._alive) >= self.limit:
                return False
            self._alive.add(pod)
            return True

    def give_back(self, pod: str) -> None:
        """A slot taken for a launch that did not happen."""
        with self._lock:
            self._alive.discard(pod)

    def observe(self, pod: str, alive: bool) -> list[Hashable]:
        """Note a driver pod's state; when that frees a slot, the pipelines waiting for one
        (each to be given a pass; the first to come takes the slot)."""
        with self._lock:
            if alive:
                self._alive.add(pod)
                return []
            if pod not in self._alive:
                return []
            self._alive.discard(pod)
            waiting, self._waiting = list(self._waiting), set()
            return waiting

    def wait(self, pipeline: Hashable) -> None:
        with self._lock:
            self._waiting.add(pipeline)
