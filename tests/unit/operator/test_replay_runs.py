"""The replay annotation: one `etl replay` run per new value, reported as a run that says it is
a replay, retried as a replay, and no stand-in for the spec generation's own run."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from etl_operator.reconcile import LaunchRun
from etl_operator.render import render_run
from tests.unit.operator.test_observe import NOW, failed_pod, running_pod, succeeded_pod
from tests.unit.operator.test_reconcile import BATCH, decide, launched, launches
from tests.unit.operator.test_render import DEFAULTS, _distributed, _driver, _pipeline

REPLAY = "etl.sparkops.io/replay"


def test_the_replay_annotation_starts_one_replay_run_per_value() -> None:
    done = decide(BATCH, launched().status, [succeeded_pod(1)], NOW + timedelta(minutes=1))
    asked = {REPLAY: "fix-1"}
    replay = decide(BATCH, done.status, [succeeded_pod(1)], NOW + timedelta(minutes=2), annotations=asked)
    assert launches(replay) == [LaunchRun(run=2, generation=1, replay=True)]
    assert replay.status.replay_token == "fix-1"
    assert replay.status.runs[0].replay is True and replay.status.runs[1].replay is None
    pods = [succeeded_pod(1), succeeded_pod(2)]
    after = decide(BATCH, replay.status, pods, NOW + timedelta(minutes=3), annotations=asked)
    assert launches(after) == []
    assert after.status.last_run is not None and after.status.last_run.replay is True
    again = decide(BATCH, after.status, pods, NOW + timedelta(minutes=4), annotations={REPLAY: "fix-2"})
    assert launches(again) == [LaunchRun(run=3, generation=1, replay=True)]


def test_a_failed_replay_is_retried_as_a_replay() -> None:
    done = decide(BATCH, launched().status, [succeeded_pod(1)], NOW + timedelta(minutes=1))
    started = decide(
        BATCH, done.status, [succeeded_pod(1)], NOW + timedelta(minutes=2), annotations={REPLAY: "a"}
    )
    pods = [succeeded_pod(1), failed_pod(2, exit_code=4)]
    failed = decide(BATCH, started.status, pods, NOW + timedelta(minutes=3), annotations={REPLAY: "a"})
    assert launches(failed) == []
    retry = decide(BATCH, failed.status, pods, NOW + timedelta(minutes=5), annotations={REPLAY: "a"})
    assert launches(retry) == [LaunchRun(run=3, generation=1, replay=True)]


def test_a_replay_before_the_first_run_leaves_the_generation_its_own_run() -> None:
    """Asked for at creation, the replay goes first; the spec generation's run follows it."""
    first = decide(BATCH, annotations={REPLAY: "a"})
    assert launches(first) == [LaunchRun(run=1, generation=1, replay=True)]
    running = decide(
        BATCH, first.status, [running_pod(1)], NOW + timedelta(seconds=5), annotations={REPLAY: "a"}
    )
    assert launches(running) == []
    done = decide(
        BATCH, running.status, [succeeded_pod(1)], NOW + timedelta(minutes=1), annotations={REPLAY: "a"}
    )
    assert launches(done) == [LaunchRun(run=2, generation=1)]


def test_a_replay_run_s_driver_runs_etl_replay() -> None:
    local = _driver(render_run(replace(_pipeline(), replay=True), 3, DEFAULTS).pod)
    assert [*local["command"], *local["args"][:1]] == ["etl", "replay"]
    assert [*_driver(render_run(_pipeline(), 3, DEFAULTS).pod)["args"][:1]] == ["run"]
    distributed = replace(_pipeline(_distributed()), replay=True)
    submitted = _driver(render_run(distributed, 3, DEFAULTS).pod)
    argv = [*submitted["command"], *submitted["args"]]
    assert argv[argv.index(DEFAULTS.job_entry_point) + 1] == "replay"
