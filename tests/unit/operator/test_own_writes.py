"""The operator tells the watch events of its own writes from everyone else's changes."""

from __future__ import annotations

import copy
from typing import Any

from etl_operator.kube_io import OwnWrites


def pipeline(generation: int = 1, status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "etl.sparkops.io/v1alpha1",
        "kind": "ETLPipeline",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "generation": generation,
                     "resourceVersion": str(10 + generation), **metadata},
        "spec": {"mode": "batch", "generation": generation},
        "status": status or {},
    }  # fmt: skip


def test_the_event_of_a_status_write_is_ours_and_later_changes_are_not() -> None:
    own = OwnWrites()
    read = pipeline()
    own.read_pipeline(read)
    written = pipeline(status={"phase": "Pending", "runCount": 1})
    written["metadata"]["resourceVersion"] = "12"
    own.wrote_status(written)
    assert own.is_own_pipeline_event(copy.deepcopy(written))

    edited = pipeline(generation=2, status={"phase": "Pending", "runCount": 1})
    assert not own.is_own_pipeline_event(edited)
    rerun = {"etl.sparkops.io/rerun": "1"}
    annotated = pipeline(status={"phase": "Pending", "runCount": 1}, annotations=rerun)
    assert not own.is_own_pipeline_event(annotated)


def test_a_change_landing_between_the_read_and_the_write_is_not_taken_for_ours() -> None:
    own = OwnWrites()
    own.read_pipeline(pipeline(generation=1, status={"phase": "Succeeded"}))
    # A user's spec change lands; the pass's patch changes nothing, so the API returns the object
    # at the user's version: that version must still get its pass.
    users = pipeline(generation=2, status={"phase": "Succeeded"})
    own.wrote_status(users)
    assert not own.is_own_pipeline_event(users)


def test_a_status_write_without_a_read_in_the_same_pass_claims_nothing() -> None:
    own = OwnWrites()
    written = pipeline(status={"phase": "Pending"})
    own.wrote_status(written)
    assert not own.is_own_pipeline_event(written)


def test_only_the_added_event_of_a_pod_the_operator_created_is_ours() -> None:
    own = OwnWrites()
    own.created_pod({"metadata": {"namespace": "ns", "name": "p-run-1-driver", "resourceVersion": "42"}})
    assert own.is_own_pod_event("ns", "p-run-1-driver", "42")
    assert not own.is_own_pod_event("ns", "p-run-1-driver", "43")  # bound, started, ended: news
    own.forget_pod("ns", "p-run-1-driver")
    assert not own.is_own_pod_event("ns", "p-run-1-driver", "42")


def test_a_status_patch_that_changes_nothing_of_what_the_pass_read_is_not_needed() -> None:
    own = OwnWrites()
    read = pipeline(status={"phase": "Running", "runCount": 1, "runs": [{"run": 1, "phase": "Running"}]})
    same = {"phase": "Running", "runCount": 1, "runs": [{"run": 1, "phase": "Running"}], "lastRun": None}
    own.read_pipeline(read)
    assert not own.status_unchanged("ns", "p", {**same, "phase": "Succeeded"})
    assert not own.status_unchanged("ns", "p", {**same, "runCount": None})  # removes a field
    assert not own.status_unchanged("ns", "p", {**same, "circuit": {"state": None}})  # adds {}
    assert own.status_unchanged("ns", "p", same)
    assert not own.status_unchanged("ns", "p", same)  # the read is used up: the next pass reads anew
