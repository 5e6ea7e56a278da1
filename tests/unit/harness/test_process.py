"""The harness fails fast and says which component broke, with the end of its log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.infra import process
from tests.infra.process import HarnessError, ServerProcess, run_checked
from tests.infra.versions import ensure_built


def _server(tmp_path: Path, script: str) -> ServerProcess:
    return ServerProcess("fake-db", [sys.executable, "-c", script], log_path=tmp_path / "fake.log")


def test_a_server_that_dies_is_reported_with_its_log(tmp_path: Path) -> None:
    server = _server(tmp_path, "print('listen failed: port in use', flush=True); raise SystemExit(3)").start()
    with pytest.raises(HarnessError) as raised:
        server.wait_until(lambda: False, what="accepting connections", timeout=30)
    message = str(raised.value)
    assert "fake-db exited with code 3 before accepting connections" in message
    assert "listen failed: port in use" in message


def test_a_server_that_never_gets_ready_times_out_naming_it(tmp_path: Path) -> None:
    server = _server(tmp_path, "import time; print('still booting', flush=True); time.sleep(60)").start()
    started = time.monotonic()
    try:
        with pytest.raises(HarnessError) as raised:
            server.wait_until(lambda: False, what="answering /health", timeout=1)
    finally:
        server.stop(grace=2)
    assert time.monotonic() - started < 10
    assert "fake-db did not become ready (answering /health) within 1s" in str(raised.value)
    assert "still booting" in str(raised.value)
    assert not server.running


def test_readiness_errors_are_retried_until_ready(tmp_path: Path) -> None:
    server = _server(tmp_path, "import time; time.sleep(60)").start()
    attempts: list[int] = []

    def ready() -> bool:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionRefusedError("not yet")
        return True

    try:
        server.wait_until(ready, what="ready", timeout=30)
    finally:
        server.stop(grace=2)
    assert len(attempts) == 3


def test_a_failed_one_shot_command_names_the_component(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"kafka: .* exited with 1:\nbad config"):
        run_checked("kafka", [sys.executable, "-c", "import sys; sys.exit('bad config')"], timeout=30)


def test_a_failed_build_script_names_the_component(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "TIMINGS", [])  # keep this fake build out of the run's timing table
    script = tmp_path / "build.sh"
    script.write_text("echo 'go: module not found' >&2; exit 1\n")
    with pytest.raises(HarnessError, match=r"minio: build\.sh failed with 1:\ngo: module not found"):
        ensure_built("minio", script)


def test_servers_left_running_by_a_failed_start_are_stopped_at_exit(tmp_path: Path) -> None:
    server = _server(tmp_path, "import time; time.sleep(60)").start()
    assert server.running
    process.stop_all()
    assert not server.running
