"""The helm binary the harness builds, for rendering the operator's chart in tests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.infra.versions import BUILD_SCRIPTS, REPO_ROOT, cache_dir, ensure_built, versions

CHART = REPO_ROOT / "helm" / "sparkops-etl"


class Helm:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}")
        return done

    def template(self, release: str, namespace: str, *values: str, crds: bool = False) -> str:
        sets = [arg for value in values for arg in ("--set", value)]
        extra = ["--include-crds"] if crds else []
        return self.run("template", release, str(CHART), "--namespace", namespace, *extra, *sets).stdout


def built_helm() -> Helm:
    ensure_built("helm", BUILD_SCRIPTS / "build-helm.sh")
    return Helm(cache_dir() / f"helm-{versions()['HELM_VERSION']}" / "bin" / "helm")


def documents(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]
