"""The work queue folds repeated asks and never runs two passes of one pipeline at once."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from etl_operator.workqueue import WorkQueue


def test_asks_while_queued_or_busy_fold_into_one_more_pass() -> None:
    async def scenario() -> tuple[list[Hashable], int]:
        passes: list[Hashable] = []
        running = 0
        most = 0

        async def process(key: Hashable) -> float | None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            passes.append(key)
            await asyncio.sleep(0.05)
            running -= 1
            return None

        queue = WorkQueue(process, workers=4)
        worker = asyncio.create_task(queue.run())
        queue.add("a")
        queue.add("a")  # folded: already queued
        await asyncio.sleep(0.01)
        queue.add("a")  # busy: one more pass after this one
        queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.3)
        worker.cancel()
        return passes, most

    passes, most = asyncio.run(scenario())
    assert sorted(map(str, passes)) == ["a", "a", "b"]
    assert most == 2  # a and b ran side by side, never two a's


def test_a_pass_can_ask_for_the_next_one_later_and_failures_are_retried() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []

        async def process(key: Hashable) -> float | None:
            seen.append(str(key))
            if len(seen) == 1:
                return 0.5  # e.g. a backoff ending
            if len(seen) == 2:
                raise RuntimeError("API server unavailable")
            return None

        queue = WorkQueue(process, workers=1)
        worker = asyncio.create_task(queue.run())
        queue.add("p")
        await asyncio.sleep(0.8)
        worker.cancel()
        return seen

    assert asyncio.run(scenario()) == ["p", "p"]
