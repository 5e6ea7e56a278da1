"""Retries follow errorHandling.retry, and only for failures a retry can fix."""

from __future__ import annotations

import pytest

from etl_job.contract import ConfigurationError, RetryPolicy, RetryStrategy, SinkRejected
from etl_job.runtime.retry import run_with_retry, wait_strategy


class Flaky:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


def _run(action: Flaky, policy: RetryPolicy, sleeps: list[float]) -> int:
    return run_with_retry(action, policy, retry_on=(SinkRejected,), stage="load", sleep=sleeps.append)


def test_exponential_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(
        strategy=RetryStrategy.exponential,
        max_attempts=6,
        initial_delay_seconds=1,
        max_delay_seconds=5,
        backoff_multiplier=2,
        jitter=False,
    )
    sleeps: list[float] = []
    assert _run(Flaky(5, SinkRejected("down")), policy, sleeps) == 6
    assert sleeps == [1, 2, 4, 5, 5]


def test_jitter_stays_under_the_exponential_bound() -> None:
    policy = RetryPolicy(
        strategy=RetryStrategy.exponential,
        max_attempts=5,
        initial_delay_seconds=1,
        max_delay_seconds=60,
        backoff_multiplier=2,
        jitter=True,
    )
    sleeps: list[float] = []
    _run(Flaky(4, SinkRejected("down")), policy, sleeps)
    assert len(sleeps) == 4
    assert all(0 <= delay <= bound for delay, bound in zip(sleeps, [1, 2, 4, 8], strict=True))


def test_fixed_delay() -> None:
    policy = RetryPolicy(
        strategy=RetryStrategy.fixed, max_attempts=3, initial_delay_seconds=2, max_delay_seconds=2
    )
    sleeps: list[float] = []
    assert _run(Flaky(2, SinkRejected("down")), policy, sleeps) == 3
    assert sleeps == [2, 2]


def test_strategy_none_tries_once() -> None:
    policy = RetryPolicy(strategy=RetryStrategy.none, max_attempts=5)
    action = Flaky(1, SinkRejected("down"))
    with pytest.raises(SinkRejected):
        _run(action, policy, [])
    assert action.calls == 1


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay_seconds=0, max_delay_seconds=0)
    action = Flaky(10, SinkRejected("connection refused"))
    with pytest.raises(SinkRejected, match="connection refused"):
        _run(action, policy, [])
    assert action.calls == 3


def test_a_configuration_error_is_not_retried() -> None:
    action = Flaky(1, ConfigurationError("bad table name"))
    with pytest.raises(ConfigurationError):
        _run(action, RetryPolicy(max_attempts=5), [])
    assert action.calls == 1


def test_a_permanent_sink_failure_is_not_retried() -> None:
    action = Flaky(1, SinkRejected("bucket out does not exist", permanent=True))
    with pytest.raises(SinkRejected, match="does not exist"):
        _run(action, RetryPolicy(max_attempts=5, initial_delay_seconds=0), [])
    assert action.calls == 1


def test_wait_strategy_is_a_tenacity_wait() -> None:
    assert callable(wait_strategy(RetryPolicy()))
