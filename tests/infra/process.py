"""Local server processes for the test harness: start, wait with a bound, show the log, stop."""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class HarnessError(RuntimeError):
    """A component of the harness could not be built, started or reached."""


@dataclass
class Timing:
    component: str
    step: str
    seconds: float


#: Every build and start the harness timed, in order; printed at the end of the test run.
TIMINGS: list[Timing] = []

#: Temp dirs of the servers started in this run; removed at the end of a run that passed.
WORKDIRS: list[Path] = []

#: Servers still running. A start that fails half-way (etcd up, the API server not) leaves
#: processes no fixture owns yet; they are stopped when the test process exits.
_RUNNING: set[ServerProcess] = set()


def stop_all() -> None:
    for process in list(_RUNNING):
        process.stop()


atexit.register(stop_all)


class timed:
    """Context manager that records how long one step of one component took."""

    def __init__(self, component: str, step: str) -> None:
        self.component, self.step = component, step

    def __enter__(self) -> timed:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        TIMINGS.append(Timing(self.component, self.step, time.monotonic() - self._start))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def service_user(name: str) -> str | None:
    """The system user a server should run as: `name` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError as missing:
        raise HarnessError(f"system user {name!r} does not exist; install its package") from missing
    return name


def make_workdir(component: str, owner: str | None = None) -> Path:
    """A fresh temp dir under the system temp root, so a service user can reach it."""
    path = Path(tempfile.mkdtemp(prefix=f"etl-{component}-"))
    WORKDIRS.append(path)
    if owner is not None:
        shutil.chown(path, user=owner, group=owner)
    return path


def run_checked(
    component: str,
    argv: Sequence[str],
    *,
    timeout: float,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a one-shot command of a component; raise naming the component if it fails."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user,
            env=env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        raise HarnessError(f"{component}: {argv[0]} did not finish within {timeout:.0f}s") from expired
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-30:]
        raise HarnessError(
            f"{component}: {' '.join(argv[:2])} exited with {done.returncode}:\n" + "\n".join(output)
        )
    return done.stdout


@dataclass(eq=False)
class ServerProcess:
    """One long-running server of the harness, its output captured in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                    user=self.user,
                    start_new_session=True,
                )
            except OSError as failed:
                raise HarnessError(f"{self.name}: cannot execute {self.argv[0]}: {failed}") from failed
        _RUNNING.add(self)
        return self

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def detach(self) -> None:
        """Leave the server running when this process exits (it is no longer stopped at exit)."""
        _RUNNING.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def wait_until(self, ready: Callable[[], bool], *, what: str, timeout: float) -> None:
        """Poll `ready` until it is true; fail fast if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                code = self._popen.returncode if self._popen else None
                raise HarnessError(
                    f"{self.name} exited with code {code} before {what}.\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not ready yet; the deadline bounds the retries
                pass
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"{self.name} did not become ready ({what}) within {timeout:.0f}s.\n"
                    f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, grace: float = 15.0) -> None:
        _RUNNING.discard(self)
        if self._popen is None or self._popen.poll() is not None:
            return
        # The server runs in its own session: signal the whole group, helpers included.
        os.killpg(self._popen.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait(timeout=5)
