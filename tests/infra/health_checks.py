"""The programs that judge an ETLPipeline's health as GitOps tools do: Argo CD's Lua (gopher-lua)
and Flux's kstatus (cli-utils), built from the Go module proxy by build/build-health-checks.sh."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.infra.versions import BUILD_SCRIPTS, REPO_ROOT, ensure_built

ARGOCD_HEALTH_SCRIPT = REPO_ROOT / "helm" / "sparkops-etl" / "files" / "argocd-health.lua"


class HealthChecks:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir

    def _judge(self, command: list[str], objects: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        done = subprocess.run(
            command, input=json.dumps(list(objects)), capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{Path(command[0]).name} failed with {done.returncode}:\n{done.stderr}")
        results: list[dict[str, str]] = json.loads(done.stdout)
        return results

    def argocd(
        self, objects: Sequence[Mapping[str, Any]], script: Path = ARGOCD_HEALTH_SCRIPT
    ) -> list[dict[str, str]]:
        """Argo CD's health ({status, message}) of each object, by the chart's Lua script."""
        return self._judge([str(self.bin_dir / "argocd-lua"), str(script)], objects)

    def kstatus(self, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
        """kstatus' verdict ({status, message}: Current, InProgress, Failed, ...) of each object."""
        return self._judge([str(self.bin_dir / "kstatus")], objects)


def built_health_checks() -> HealthChecks:
    printed = ensure_built("health checks", BUILD_SCRIPTS / "build-health-checks.sh")
    return HealthChecks(Path(printed.rsplit(" at ", 1)[1]))
