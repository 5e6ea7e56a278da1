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


def test_an_ask_that_turned_out_moot_runs_no_pass_unless_another_ask_holds() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        own_write_seen = False

        async def process(key: Hashable) -> float | None:
            nonlocal own_write_seen
            seen.append(str(key))
            queue.add(key, moot=lambda: own_write_seen)  # the event of this pass's own write
            await asyncio.sleep(0.02)
            own_write_seen = True  # recorded only as the pass ends: the ask is judged later
            return None

        queue = WorkQueue(process, workers=2)
        worker = asyncio.create_task(queue.run())
        queue.add("p")
        await asyncio.sleep(0.1)
        assert seen == ["p"]  # the pass's own write asked for nothing
        queue.add("q", moot=lambda: True)  # void from the start
        queue.add("r", moot=lambda: True)
        queue.add("r")  # but another ask for r holds
        await asyncio.sleep(0.1)
        worker.cancel()
        return seen

    assert asyncio.run(scenario()) == ["p", "r"]


def test_asks_from_events_go_before_asks_from_timers() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []

        async def process(key: Hashable) -> float | None:
            seen.append(str(key))
            await asyncio.sleep(0.1 if str(key).startswith("busy") else 0.01)
            return None

        queue = WorkQueue(process, workers=1)
        worker = asyncio.create_task(queue.run())
        queue.add("busy")
        queue.add("re-check", delay=0.02)  # due while the one worker is busy
        await asyncio.sleep(0.05)
        queue.add("new pipeline")  # asked later, runs first
        await asyncio.sleep(0.2)
        queue.add("busy again")
        queue.add("re-check a", delay=0.01)
        queue.add("re-check b", delay=0.02)
        await asyncio.sleep(0.05)
        queue.add("re-check b")  # an event for a key a timer queued moves it up, one pass
        await asyncio.sleep(0.2)
        worker.cancel()
        return seen

    assert asyncio.run(scenario()) == [
        "busy", "new pipeline", "re-check", "busy again", "re-check b", "re-check a"
    ]  # fmt: skip
