"""Restart delays: exponential, capped, equal jitter, strictly bounded."""

from __future__ import annotations

import random

import pytest

from etl_job.contract import RestartPolicy
from etl_operator.backoff import backoff_delay, backoff_step

POLICY = RestartPolicy(initial_backoff_seconds=10, max_backoff_seconds=300, backoff_multiplier=2.0)


def test_steps_grow_exponentially_up_to_the_cap() -> None:
    assert [backoff_step(n, POLICY) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_a_huge_retry_count_is_the_cap_not_an_overflow() -> None:
    policy = RestartPolicy(initial_backoff_seconds=1, max_backoff_seconds=60, backoff_multiplier=10.0)
    assert backoff_step(10_000, policy) == 60
    assert backoff_step(-3, POLICY) == 10


def test_multiplier_one_is_a_constant_delay() -> None:
    policy = RestartPolicy(initial_backoff_seconds=7, max_backoff_seconds=60, backoff_multiplier=1.0)
    assert backoff_step(5, policy) == 7


@pytest.mark.parametrize("retries", range(12))
def test_delay_lies_between_half_the_step_and_the_step(retries: int) -> None:
    rng = random.Random(retries)
    step = backoff_step(retries, POLICY)
    for _ in range(200):
        delay = backoff_delay(retries, POLICY, rng)
        assert step / 2 <= delay <= step
        assert POLICY.initial_backoff_seconds / 2 <= delay <= POLICY.max_backoff_seconds


def test_jitter_spreads_delays_and_is_reproducible_with_a_seed() -> None:
    delays = {backoff_delay(3, POLICY, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 10
    assert backoff_delay(3, POLICY, random.Random(1)) == backoff_delay(3, POLICY, random.Random(1))
