"""The Helm chart ships the generated ETLPipeline CRD unchanged."""

from __future__ import annotations

from tests.infra.versions import REPO_ROOT

CRD_FILE = "etlpipelines.etl.sparkops.io.yaml"


def test_the_charts_crd_is_the_generated_one() -> None:
    generated = (REPO_ROOT / "crds" / CRD_FILE).read_text()
    shipped = (REPO_ROOT / "helm" / "sparkops-etl" / "crds" / CRD_FILE).read_text()
    assert shipped == generated, (
        f"helm/sparkops-etl/crds/{CRD_FILE} differs from crds/{CRD_FILE}: run `make crds`, which copies it"
    )
