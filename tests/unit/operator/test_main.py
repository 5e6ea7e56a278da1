"""`python -m etl_operator`: each replica of the chart's Deployment joins peering with a priority
of its own, since kopf pauses every replica while two share the highest one."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from etl_operator import __main__ as entry


def test_each_start_runs_kopf_with_peering_and_a_priority_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: runs.append(kwargs))
    monkeypatch.setenv("ETL_OPERATOR_PEERING_NAME", "sparkops-etl")
    assert entry.main() == 0
    assert entry.main() == 0
    assert [run["peering_name"] for run in runs] == ["sparkops-etl", "sparkops-etl"]
    assert not runs[0]["standalone"]
    priorities = [run["priority"] for run in runs]
    assert all(priority > 0 for priority in priorities)
    assert priorities[0] != priorities[1]
