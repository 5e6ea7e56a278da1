"""kstatus' Reconciling and Stalled through every phase, beside the Ready/Running/Degraded users know."""

from __future__ import annotations

from datetime import timedelta

import pytest

from etl_job.contract import ETLPipelineStatus, Mode, Phase, RunRecord
from etl_operator.conditions import Problem, Verdict, gitops_conditions, reconciling, stalled
from tests.unit.operator.phases import every_phase
from tests.unit.operator.test_observe import NOW, succeeded_pod
from tests.unit.operator.test_reconcile import BATCH, condition, decide, launched

PHASES = every_phase()


@pytest.mark.parametrize("name", sorted(PHASES))
def test_reconciling_and_stalled_through_every_phase(name: str) -> None:
    shown = PHASES[name]
    assert condition(shown.status, "Reconciling") == shown.reconciling
    assert condition(shown.status, "Stalled") == shown.stalled
    # Both are "abnormal-true": never True together; the users' three are still there.
    assert {c.type for c in shown.status.conditions} == {
        "Ready",
        "Running",
        "Degraded",
        "Reconciling",
        "Stalled",
    }


@pytest.mark.parametrize("name", sorted(PHASES))
def test_each_condition_names_the_generation_it_saw(name: str) -> None:
    status = PHASES[name].status
    assert {c.observed_generation for c in status.conditions} == {status.observed_generation}


def test_stalled_names_what_to_fix() -> None:
    stuck = PHASES["secret-missing"].status
    message = next(c.message for c in stuck.conditions if c.type == "Stalled")
    assert message == "Secret pg-credentials is missing"
    opened = PHASES["circuit-open"].status
    message = next(c.message for c in opened.conditions if c.type == "Stalled")
    assert message.startswith("circuit open after 2 consecutive failed runs; last run 2 Failed")
    failed = PHASES["failed"].status
    message = next(c.message for c in failed.conditions if c.type == "Stalled")
    assert message.endswith("not retried")


def test_reconciling_keeps_its_transition_time_while_a_run_goes_from_pending_to_running() -> None:
    first = PHASES["launched"].status
    running = PHASES["running"].status
    before = next(c for c in first.conditions if c.type == "Reconciling")
    after = next(c for c in running.conditions if c.type == "Reconciling")
    assert (before.status, after.status) == ("True", "True")
    assert after.last_transition_time == before.last_transition_time == "2026-11-25T22:00:00Z"
    done = decide(BATCH, running, [succeeded_pod(1)], NOW + timedelta(minutes=5))
    ended = next(c for c in done.status.conditions if c.type == "Reconciling")
    assert (ended.status, ended.last_transition_time) == ("False", "2026-11-25T22:05:00Z")


def test_a_problem_while_a_run_is_in_flight_is_stalled_not_reconciling() -> None:
    running = launched().status
    verdicts = gitops_conditions(running, Phase.pending, None, [Problem("InvalidSpec", "bad")], None, 1)
    assert verdicts == (Verdict(False, "Stalled", "bad"), Verdict(True, "InvalidSpec", "bad"))


def test_the_verdicts_alone() -> None:
    empty = ETLPipelineStatus()
    assert stalled(empty, Phase.failed, None) == Verdict(False, "AsExpected", "")  # no run: nothing failed
    assert reconciling(empty, Phase.pending, None, None, 1) == Verdict(False, "Reconciled", "")
    old_driver = ETLPipelineStatus(runs=[RunRecord(run=1, pod="p", generation=1, phase="Running")])
    assert reconciling(old_driver, Phase.running, Mode.streaming, None, 2).true  # not the current generation
    assert not reconciling(old_driver, Phase.running, Mode.streaming, None, 1).true


def test_a_schedule_waiting_for_its_first_slot_is_ready() -> None:
    ready = next(c for c in PHASES["scheduled-waiting"].status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason, ready.message) == (
        "True",
        "Scheduled",
        "first run at 2026-11-25T22:00:00Z",
    )
