"""GitOps health as the tools compute it: the chart's Argo CD Lua script run in gopher-lua (Argo
CD's interpreter) and cli-utils' kstatus (Flux's), on statuses reconcile produced in every phase."""

from __future__ import annotations

import pytest

from tests.infra.health_checks import HealthChecks, built_health_checks
from tests.unit.operator.phases import every_phase

pytestmark = pytest.mark.integration

PHASES = every_phase()
NAMES = sorted(PHASES)


@pytest.fixture(scope="module")
def checks() -> HealthChecks:
    return built_health_checks()


@pytest.fixture(scope="module")
def judged(checks: HealthChecks) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    objects = [PHASES[name].manifest(name) for name in NAMES]
    return dict(zip(NAMES, zip(checks.argocd(objects), checks.kstatus(objects), strict=True), strict=True))


@pytest.mark.parametrize("name", NAMES)
def test_argocd_and_kstatus_read_every_phase(
    name: str, judged: dict[str, tuple[dict[str, str], dict[str, str]]]
) -> None:
    argocd, kstatus = judged[name]
    shown = PHASES[name]
    assert (argocd["status"], kstatus["status"]) == (shown.argocd, shown.kstatus), (argocd, kstatus)


def test_argocd_shows_the_message_that_says_what_to_fix(
    judged: dict[str, tuple[dict[str, str], dict[str, str]]],
) -> None:
    assert judged["secret-missing"][0]["message"] == "Secret pg-credentials is missing"
    assert judged["circuit-open"][0]["message"].startswith("circuit open after 2 consecutive failed runs")
    assert judged["running"][0]["message"] == "run 1 (orders-run-1-driver) is Running"
    assert (
        judged["generation-not-observed"][0]["message"] == "Waiting for the operator to observe generation 2"
    )
    assert judged["suspended"][0]["message"] == "suspended"
    assert judged["succeeded"][0]["message"] == "run 1 succeeded"
    # kstatus names the condition it went by.
    assert judged["secret-missing"][1]["message"] == "Secret pg-credentials is missing"


def test_an_object_the_operator_has_not_seen_yet(checks: HealthChecks) -> None:
    fresh = {"apiVersion": "etl.sparkops.io/v1alpha1", "kind": "ETLPipeline",
             "metadata": {"name": "new", "namespace": "a", "generation": 1}, "spec": {}}  # fmt: skip
    assert checks.argocd([fresh])[0]["status"] == "Progressing"
    # kstatus reads an object with no status at all as Current: a limit of kstatus, for the
    # moment between the apply and the operator's first pass.
    assert checks.kstatus([fresh])[0]["status"] == "Current"


def test_an_older_operator_without_kstatus_conditions_is_judged_by_phase(checks: HealthChecks) -> None:
    def old(phase: str) -> dict[str, object]:
        return {"apiVersion": "etl.sparkops.io/v1alpha1", "kind": "ETLPipeline",
                "metadata": {"name": "old", "namespace": "a", "generation": 1},
                "status": {"observedGeneration": 1, "phase": phase, "conditions": []}}  # fmt: skip

    phases = ["Succeeded", "Failed", "CircuitOpen", "Running", "Backoff", "Pending", "Suspended"]
    judged = [result["status"] for result in checks.argocd([old(phase) for phase in phases])]
    assert judged == [
        "Healthy",
        "Degraded",
        "Degraded",
        "Progressing",
        "Progressing",
        "Progressing",
        "Suspended",
    ]
