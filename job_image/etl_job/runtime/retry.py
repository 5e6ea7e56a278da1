"""Retrying a stage per `errorHandling.retry`: exponential with jitter, fixed, or none."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from etl_job.contract import RetryPolicy, RetryStrategy

log = logging.getLogger("etl_job.retry")
T = TypeVar("T")


def wait_strategy(policy: RetryPolicy) -> tenacity.wait.wait_base:
    """The delay between attempts, capped at maxDelaySeconds."""
    if policy.strategy == RetryStrategy.fixed:
        return tenacity.wait_fixed(policy.initial_delay_seconds)
    if policy.strategy == RetryStrategy.none:
        return tenacity.wait_none()
    if policy.jitter:
        # Full jitter: a random delay up to the exponential bound, so retries of many
        # pipelines against one database do not arrive in lockstep.
        return tenacity.wait_random_exponential(
            multiplier=policy.initial_delay_seconds,
            max=policy.max_delay_seconds,
            exp_base=policy.backoff_multiplier,
        )
    return tenacity.wait_exponential(
        multiplier=policy.initial_delay_seconds,
        max=policy.max_delay_seconds,
        exp_base=policy.backoff_multiplier,
    )


def attempts_allowed(policy: RetryPolicy) -> int:
    return 1 if policy.strategy == RetryStrategy.none else policy.max_attempts


def run_with_retry(
    action: Callable[[], object],
    policy: RetryPolicy,
    *,
    retry_on: tuple[type[BaseException], ...],
    stage: str,
    sleep: Callable[[float], None] | None = None,
    on_retry: Callable[[], None] | None = None,
) -> int:
    """Run `action` until it succeeds; return how many attempts it took. Errors outside
    `retry_on` (a bad spec, a bad record) and permanent ones are raised at once: retrying
    cannot fix them. `on_retry` is told of each attempt about to be retried."""
    attempts = 0

    def attempt() -> None:
        nonlocal attempts
        attempts += 1
        action()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        log.warning("%s: attempt %d failed (%s); retrying", stage, state.attempt_number, failure)
        if on_retry is not None:
            on_retry()

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts_allowed(policy)),
        wait=wait_strategy(policy),
        retry=tenacity.retry_if_exception(
            lambda failure: isinstance(failure, retry_on) and not getattr(failure, "permanent", False)
        ),
        reraise=True,
        before_sleep=before_sleep,
        sleep=sleep or time.sleep,
    )
    retrying(attempt)
    return attempts
