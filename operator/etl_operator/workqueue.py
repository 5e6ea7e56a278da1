"""Pipelines waiting for a pass: each at most once in the queue, never two passes of the same
pipeline at a time, and passes asked for while one runs folded into one more after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger("etl_operator.workqueue")


class WorkQueue:
    def __init__(self, process: Callable[[Hashable], Awaitable[float | None]], workers: int = 4) -> None:
        self._process = process
        self._workers = workers
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._busy: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        """Ask for a pass over `key`, now or after `delay` seconds (the earliest ask wins)."""
        loop = asyncio.get_running_loop()
        if delay > 0:
            timer = self._timers.get(key)
            when = loop.time() + delay
            if timer is None or timer.when() > when:
                if timer is not None:
                    timer.cancel()
                self._timers[key] = loop.call_at(when, self._fire, key)
            return
        if key in self._busy:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def run(self) -> None:
        await asyncio.gather(*(self._work() for _ in range(self._workers)))

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._busy.add(key)
            try:
                requeue_after = await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # one pipeline's failure must not stop the others
                log.exception("pass over %s failed; retrying in 10 s", key)
                requeue_after = 10.0
            finally:
                self._busy.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            if requeue_after is not None:
                self.add(key, max(requeue_after, 0.5))
