"""The committed CRD on a real API server: it installs, takes the examples and refuses every
invalid case of tests/contract_cases.py with an error naming the field."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from etl_job.contract import ETLPipeline, JoinTransform
from etl_job.contract.crd import CRD_NAME
from tests.contract_cases import (
    EXAMPLE,
    INVALID_CASES,
    PYDANTIC_ONLY_CASES,
    ROOT,
    UNQUOTED_ON_JOIN_YAML,
    VALID_CASES,
    InvalidCase,
    manifest,
)
from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.integration

COMMITTED_CRD = ROOT / "crds" / f"{CRD_NAME}.yaml"


@pytest.fixture(scope="module")
def etl_crd(kube_cluster: KubeCluster) -> str:
    """The committed CRD, installed and Established."""
    kube_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(COMMITTED_CRD))
    kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


def _apply(kube_cluster: KubeCluster, document: dict[str, Any] | str) -> Any:
    text = document if isinstance(document, str) else json.dumps(document)
    return kube_cluster.kubectl("apply", "-f", "-", input_text=text, check=False)


def _stored(kube_cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    done = kube_cluster.kubectl("get", "etlpipeline", name, "-n", namespace, "-o", "json")
    stored: dict[str, Any] = json.loads(done.stdout)
    return stored


def test_the_crd_is_established(kube_cluster: KubeCluster, etl_crd: str) -> None:
    crd = json.loads(kube_cluster.kubectl("get", "crd", etl_crd, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions.get("NonStructuralSchema") is None
    assert crd["status"]["acceptedNames"]["shortNames"] == ["etlp"]


def test_the_example_is_accepted_as_written(kube_cluster: KubeCluster, etl_crd: str, namespace: str) -> None:
    text = re.sub(r"namespace: analytics", f"namespace: {namespace}", EXAMPLE.read_text())
    assert f"namespace: {namespace}" in text

    applied = _apply(kube_cluster, text)

    assert applied.returncode == 0, applied.stderr
    stored = _stored(kube_cluster, namespace, "user-summary")
    # No defaults are written into the object: what the user wrote is what is stored.
    assert stored["spec"]["extract"] == yaml.safe_load(EXAMPLE.read_text())["spec"]["extract"]
    ETLPipeline.model_validate(stored)


def test_a_join_with_an_unquoted_on_key_is_accepted_and_stored(
    kube_cluster: KubeCluster, etl_crd: str, namespace: str
) -> None:
    applied = _apply(kube_cluster, UNQUOTED_ON_JOIN_YAML.format(namespace=namespace))

    assert applied.returncode == 0, applied.stderr
    stored = _stored(kube_cluster, namespace, "unquoted-on")
    assert stored["spec"]["transforms"][0]["true"] == ["user_id"]
    join = ETLPipeline.model_validate(stored).spec.transforms[0]
    assert isinstance(join, JoinTransform)
    assert join.on == ["user_id"]


@pytest.mark.parametrize(("name", "spec"), VALID_CASES, ids=[name for name, _ in VALID_CASES])
def test_the_api_server_accepts_the_valid_case(
    kube_cluster: KubeCluster, etl_crd: str, namespace: str, name: str, spec: dict[str, Any]
) -> None:
    applied = _apply(kube_cluster, manifest(name, namespace, spec))

    assert applied.returncode == 0, applied.stderr
    assert _stored(kube_cluster, namespace, name)["spec"] == spec


@pytest.mark.parametrize("case", INVALID_CASES, ids=lambda case: case.id)
def test_the_api_server_refuses_the_invalid_case_naming_the_field(
    kube_cluster: KubeCluster, etl_crd: str, namespace: str, case: InvalidCase
) -> None:
    refused = _apply(kube_cluster, manifest(case.id, namespace, case.spec))

    assert refused.returncode != 0, f"the API server accepted {case.id}"
    assert case.field in refused.stderr, refused.stderr
    assert case.message in refused.stderr, refused.stderr


@pytest.mark.parametrize("case", PYDANTIC_ONLY_CASES, ids=lambda case: case.id)
def test_the_api_server_cannot_see_into_map_form_aggregations(
    kube_cluster: KubeCluster, etl_crd: str, namespace: str, case: InvalidCase
) -> None:
    """A known gap, refused by the operator instead. If this fails, the API server now refuses
    the case: move it to INVALID_CASES."""
    applied = _apply(kube_cluster, manifest(case.id, namespace, case.spec))

    assert applied.returncode == 0, applied.stderr


def test_kubectl_get_prints_the_printer_columns(
    kube_cluster: KubeCluster, etl_crd: str, namespace: str
) -> None:
    kube_cluster.kubectl(
        "apply", "-f", "-", input_text=json.dumps(manifest("columns", namespace, VALID_CASES[0][1]))
    )
    status = {
        "phase": "Succeeded",
        "circuit": {"state": "Closed", "consecutiveFailures": 0},
        "lastRun": {
            "run": 1,
            "startTime": "2026-01-01T00:00:00Z",
            "endTime": "2026-01-01T00:01:00Z",
            "metrics": {"recordsExtracted": 42, "recordsLoaded": 41, "recordsFailed": 1},
        },
    }
    kube_cluster.kubectl(
        "patch", "etlp", "columns", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip

    table = kube_cluster.kubectl("get", "etlp", "-n", namespace).stdout.splitlines()

    assert re.split(r"\s{2,}", table[0].strip()) == [
        "NAME", "MODE", "PHASE", "CIRCUIT", "LAST RUN", "RECORDS LOADED", "AGE",
    ]  # fmt: skip
    row = table[1].split()
    assert row[:4] == ["columns", "batch", "Succeeded", "Closed"]
    assert "41" in row
    stored = _stored(kube_cluster, namespace, "columns")
    assert stored["status"] == status
