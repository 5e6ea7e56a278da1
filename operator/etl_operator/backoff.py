"""The delay before a failed run is restarted: exponential, capped, with "equal jitter".

Equal jitter (half the exponential step fixed, the other half random) rather than full jitter:
full jitter may pick a delay near zero, which turns a crash loop into a hot loop against a sink
that is down; equal jitter still spreads the restarts of many pipelines failing together (one
database outage) while guaranteeing every delay lies in [step/2, step], so it never drops below
initialBackoffSeconds/2 and never exceeds maxBackoffSeconds."""

from __future__ import annotations

import math
import random

from etl_job.contract import RestartPolicy


def backoff_step(retries: int, policy: RestartPolicy) -> float:
    """The un-jittered delay before retry number `retries + 1`:
    initialBackoffSeconds * backoffMultiplier ** retries, capped at maxBackoffSeconds."""
    initial = float(policy.initial_backoff_seconds)
    cap = float(policy.max_backoff_seconds)
    retries = max(0, retries)
    if policy.backoff_multiplier <= 1.0:
        return min(initial, cap)
    # Compare exponents, so a large retry count cannot overflow a float.
    if retries * math.log(policy.backoff_multiplier) >= math.log(cap / initial):
        return cap
    return min(cap, initial * policy.backoff_multiplier**retries)


def backoff_delay(retries: int, policy: RestartPolicy, rng: random.Random) -> float:
    """Seconds to wait before retry number `retries + 1` (`retries` = retries already made),
    drawn uniformly from [step/2, step] where step = `backoff_step(retries, policy)`."""
    step = backoff_step(retries, policy)
    return step / 2 + rng.uniform(0.0, step / 2)
