"""The pipeline circuit breaker: Closed -> Open -> HalfOpen -> Closed or Open again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from etl_job.contract import CircuitBreakerPolicy, CircuitState, CircuitStatus
from etl_operator.breaker import may_launch, record_failure, record_success, reset_at

NOW = datetime(2026, 11, 25, 22, 0, 0, tzinfo=UTC)
POLICY = CircuitBreakerPolicy(failure_threshold=3, reset_timeout_seconds=60, half_open_max_attempts=1)


def failures(n: int, policy: CircuitBreakerPolicy = POLICY) -> CircuitStatus:
    circuit = CircuitStatus()
    for _ in range(n):
        circuit = record_failure(circuit, policy, NOW)
    return circuit


def test_closed_counts_failures_and_opens_at_the_threshold() -> None:
    assert failures(2) == CircuitStatus(state=CircuitState.closed, consecutive_failures=2)
    opened = failures(3)
    assert opened.state == CircuitState.open
    assert opened.consecutive_failures == 3
    assert opened.opened_at == "2026-11-25T22:00:00Z"
    assert reset_at(opened, POLICY) == NOW + timedelta(seconds=60)


def test_success_closes_and_clears_the_streak() -> None:
    assert record_success(failures(2)) == CircuitStatus()
    assert record_success(failures(3)) == CircuitStatus()


def test_closed_always_allows() -> None:
    assert may_launch(failures(2), POLICY, NOW) == (True, failures(2))


def test_open_refuses_until_the_reset_timeout_then_allows_one_trial() -> None:
    opened = failures(3)
    allowed, same = may_launch(opened, POLICY, NOW + timedelta(seconds=59))
    assert (allowed, same) == (False, opened)
    allowed, half_open = may_launch(opened, POLICY, NOW + timedelta(seconds=60))
    assert allowed
    assert half_open.state == CircuitState.half_open
    assert may_launch(half_open, POLICY, NOW, active_trials=1) == (False, half_open)
    assert reset_at(half_open, POLICY) is None


def test_half_open_trial_success_closes_failure_reopens_with_a_new_timeout() -> None:
    half_open = may_launch(failures(3), POLICY, NOW + timedelta(seconds=61))[1]
    assert record_success(half_open).state == CircuitState.closed
    later = NOW + timedelta(seconds=90)
    reopened = record_failure(half_open, POLICY, later)
    assert reopened.state == CircuitState.open
    assert reopened.opened_at == "2026-11-25T22:01:30Z"
    assert reopened.consecutive_failures == 4


def test_half_open_max_attempts_allows_several_trials() -> None:
    policy = POLICY.model_copy(update={"half_open_max_attempts": 2})
    half_open = CircuitStatus(state=CircuitState.half_open, consecutive_failures=3)
    assert may_launch(half_open, policy, NOW, active_trials=1)[0]
    assert not may_launch(half_open, policy, NOW, active_trials=2)[0]


def test_disabled_breaker_never_opens_and_always_allows() -> None:
    policy = POLICY.model_copy(update={"enabled": False})
    circuit = failures(10, policy)
    assert circuit.state == CircuitState.closed
    assert circuit.consecutive_failures == 10
    opened = CircuitStatus(state=CircuitState.open, opened_at="2026-11-25T22:00:00Z")
    assert may_launch(opened, policy, NOW)[0]


def test_open_without_a_time_turns_half_open() -> None:
    assert may_launch(CircuitStatus(state=CircuitState.open), POLICY, NOW)[0]
