"""Pipelines waiting for a pass: each at most once in the queue, never two passes of the same
pipeline at a time, and passes asked for while one runs folded into one more after it.

Asks from watch events come first, asks from timers (a backoff ending, a schedule, a re-check)
after them: a burst of re-checks must not hold back the first launch of a new pipeline, and a
re-check lost nothing by waiting for the news that came in meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger("etl_operator.workqueue")

#: Tells, when the pass would start, that an ask has become void (the event behind it showed
#: only what a pass already saw); asked this late so the pass in flight has recorded its writes.
Moot = Callable[[], bool]

#: Priorities: lower first.
_EVENT, _TIMER = 0, 1


class WorkQueue:
    def __init__(self, process: Callable[[Hashable], Awaitable[float | None]], workers: int = 4) -> None:
        self._process = process
        self._workers = workers
        #: (priority, order, key). A key asked for again at a higher priority gets a second
        #: entry; the one that comes out later finds the key's entry taken and is dropped.
        self._queue: asyncio.PriorityQueue[tuple[int, int, Hashable]] = asyncio.PriorityQueue()
        self._order = itertools.count()
        #: Asks since the key's last pass started: None if one of them holds for sure, else
        #: the tests that may void each of them; and the highest priority among them.
        self._asks: dict[Hashable, list[Moot] | None] = {}
        self._priority: dict[Hashable, int] = {}
        #: The priority of the key's live entry in the queue.
        self._entry: dict[Hashable, int] = {}
        self._busy: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable, delay: float = 0.0, moot: Moot | None = None) -> None:
        """Ask for a pass over `key`, now or after `delay` seconds (the earliest ask wins).
        Asks with `moot` fold into one pass like any other, which is skipped if, when it would
        start, every ask folded into it is moot."""
        loop = asyncio.get_running_loop()
        if delay > 0:
            timer = self._timers.get(key)
            when = loop.time() + delay
            if timer is None or timer.when() > when:
                if timer is not None:
                    timer.cancel()
                self._timers[key] = loop.call_at(when, self._fire, key)
            return
        self._ask(key, moot, _EVENT)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._ask(key, None, _TIMER)

    def _ask(self, key: Hashable, moot: Moot | None, priority: int) -> None:
        if key in self._asks:
            tests = self._asks[key]
            if tests is not None:
                if moot is None:
                    self._asks[key] = None
                else:
                    tests.append(moot)
            self._priority[key] = min(self._priority[key], priority)
        else:
            self._asks[key] = None if moot is None else [moot]
            self._priority[key] = priority
        if key not in self._busy:  # a busy key is queued again when its pass ends
            self._enqueue(key)

    def _enqueue(self, key: Hashable) -> None:
        priority = self._priority[key]
        if self._entry.get(key, _TIMER + 1) > priority:
            self._entry[key] = priority
            self._queue.put_nowait((priority, next(self._order), key))

    async def run(self) -> None:
        await asyncio.gather(*(self._work() for _ in range(self._workers)))

    async def _work(self) -> None:
        while True:
            priority, _, key = await self._queue.get()
            if self._entry.get(key) != priority:
                continue  # superseded by an entry of a higher priority, already taken
            del self._entry[key]
            del self._priority[key]
            tests = self._asks.pop(key)
            if tests is not None and all(moot() for moot in tests):
                continue
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
            if key in self._asks:
                self._enqueue(key)
            if requeue_after is not None:
                self.add(key, max(requeue_after, 0.5))
