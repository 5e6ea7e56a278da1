"""The operator's limit of concurrent runs, as the pod events and the passes see it."""

from __future__ import annotations

import threading

from etl_operator.capacity import RunSlots, pod_alive


def test_no_limit_takes_every_slot() -> None:
    slots = RunSlots(0)
    assert all(slots.try_take(f"ns/p{i}") for i in range(100))


def test_a_full_operator_refuses_a_launch_until_a_run_ends_and_wakes_the_waiting() -> None:
    slots = RunSlots(2)
    assert slots.try_take("ns/a") and slots.try_take("ns/b")
    assert not slots.try_take("ns/c")
    slots.wait(("ns", "c-pipeline"))
    assert slots.observe("ns/a", alive=True) == []  # still running: nothing freed
    assert slots.observe("ns/a", alive=False) == [("ns", "c-pipeline")]
    assert slots.observe("ns/a", alive=False) == []  # the same end seen twice frees one slot
    assert slots.try_take("ns/c")
    assert slots.active == 2


def test_a_slot_given_back_after_a_refused_create_is_free_again() -> None:
    slots = RunSlots(1)
    assert slots.try_take("ns/a")
    slots.give_back("ns/a")
    assert slots.try_take("ns/b")


def test_pods_seen_before_any_launch_count() -> None:
    slots = RunSlots(1)
    slots.observe("ns/running-before-restart", alive=True)
    assert not slots.try_take("ns/new")


def test_parallel_passes_never_take_more_than_the_limit() -> None:
    slots = RunSlots(5)
    taken: list[bool] = []

    def take(i: int) -> None:
        taken.append(slots.try_take(f"ns/p{i}"))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken.count(True) == 5


def test_a_driver_holds_its_slot_until_it_ends_or_is_gone() -> None:
    assert pod_alive("Pending", deleted=False)
    assert pod_alive("Running", deleted=False)
    assert pod_alive(None, deleted=False)
    assert not pod_alive("Succeeded", deleted=False)
    assert not pod_alive("Failed", deleted=False)
    assert not pod_alive("Running", deleted=True)
