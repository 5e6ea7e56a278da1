"""The node's long-running programs: started detached (they outlive the command that started
them, so `make sandbox` can return), found again by pid file, stopped as a process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.infra.process import HarnessError, tail


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: list[str]
    log: Path
    pid_file: Path
    env: dict[str, str] | None = None

    def pid(self) -> int | None:
        """The daemon's pid when it runs now (a stale pid file counts as not running)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        # A recycled pid belongs to some other program: compare the command line.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            return None
        # Empty while the process is between fork and exec.
        return pid if not cmdline or Path(cmdline).name == Path(self.argv[0]).name else None

    @property
    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.running:
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            try:
                process = subprocess.Popen(
                    self.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **(self.env or {})},
                    start_new_session=True,
                )
            except OSError as failed:
                raise HarnessError(f"{self.name}: cannot execute {self.argv[0]}: {failed}") from failed
        self.pid_file.write_text(f"{process.pid}\n")

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float) -> None:
        """Poll `ready` until it holds; fail at once when the daemon dies, or at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running and not _still_there_after(self, 0.5):
                raise HarnessError(f"{self.name} exited before {what}.\n--- {self.log} ---\n{tail(self.log)}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not ready yet; the deadline bounds the retries
                pass
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name} did not become ready ({what}) within {timeout:.0f}s.\n"
                    f"--- {self.log} ---\n{tail(self.log)}"
                )
            time.sleep(0.3)

    def stop(self, grace: float = 20.0) -> None:
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.2)
            if alive(pid):
                _signal_group(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _still_there_after(daemon: Daemon, seconds: float) -> bool:
    time.sleep(seconds)
    return daemon.running


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes; the init of the machine reaps it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
