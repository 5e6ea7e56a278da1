"""End to end: a pipeline with a file dead-letter queue runs on the fake kubelet, the schema is
loosened, and the annotation etl.sparkops.io/replay starts one replay run that loads the letters
and is reported in status.runs[] as a replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.e2e.test_operator import (  # noqa: F401 - fixtures used by name
    apply,
    chart_rbac,
    crd,
    operator,
    operator_env,
    pipeline,
    status,
    wait_for,
)
from tests.infra.kube import KubeCluster

pytestmark = pytest.mark.e2e


def customer_schema(symbols: list[str]) -> str:
    return json.dumps(
        {
            "type": "record",
            "name": "customer",
            "fields": [
                {"name": "id", "type": "int"},
                {"name": "country", "type": {"type": "enum", "name": "Country", "symbols": symbols}},
            ],
        }
    )


def output_ids(folder: Path) -> list[int]:
    return sorted(
        json.loads(line)["id"]
        for part in folder.glob("part-*.json")
        for line in part.read_text().splitlines()
    )


def test_the_replay_annotation_runs_etl_replay_once_and_loads_the_letters(
    kube_cluster: KubeCluster,
    namespace: str,
    fake_kubelet: Any,
    operator: KopfRunner,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "customer.avsc").write_text(customer_schema(["DE", "FR"]))
    source = tmp_path / "customers.csv"
    source.write_text("id,country\n1,DE\n2,IT\n3,FR\n4,IT\n")
    spec = {
        "extract": {"sourceType": "S3", "path": str(source), "format": "csv", "options": {"header": "true"},
                    "schemaName": "customer"},
        "load": {"sinkType": "S3", "path": str(tmp_path / "out"), "format": "json", "writeMode": "append"},
        "errorHandling": {"tolerance": "all", "retry": {"strategy": "none"},
                          "deadLetter": {"type": "s3", "path": str(tmp_path / "dlq"), "format": "json"}},
        "spark": {"driver": {"cores": 1, "memory": "1g"}},
        "podTemplate": {"spec": {"containers": [
            {"name": "driver", "env": [{"name": "ETL_SCHEMA_DIRS", "value": str(schemas)}]}
        ]}},
    }  # fmt: skip
    apply(kube_cluster, namespace, pipeline("customers", spec))

    def run_done(run: int) -> dict[str, Any] | None:
        runs = status(kube_cluster, namespace, "customers").get("runs") or []
        found = next((record for record in runs if record["run"] == run), None)
        return found if found and found.get("phase") in ("Succeeded", "Failed") else None

    first = wait_for("run 1 to end", lambda: run_done(1), timeout=240)
    assert first["phase"] == "Succeeded", json.dumps(first)
    assert (first["metrics"]["recordsLoaded"], first["metrics"]["recordsFailed"]) == (2, 2)
    assert output_ids(tmp_path / "out") == [1, 3]

    (schemas / "customer.avsc").write_text(customer_schema(["DE", "FR", "IT"]))
    kube_cluster.kubectl("annotate", "etlp", "customers", "-n", namespace, "etl.sparkops.io/replay=fix-1")
    replayed = wait_for("the replay run to end", lambda: run_done(2), timeout=240)

    assert replayed["phase"] == "Succeeded", json.dumps(replayed)
    assert replayed["replay"] is True
    assert (replayed["metrics"]["recordsExtracted"], replayed["metrics"]["recordsLoaded"]) == (2, 2)
    assert output_ids(tmp_path / "out") == [1, 2, 3, 4]
    final = status(kube_cluster, namespace, "customers")
    assert final["replayToken"] == "fix-1" and final["runCount"] == 2
    assert final["phase"] == "Succeeded"
