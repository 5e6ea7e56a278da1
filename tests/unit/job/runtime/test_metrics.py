"""Metrics reach the operator intact: counts always fit the 4 KiB termination message."""

from __future__ import annotations

import json

from etl_job.contract import RunMetrics
from etl_job.runtime.metrics import TERMINATION_MESSAGE_LIMIT, success_rate, termination_message


def test_termination_message_is_the_metrics_in_camel_case() -> None:
    metrics = RunMetrics(records_extracted=10, records_loaded=8, records_failed=2, success_rate=0.8)
    assert json.loads(termination_message(metrics)) == {
        "recordsExtracted": 10,
        "recordsTransformed": 0,
        "recordsFiltered": 0,
        "recordsLoaded": 8,
        "recordsFailed": 2,
        "recordsLate": 0,
        "retryCount": 0,
        "durationMs": 0,
        "successRate": 0.8,
        "errors": [],
    }


def test_long_errors_are_shortened_and_counts_kept_within_the_limit() -> None:
    metrics = RunMetrics(records_extracted=5_000_000, records_loaded=4_999_000, errors=["x" * 3000] * 100)
    text = termination_message(metrics)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    document = json.loads(text)
    assert document["recordsExtracted"] == 5_000_000
    assert document["recordsLoaded"] == 4_999_000
    assert document["errors"][-1] == "(more errors omitted)"
    assert all(len(error) <= 80 for error in document["errors"][:-1])


def test_a_few_errors_are_kept_whole() -> None:
    metrics = RunMetrics(errors=["load: table user_summary: permission denied"])
    assert json.loads(termination_message(metrics))["errors"] == [
        "load: table user_summary: permission denied"
    ]


def test_success_rate() -> None:
    assert success_rate(0, 0) == 1.0
    assert success_rate(200, 50) == 0.75
    assert success_rate(3, 1) == 0.666667
