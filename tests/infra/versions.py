"""The pinned versions in versions.env, the harness cache, and the build scripts that fill it."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from tests.infra.process import HarnessError, timed

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPTS = Path(__file__).resolve().parent / "build"


def cache_dir() -> Path:
    """Where builds and downloads are kept between runs, keyed by version inside."""
    return Path(os.environ.get("ETL_CACHE_DIR", Path.home() / ".cache" / "sparkops-etl"))


@cache
def versions() -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in (REPO_ROOT / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pinned[key.strip()] = value.strip()
    return pinned


def ensure_built(component: str, script: Path, timeout: float = 3000) -> str:
    """Run a build script of the repo (a no-op when its output is cached), timing it; return
    the last line it printed."""
    with timed(component, "build"):
        try:
            done = subprocess.run(
                ["bash", str(script)], capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as expired:
            raise HarnessError(f"{component}: {script.name} did not finish in {timeout:.0f}s") from expired
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise HarnessError(f"{component}: {script.name} failed with {done.returncode}:\n{output}")
    printed = done.stdout.strip().splitlines()
    return printed[-1] if printed else ""
