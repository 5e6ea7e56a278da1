"""The pipeline's circuit breaker over runs: pure transitions of `status.circuit`.

Closed: runs launch; `failureThreshold` consecutive failed runs open it. Open: no launches until
`resetTimeoutSeconds` have passed since it opened, then it turns HalfOpen. HalfOpen: up to
`halfOpenMaxAttempts` trial runs at once; a trial that succeeds closes it, one that fails
re-opens it (and restarts the timeout). The state lives in status, so it survives an operator
restart. A disabled breaker counts failures but never opens."""

from __future__ import annotations

from datetime import datetime, timedelta

from etl_job.contract import CircuitBreakerPolicy, CircuitState, CircuitStatus
from etl_operator.observe import format_time, parse_time


def record_success(circuit: CircuitStatus) -> CircuitStatus:
    """A run succeeded: the circuit closes and the failure streak ends."""
    return CircuitStatus(state=CircuitState.closed, consecutive_failures=0, opened_at=None)


def record_failure(circuit: CircuitStatus, policy: CircuitBreakerPolicy, now: datetime) -> CircuitStatus:
    """A run failed: count it; open the circuit on a failed half-open trial or at the threshold."""
    failures = circuit.consecutive_failures + 1
    if not policy.enabled:
        return CircuitStatus(state=CircuitState.closed, consecutive_failures=failures, opened_at=None)
    if circuit.state == CircuitState.half_open or failures >= policy.failure_threshold:
        return CircuitStatus(
            state=CircuitState.open, consecutive_failures=failures, opened_at=format_time(now)
        )
    return circuit.model_copy(update={"consecutive_failures": failures})


def reset_at(circuit: CircuitStatus, policy: CircuitBreakerPolicy) -> datetime | None:
    """When an open circuit turns half-open; None unless it is open."""
    if circuit.state != CircuitState.open:
        return None
    opened = parse_time(circuit.opened_at)
    if opened is None:
        return None
    return opened + timedelta(seconds=policy.reset_timeout_seconds)


def may_launch(
    circuit: CircuitStatus, policy: CircuitBreakerPolicy, now: datetime, active_trials: int = 0
) -> tuple[bool, CircuitStatus]:
    """Whether a run may start now, and the circuit after asking (Open turns HalfOpen once its
    timeout has passed). `active_trials`: runs already launched in the half-open state."""
    if not policy.enabled or circuit.state == CircuitState.closed:
        return True, circuit
    if circuit.state == CircuitState.open:
        reopen = reset_at(circuit, policy)
        if reopen is not None and now < reopen:
            return False, circuit
        circuit = circuit.model_copy(update={"state": CircuitState.half_open})
        active_trials = 0
    return active_trials < policy.half_open_max_attempts, circuit
