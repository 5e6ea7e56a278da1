"""What the fault tests share: `EtlRun`, one `etl run` in its own process that a test watches
through its log and breaks at a chosen moment, and small helpers for input files and tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from tests.infra.spark import connector_jars
from tests.infra.versions import REPO_ROOT

#: Small and quick: two task slots and two shuffle partitions, as the brief of the suite says.
SPARK = {"conf": {"spark.sql.shuffle.partitions": "2"}}

#: Every wait for a run is bounded; a run that needs longer than this is a hang.
RUN_TIMEOUT = 300.0


def retry(attempts: int, seconds: float) -> dict[str, Any]:
    return {
        "strategy": "fixed",
        "maxAttempts": attempts,
        "initialDelaySeconds": seconds,
        "maxDelaySeconds": seconds,
    }


def manifest(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "etl.sparkops.io/v1alpha1", "kind": "ETLPipeline", "metadata": {"name": name},
            "spec": {"spark": SPARK, **spec}}  # fmt: skip


def write_csv(folder: Path, rows: list[tuple[Any, ...]], header: str, files: int = 2) -> dict[str, Any]:
    """`rows` spread in order over `files` CSV files with a header; the extract block for them."""
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(rows) // files)
    for number in range(files):
        chunk = rows[number * per_file : (number + 1) * per_file]
        body = "".join(",".join(str(value) for value in row) + "\n" for row in chunk)
        (folder / f"part-{number}.csv").write_text(header + "\n" + body)
    return {"sourceType": "S3", "path": str(folder), "format": "csv",
            "options": {"header": "true", "inferSchema": "true"}}  # fmt: skip


class EtlRun:
    """`etl run` of one manifest in its own process, its log in a file the test reads."""

    #: Runs of the running test, killed at its end (conftest.py) whatever the test did.
    started: ClassVar[list[EtlRun]] = []

    def __init__(self, folder: Path, document: dict[str, Any], secrets: Mapping[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = folder / "pipeline.yaml"
        self.config.write_text(yaml.safe_dump(document))
        self.log = folder / "run.log"
        self.termination_log = folder / "termination.json"
        env = {
            **os.environ,
            "ETL_SPARK_JARS": os.pathsep.join(str(jar) for jar in connector_jars()),
            "PYTHONPATH": str(REPO_ROOT / "job_image"),
            "ETL_LOG_FORMAT": "json",
            **secrets,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "etl_job.cli", "run", str(self.config), "--master", "local[2]",
             "--termination-log", str(self.termination_log), "--run-id", "fault"],
            env=env, cwd=folder, stdout=(folder / "stdout").open("w"), stderr=self.log.open("w"),
            start_new_session=True,
        )  # fmt: skip
        EtlRun.started.append(self)

    def logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float = RUN_TIMEOUT) -> None:
        """Until `done()`; fails naming `what` if the run ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not done():
            assert self.process.poll() is None, f"the run ended before {what}:\n{self.logged()[-4000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s:\n{self.logged()[-4000:]}"
            time.sleep(0.1)

    def wait_logged(self, text: str, timeout: float = RUN_TIMEOUT) -> None:
        self.wait_for(f"log line {text!r}", lambda: text in self.logged(), timeout)

    def finish(self, timeout: float = RUN_TIMEOUT) -> int:
        """The exit code, once the run has ended by itself."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the run did not end within {timeout:.0f} s:\n{self.logged()[-4000:]}"
            ) from None

    def metrics(self) -> dict[str, Any]:
        """The termination message the operator would read."""
        found: dict[str, Any] = json.loads(self.termination_log.read_text())
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def wait_until(what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if done():
                return
        except Exception:  # noqa: BLE001 - not yet; the deadline bounds the tries
            pass
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)
