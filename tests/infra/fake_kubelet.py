"""A test-only kubelet: binds the operator's pods to a fake Node, runs each pod's container
command as a local process with the pod's env and volumes, and writes pod status back the way
a kubelet does (Pending, Running, terminated with exit code and termination message).

There is no container runtime on the test machines, so images are never pulled: the command
runs on the host, with the venv's `bin` first on PATH. Absolute paths a container would see
(volume mounts, the termination-message path) cannot exist on the host, so each is remapped
into a per-pod sandbox directory, and every occurrence of such a path in the container's
command, args and env values is rewritten to its sandbox path (longest path first).

A second mode, for benchmarks, starts no process: it marks each pod Running, then Succeeded
(or Failed) with a given termination message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=sparkops-etl"
NODE_NAME = "fake-kubelet"
NODE_IP = "127.0.0.1"
POD_IP = "127.0.0.1"
#: Images matching this pattern "fail to pull": ErrImagePull, then ImagePullBackOff.
UNPULLABLE_IMAGE = r"does-not-exist"
#: Host variables a pod's process inherits, so `etl` from the venv, Java and Spark work.
PASSTHROUGH_ENV = ("HOME", "JAVA_HOME", "SPARK_HOME", "HADOOP_HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
PASSTHROUGH_PREFIXES = ("PYTHON", "PYSPARK", "VIRTUAL_ENV", "JAVA_", "SPARK_")

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
#: What a kubelet keeps of a termination message, and of the log it falls back to.
MAX_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
DEFAULT_GRACE_SECONDS = 30
CONFIG_RETRY_SECONDS = 1.0
REQUEST_TIMEOUT = 15.0
WATCH_SECONDS = 5
LEASE_RENEW_SECONDS = 10.0


class KubeletApiError(RuntimeError):
    """The API server refused a request of the fake kubelet."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:500]}")
        self.status = status


class ContainerConfigError(Exception):
    """The container cannot be created yet; `reason` is the waiting reason a kubelet reports."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class PhaseFlip:
    """Benchmark mode: no process; Running for `running_seconds`, then terminated."""

    message: str = ""
    exit_code: int = 0
    running_seconds: float = 0.0


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PathRemap:
    """Absolute container paths -> sandbox paths, applied to whole strings (longest first).

    A path matches only where it starts a path (not preceded by a name character, so
    `/opt/etc/etl` does not match `/etc/etl`; `file:///etc/etl` does) and ends at a path
    boundary (`/etc/etl` does not match `/etc/etl-old`)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = {k.rstrip("/"): v for k, v in mapping.items() if k.rstrip("/")}
        ordered = sorted(self.mapping, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<![\w.\-])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w.\-])")
            if ordered
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: self.mapping[match.group(1)], text)


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: known names are replaced, unknown ones kept, `$$` -> `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def kubelet_exit_code(returncode: int) -> int:
    """A container runtime reports death by signal N as exit code 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def tail_bytes(path: Path, max_bytes: int) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - max_bytes))
        return file.read().decode(errors="replace")


def fallback_log_message(log_path: Path) -> str:
    """What a kubelet reports under FallbackToLogsOnError: the last 80 lines, at most 2 KiB."""
    lines = tail_bytes(log_path, 1 << 20).splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
    data = "".join(lines).encode()
    return data[-FALLBACK_LOG_BYTES:].decode(errors="replace")


class FakeKubelet:
    """A kubelet for the harness: one background thread watching pods, one thread per pod.

    `namespaces`: only pods there are served (None: every namespace). `phase_flip`: benchmark
    mode (see `PhaseFlip`); it can be switched at any time with `flip_phases()` /
    `run_processes()` and applies to pods bound afterwards."""

    def __init__(
        self,
        kubeconfig: Path,
        sandbox_root: Path,
        *,
        namespaces: Iterable[str] | None = None,
        node_name: str = NODE_NAME,
        label_selector: str = MANAGED_BY_SELECTOR,
        phase_flip: PhaseFlip | None = None,
        unpullable_image: str = UNPULLABLE_IMAGE,
        image_pull_backoff_seconds: float = 1.0,
    ) -> None:
        from kubernetes import config

        self.kubeconfig = kubeconfig
        self.sandbox_root = sandbox_root
        self.namespaces: set[str] | None = set(namespaces) if namespaces is not None else None
        self.node_name = node_name
        self.label_selector = label_selector
        self.phase_flip = phase_flip
        self.unpullable_image = re.compile(unpullable_image)
        self.image_pull_backoff_seconds = image_pull_backoff_seconds
        self.log_path = sandbox_root / "fake-kubelet.log"
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._pods: dict[str, PodWorker] = {}
        self._sandboxes: dict[tuple[str, str], Path] = {}
        self._thread: threading.Thread | None = None
        self._last_lease = 0.0
        sandbox_root.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"tests.fake_kubelet.{id(self):x}")
        self.logger.setLevel(logging.INFO)
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(message)s"))
        self.logger.addHandler(self._handler)

    # -- the test's view ---------------------------------------------------------------

    def flip_phases(self, message: str = "", exit_code: int = 0, running_seconds: float = 0.0) -> None:
        """Benchmark mode from now on: pods go Running, then terminate with `message`."""
        self.phase_flip = PhaseFlip(message, exit_code, running_seconds)

    def run_processes(self) -> None:
        """Back to running each pod's command (the default)."""
        self.phase_flip = None

    def watch_namespace(self, namespace: str) -> None:
        if self.namespaces is not None:
            self.namespaces.add(namespace)

    def sandbox(self, namespace: str, pod: str) -> Path:
        """The sandbox dir of the latest pod of that name (its volumes, log, termination log)."""
        with self._lock:
            found = self._sandboxes.get((namespace, pod))
        if found is None:
            raise KeyError(f"the fake kubelet has not run pod {namespace}/{pod}")
        return found

    def pod_log(self, namespace: str, pod: str) -> str:
        """stdout and stderr of the pod's process (what `kubectl logs` would show)."""
        log = self.sandbox(namespace, pod) / "log"
        return log.read_text(errors="replace") if log.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        return "\n".join(text[-lines:])

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 30) -> FakeKubelet:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._register_node()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.logger.exception("registering node %s failed; retrying", self.node_name)
                time.sleep(0.5)
        self._thread = threading.Thread(target=self._watch_loop, name="fake-kubelet-watch", daemon=True)
        self._thread.start()
        self.logger.info("started: node %s, namespaces %s", self.node_name, self.namespaces or "all")
        return self

    def stop(self, timeout: float = 20) -> None:
        """Kill every process still running; pods not yet finished are marked Failed."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            # A watch blocks for up to WATCH_SECONDS; once stopping, it observes nothing more,
            # so there is no need to wait for it to notice.
            self._thread.join(timeout=0.5)
        with self._lock:
            workers = list(self._pods.values())
        for worker in workers:
            worker.wake.set()
        for worker in workers:
            worker.join(max(0.1, deadline - time.monotonic()))
        for worker in workers:
            worker.kill_now()
        self.logger.info("stopped")
        self.logger.removeHandler(self._handler)
        self._handler.close()
        self.api.close()

    # -- API access: raw JSON, so no model of the generated client is in the way --------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        params = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()) or None,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*params, _request_timeout=REQUEST_TIMEOUT)
        response.read()
        data = response.data.decode() if response.data else ""
        if not 200 <= response.status <= 299:
            raise KubeletApiError(response.status, method, path, data)
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "fake-kubelet",
                },
            },
        }
        try:
            self.request("POST", "/api/v1/nodes", body=node)
        except KubeletApiError as error:
            if error.status != 409:
                raise
        self._node_heartbeat()

    def _node_heartbeat(self) -> None:
        now = now_rfc3339()
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
        status = {
            "status": {
                "capacity": resources,
                "allocatable": resources,
                "addresses": [
                    {"type": "InternalIP", "address": NODE_IP},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "fake kubelet is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "nodeInfo": {
                    "kubeletVersion": "v0.0.0-fake",
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "fake://local-process",
                    "osImage": "fake-kubelet",
                    "kernelVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
        }
        self.request(
            "PATCH",
            f"/api/v1/nodes/{self.node_name}/status",
            body=status,
            content_type="application/strategic-merge-patch+json",
        )
        self._renew_lease()

    def _renew_lease(self) -> None:
        """The node lifecycle controller counts a node healthy while its Lease is renewed."""
        self._last_lease = time.monotonic()
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        spec: dict[str, Any] = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": 40,
            "renewTime": now_micro(),
        }
        try:
            self.request("PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json")
        except KubeletApiError as error:
            if error.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            self.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=lease)

    # -- the watch ---------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """List, then watch from the list's resourceVersion; on any error or at the end of a
        watch, list again (which is also the resync that retries what failed)."""
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        while not self.stopping.is_set():
            try:
                if time.monotonic() - self._last_lease > LEASE_RENEW_SECONDS:
                    self._node_heartbeat()
                listed = self.request("GET", "/api/v1/pods", query={"labelSelector": self.label_selector})
                for pod in listed.get("items", []):
                    self._observe(pod)
                version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch()
                for event in stream.stream(
                    core.list_pod_for_all_namespaces,
                    label_selector=self.label_selector,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=False,
                    deserialize=False,
                    _request_timeout=WATCH_SECONDS + REQUEST_TIMEOUT,
                ):
                    if self.stopping.is_set():
                        stream.stop()
                        break
                    # deserialize=False yields {"type", "object"} with the object as a plain dict.
                    if event["type"] == "ERROR":
                        self.logger.info("watch error event, relisting: %s", event.get("object"))
                        break
                    self._observe(event["object"])
            except Exception:
                self.logger.exception("watching pods failed; relisting")
                self.stopping.wait(0.5)

    def _observe(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        if self.namespaces is not None and meta["namespace"] not in self.namespaces:
            return
        uid = meta["uid"]
        node = spec.get("nodeName")
        phase = pod.get("status", {}).get("phase")
        deleting = meta.get("deletionTimestamp") is not None
        with self._lock:
            if self.stopping.is_set():
                return
            worker = self._pods.get(uid)
            if worker is not None:
                if deleting:
                    worker.request_deletion(meta.get("deletionGracePeriodSeconds"))
                return
            if node not in (None, "", self.node_name):
                return
            if deleting:
                if node == self.node_name and phase not in ("Succeeded", "Failed"):
                    # Bound here by an earlier kubelet, now gone: finalize the deletion.
                    threading.Thread(target=self._finalize_orphan, args=(meta,), daemon=True).start()
                return
            if node == self.node_name and phase in ("Succeeded", "Failed"):
                return
            sandbox = self.sandbox_root / meta["namespace"] / f"{meta['name']}-{uid[:8]}"
            self._sandboxes[(meta["namespace"], meta["name"])] = sandbox
            worker = PodWorker(self, pod, sandbox, bound=bool(node))
            self._pods[uid] = worker
        worker.start()

    def _finalize_orphan(self, meta: dict[str, Any]) -> None:
        try:
            delete_pod_now(self, meta["namespace"], meta["name"], meta["uid"])
        except Exception:
            self.logger.exception("finalizing deletion of %s/%s failed", meta["namespace"], meta["name"])


def delete_pod_now(kubelet: FakeKubelet, namespace: str, name: str, uid: str) -> None:
    """What a kubelet does once a deleted pod's containers are gone: delete with grace 0."""
    body = {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": uid},
    }
    try:
        kubelet.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=body)
    except KubeletApiError as error:
        if error.status not in (404, 409):
            raise


@dataclass
class PreparedContainer:
    argv: list[str]
    env: dict[str, str]


class PodWorker:
    """One pod's life on the fake node, in its own thread."""

    def __init__(self, kubelet: FakeKubelet, pod: dict[str, Any], sandbox: Path, *, bound: bool) -> None:
        self.kubelet = kubelet
        self.pod = pod
        self.namespace: str = pod["metadata"]["namespace"]
        self.name: str = pod["metadata"]["name"]
        self.uid: str = pod["metadata"]["uid"]
        self.spec: dict[str, Any] = pod.get("spec", {})
        self.container: dict[str, Any] = (self.spec.get("containers") or [{}])[0]
        self.sandbox = sandbox
        self.bound = bound
        self.logger = kubelet.logger
        self.wake = threading.Event()
        self.deletion_grace: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at: str | None = None
        self.start_time = pod.get("status", {}).get("startTime")
        self.deadline: float | None = None
        self.podip_set = False
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)
        self._conditions: dict[str, tuple[str, str]] = {}

    # -- signals from the watch ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def request_deletion(self, grace: int | None) -> None:
        if self.deletion_grace is None:
            self.deletion_grace = DEFAULT_GRACE_SECONDS if grace is None else int(grace)
            self.logger.info("%s/%s: deletion requested (grace %ss)", self.namespace, self.name, grace)
            self.wake.set()

    def kill_now(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process, signal.SIGKILL)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.logger.error(
                    "%s/%s: process %s survived SIGKILL", self.namespace, self.name, self.process.pid
                )

    def _interrupted(self) -> str | None:
        """Why the pod must stop now, if it must: deleted, past its deadline, kubelet stopping."""
        if self.deletion_grace is not None:
            return "deleted"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        if self.kubelet.stopping.is_set():
            return "stopping"
        return None

    def _pause(self, seconds: float) -> str | None:
        """Sleep up to `seconds`, cut short by deletion, deadline or stop."""
        end = time.monotonic() + seconds
        while (why := self._interrupted()) is None:
            left = end - time.monotonic()
            if self.deadline is not None:
                left = min(left, self.deadline - time.monotonic())
            if left <= 0:
                return self._interrupted()
            self.wake.wait(min(left, 0.5))
            self.wake.clear()
        return why

    # -- the pod's life --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._live()
        except Exception:
            self.logger.exception("%s/%s: the fake kubelet failed on this pod", self.namespace, self.name)

    def _live(self) -> None:
        if not self.bound and not self._bind():
            return
        if self.start_time is None:
            self.start_time = now_rfc3339()
        deadline_seconds = self.spec.get("activeDeadlineSeconds")
        if deadline_seconds is not None:
            self.deadline = time.monotonic() + int(deadline_seconds)
        self.sandbox.mkdir(parents=True, exist_ok=True)
        self._write_status("Pending", self._waiting("ContainerCreating", ""))

        flip = self.kubelet.phase_flip
        if flip is not None:
            self._flip(flip)
            return
        why = self._pull_image()
        prepared: PreparedContainer | None = None
        last_error = ""
        while why is None:
            try:
                prepared = self._prepare()
                break
            except ContainerConfigError as error:
                if error.message != last_error:
                    self.logger.info("%s/%s: %s: %s", self.namespace, self.name, error.reason, error.message)
                    self._write_status("Pending", self._waiting(error.reason, error.message))
                    last_error = error.message
                why = self._pause(CONFIG_RETRY_SECONDS)
        if prepared is not None:
            why = self._execute(prepared)
        if why is not None:
            self._stop_early(why)

    def _bind(self) -> bool:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.kubelet.node_name},
        }
        try:
            self.kubelet.request(
                "POST", f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/binding", body=binding
            )
        except KubeletApiError as error:
            # 409: bound by someone else meanwhile; 404: deleted before binding. Neither is ours.
            self.logger.info("%s/%s: not bound: %s", self.namespace, self.name, error)
            return False
        self.logger.info("%s/%s: bound to %s", self.namespace, self.name, self.kubelet.node_name)
        return True

    def _flip(self, flip: PhaseFlip) -> None:
        self.started_at = now_rfc3339()
        self._write_status("Running", {"running": {"startedAt": self.started_at}}, ready=True)
        why = self._pause(flip.running_seconds) if flip.running_seconds > 0 else self._interrupted()
        if why is not None:
            self._stop_early(why)
            return
        self._write_terminated(flip.exit_code, flip.message)

    def _pull_image(self) -> str | None:
        image = str(self.container.get("image", ""))
        if not self.kubelet.unpullable_image.search(image):
            return self._interrupted()
        backoff = self.kubelet.image_pull_backoff_seconds
        while True:
            self._write_status(
                "Pending",
                self._waiting(
                    "ErrImagePull",
                    f'failed to pull and unpack image "{image}": failed to resolve reference '
                    f'"{image}": {image}: not found',
                ),
            )
            if (why := self._pause(backoff)) is not None:
                return why
            self._write_status(
                "Pending", self._waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
            )
            if (why := self._pause(backoff * 4)) is not None:
                return why
            backoff = min(backoff * 2, 20.0)

    def _execute(self, prepared: PreparedContainer) -> str | None:
        log_path = self.sandbox / "log"
        try:
            with log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    prepared.argv,
                    env=prepared.env,
                    cwd=self.sandbox,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except OSError as failed:
            self.logger.info("%s/%s: cannot start %s: %s", self.namespace, self.name, prepared.argv, failed)
            self.started_at = now_rfc3339()
            self._write_terminated(128, f"failed to start container: {failed}", reason="StartError")
            return None
        self.started_at = now_rfc3339()
        self.logger.info(
            "%s/%s: started pid %s: %s", self.namespace, self.name, self.process.pid, prepared.argv
        )
        self._write_status("Running", {"running": {"startedAt": self.started_at}}, ready=True)
        while self.process.poll() is None:
            if (why := self._interrupted()) is not None:
                return why
            self.wake.wait(0.1)
            self.wake.clear()
        code = kubelet_exit_code(self.process.returncode)
        self.logger.info("%s/%s: exited with %s", self.namespace, self.name, code)
        self._write_terminated(code, self._termination_message(code))
        if self.deletion_grace is not None:
            delete_pod_now(self.kubelet, self.namespace, self.name, self.uid)
        return None

    def _stop_early(self, why: str) -> None:
        """Deleted, past the deadline, or the kubelet stopping: kill the process, report, finish."""
        grace = DEFAULT_GRACE_SECONDS
        if why == "deleted" and self.deletion_grace is not None:
            grace = self.deletion_grace
        elif why == "deadline":
            grace = int(self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))
        elif why == "stopping":
            grace = 2
        self._terminate(grace)
        code = (
            kubelet_exit_code(self.process.returncode)
            if self.process and self.process.returncode is not None
            else 137
        )
        running = self.started_at is not None
        try:
            if why == "deadline":
                self.logger.info("%s/%s: active deadline exceeded", self.namespace, self.name)
                self._write_terminated(
                    code,
                    self._termination_message(code) if running else "",
                    phase="Failed",
                    pod_reason="DeadlineExceeded",
                    pod_message="Pod was active on the node longer than the specified deadline",
                    container_started=running,
                )
            elif why == "stopping":
                self._write_terminated(
                    code,
                    "the fake kubelet stopped",
                    phase="Failed",
                    pod_reason="NodeShutdown",
                    pod_message="the fake kubelet stopped",
                    container_started=running,
                )
            elif running:
                self._write_terminated(code, self._termination_message(code))
        except KubeletApiError as error:
            self.logger.info("%s/%s: final status not written: %s", self.namespace, self.name, error)
        if why == "deleted":
            delete_pod_now(self.kubelet, self.namespace, self.name, self.uid)
            self.logger.info("%s/%s: deleted", self.namespace, self.name)

    def _terminate(self, grace: int) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            self.logger.info(
                "%s/%s: still running after %ss grace: SIGKILL", self.namespace, self.name, grace
            )
            self.kill_now()

    # -- env, volumes, paths -------------------------------------------------------------------

    def _prepare(self) -> PreparedContainer:
        if len(self.spec.get("containers") or []) != 1 or self.spec.get("initContainers"):
            raise ContainerConfigError(
                "CreateContainerError", "the fake kubelet runs exactly one container and no initContainers"
            )
        argv_raw = [*(self.container.get("command") or []), *(self.container.get("args") or [])]
        if not self.container.get("command"):
            raise ContainerConfigError(
                "CreateContainerError", "the fake kubelet pulls no image, so the container needs a command"
            )
        volumes = self._materialize_volumes()
        remap = self._remap(volumes)
        pod_env = self._resolve_env()
        expanded: dict[str, str] = {}
        for key, value in pod_env:
            expanded[key] = expand_references(value, expanded)
        argv = [remap(expand_references(arg, expanded)) for arg in argv_raw]
        env = {key: value for key, value in os.environ.items() if _passed_through(key)}
        env.update({key: remap(value) for key, value in expanded.items() if key != "PATH"})
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env.setdefault("HOSTNAME", self.name)
        server = urllib.parse.urlsplit(self.kubelet.api.configuration.host)
        env.setdefault("KUBERNETES_SERVICE_HOST", server.hostname or NODE_IP)
        env.setdefault("KUBERNETES_SERVICE_PORT", str(server.port or 443))
        termination_log = self.sandbox / "termination-log"
        termination_log.write_bytes(b"")
        return PreparedContainer(argv, env)

    def _remap(self, volumes: Mapping[str, Path]) -> PathRemap:
        mapping: dict[str, str] = {}
        for mount in self.container.get("volumeMounts") or []:
            mount_path = str(mount["mountPath"]).rstrip("/")
            if not mount_path:
                continue
            target = volumes[mount["name"]]
            if mount.get("subPath"):
                target = target / mount["subPath"]
            host_path = self.sandbox / mount_path.lstrip("/")
            host_path.parent.mkdir(parents=True, exist_ok=True)
            if host_path.is_symlink():
                host_path.unlink()
            host_path.symlink_to(target)
            mapping[mount_path] = str(host_path)
        termination_path = self.container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        mapping[termination_path] = str(self.sandbox / "termination-log")
        return PathRemap(mapping)

    def _materialize_volumes(self) -> dict[str, Path]:
        """Each volume as a dir under `<sandbox>/volumes/<name>`; a mount is a symlink to it."""
        paths: dict[str, Path] = {}
        for volume in self.spec.get("volumes") or []:
            path = self.sandbox / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            paths[volume["name"]] = path
            if "emptyDir" in volume:
                continue
            if "hostPath" in volume:
                path.rmdir()
                path.symlink_to(volume["hostPath"]["path"])
            elif "configMap" in volume:
                self._write_keys(path, self._object_keys("configmaps", volume["configMap"], volume_of=volume))
            elif "secret" in volume:
                self._write_keys(path, self._object_keys("secrets", volume["secret"], volume_of=volume))
            elif "downwardAPI" in volume:
                self._write_downward(path, volume["downwardAPI"].get("items") or [])
            elif "projected" in volume:
                for source in volume["projected"].get("sources") or []:
                    self._project(path, source, volume)
            else:
                kind = next((key for key in volume if key != "name"), "?")
                raise ContainerConfigError(
                    "ContainerCreating",
                    f"the fake kubelet cannot mount volume {volume['name']!r} of type {kind}",
                )
        return paths

    def _project(self, path: Path, source: dict[str, Any], volume: dict[str, Any]) -> None:
        if "configMap" in source:
            self._write_keys(path, self._object_keys("configmaps", source["configMap"], volume_of=volume))
        elif "secret" in source:
            self._write_keys(path, self._object_keys("secrets", source["secret"], volume_of=volume))
        elif "downwardAPI" in source:
            self._write_downward(path, source["downwardAPI"].get("items") or [])
        elif "serviceAccountToken" in source:
            token_source = source["serviceAccountToken"]
            account = self.spec.get("serviceAccountName") or "default"
            request: dict[str, Any] = {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": int(token_source.get("expirationSeconds", 3600)),
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
                },
            }
            if token_source.get("audience"):
                request["spec"]["audiences"] = [token_source["audience"]]
            try:
                answer = self.kubelet.request(
                    "POST",
                    f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
                    body=request,
                )
            except KubeletApiError as error:
                raise ContainerConfigError(
                    "ContainerCreating", f"cannot get a token for ServiceAccount {account}: {error}"
                ) from error
            (path / token_source.get("path", "token")).write_text(answer["status"]["token"])

    def _write_keys(self, path: Path, files: Mapping[str, bytes]) -> None:
        for relative, content in files.items():
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def _write_downward(self, path: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "fieldRef" in item:
                (path / item["path"]).write_text(self._field(item["fieldRef"]["fieldPath"]))

    def _object_keys(
        self, plural: str, source: dict[str, Any], *, volume_of: dict[str, Any]
    ) -> dict[str, bytes]:
        """The files a configMap or secret volume (or projection) holds: its keys, or `items`."""
        name = source.get("name") or source.get("secretName", "")
        kind = "configmap" if plural == "configmaps" else "secret"
        found = self._read(plural, name)
        if found is None:
            if source.get("optional"):
                return {}
            raise ContainerConfigError(
                "ContainerCreating",
                f'MountVolume.SetUp failed for volume "{volume_of["name"]}" : {kind} "{name}" not found',
            )
        data = _decoded_data(found, secret=plural == "secrets")
        items = source.get("items")
        if not items:
            return data
        files: dict[str, bytes] = {}
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise ContainerConfigError(
                    "ContainerCreating",
                    f'MountVolume.SetUp failed for volume "{volume_of["name"]}" : configuration of '
                    f"{kind} {self.namespace}/{name} has no key {item['key']!r}",
                )
            files[item["path"]] = data[item["key"]]
        return files

    def _read(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return self.kubelet.request("GET", f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        except KubeletApiError as error:
            if error.status == 404:
                return None
            raise ContainerConfigError("CreateContainerConfigError", str(error)) from error

    def _resolve_env(self) -> list[tuple[str, str]]:
        """The container's env in order, as a kubelet resolves it; failures as the kubelet words them."""
        resolved: list[tuple[str, str]] = []
        for source in self.container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            reference = source.get("configMapRef") or source.get("secretRef") or {}
            plural = "configmaps" if "configMapRef" in source else "secrets"
            found = self._read(plural, reference.get("name", ""))
            if found is None:
                if reference.get("optional"):
                    continue
                kind = "configmap" if plural == "configmaps" else "secret"
                raise ContainerConfigError(
                    "CreateContainerConfigError", f'{kind} "{reference.get("name")}" not found'
                )
            for key, content in _decoded_data(found, secret=plural == "secrets").items():
                resolved.append((prefix + key, content.decode(errors="replace")))
        for variable in self.container.get("env") or []:
            name = variable["name"]
            if "valueFrom" not in variable:
                resolved.append((name, str(variable.get("value", ""))))
                continue
            value_from = variable["valueFrom"]
            if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
                value = self._key_ref(value_from)
                if value is not None:
                    resolved.append((name, value))
            elif "fieldRef" in value_from:
                resolved.append((name, self._field(value_from["fieldRef"]["fieldPath"])))
            else:
                self.logger.info(
                    "%s/%s: env %s: only value, secretKeyRef, configMapKeyRef and fieldRef are resolved",
                    self.namespace,
                    self.name,
                    name,
                )
        return resolved

    def _key_ref(self, value_from: dict[str, Any]) -> str | None:
        is_secret = "secretKeyRef" in value_from
        reference = value_from["secretKeyRef" if is_secret else "configMapKeyRef"]
        kind, plural = ("Secret", "secrets") if is_secret else ("ConfigMap", "configmaps")
        name, key = reference.get("name", ""), reference["key"]
        found = self._read(plural, name)
        if found is None:
            if reference.get("optional"):
                return None
            raise ContainerConfigError("CreateContainerConfigError", f'{kind.lower()} "{name}" not found')
        data = _decoded_data(found, secret=is_secret)
        if key not in data:
            if reference.get("optional"):
                return None
            raise ContainerConfigError(
                "CreateContainerConfigError", f"couldn't find key {key} in {kind} {self.namespace}/{name}"
            )
        return data[key].decode(errors="replace")

    def _field(self, field_path: str) -> str:
        meta = self.pod["metadata"]
        simple = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": self.kubelet.node_name,
            "spec.serviceAccountName": str(self.spec.get("serviceAccountName", "default")),
            "status.podIP": POD_IP,
            "status.podIPs": POD_IP,
            "status.hostIP": NODE_IP,
            "status.hostIPs": NODE_IP,
        }
        if field_path in simple:
            return simple[field_path]
        matched = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", field_path)
        if matched:
            return str((meta.get(matched.group(1)) or {}).get(matched.group(2), ""))
        raise ContainerConfigError("CreateContainerConfigError", f"unsupported fieldPath {field_path!r}")

    def _termination_message(self, exit_code: int) -> str:
        message = tail_bytes(self.sandbox / "termination-log", MAX_MESSAGE_BYTES)
        policy = self.container.get("terminationMessagePolicy", "File")
        if not message.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
            return fallback_log_message(self.sandbox / "log")
        return message

    # -- status ----------------------------------------------------------------------------

    def _waiting(self, reason: str, message: str) -> dict[str, Any]:
        state: dict[str, Any] = {"waiting": {"reason": reason}}
        if message:
            state["waiting"]["message"] = message
        return state

    def _condition(self, kind: str, status: str, reason: str = "") -> dict[str, Any]:
        previous = self._conditions.get(kind)
        since = previous[1] if previous is not None and previous[0] == status else now_rfc3339()
        self._conditions[kind] = (status, since)
        condition = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
        if reason:
            condition["reason"] = reason
        return condition

    def _write_status(
        self,
        phase: str,
        state: dict[str, Any],
        *,
        ready: bool = False,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        terminal = phase in ("Succeeded", "Failed")
        not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
        sandbox_ready = self.started_at is not None or phase == "Running"
        container_status: dict[str, Any] = {
            "name": self.container.get("name", "main"),
            "image": self.container.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": phase == "Running",
            "restartCount": 0,
            "state": state,
        }
        if self.started_at is not None:
            container_status["containerID"] = f"fake://{self.uid}"
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "startTime": self.start_time,
            "conditions": [
                self._condition(
                    "PodReadyToStartContainers", "True" if sandbox_ready and not terminal else "False"
                ),
                self._condition("Initialized", "True"),
                self._condition("Ready", "True" if ready else "False", "" if ready else not_ready_reason),
                self._condition(
                    "ContainersReady", "True" if ready else "False", "" if ready else not_ready_reason
                ),
                self._condition("PodScheduled", "True"),
            ],
            "containerStatuses": [container_status],
        }
        if sandbox_ready:
            status["podIP"] = POD_IP
            status["podIPs"] = [{"ip": POD_IP}]
        if reason is not None:
            status["reason"] = reason
        if message is not None:
            status["message"] = message
        self.kubelet.request(
            "PATCH",
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
            body={"metadata": {"uid": self.uid}, "status": status},
            content_type="application/merge-patch+json",
        )

    def _write_terminated(
        self,
        exit_code: int,
        message: str,
        *,
        reason: str | None = None,
        phase: str | None = None,
        pod_reason: str | None = None,
        pod_message: str | None = None,
        container_started: bool = True,
    ) -> None:
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "finishedAt": now_rfc3339(),
        }
        if container_started and self.started_at is not None:
            terminated["startedAt"] = self.started_at
        if message:
            terminated["message"] = message
        self._write_status(
            phase or ("Succeeded" if exit_code == 0 else "Failed"),
            {"terminated": terminated},
            reason=pod_reason,
            message=pod_message,
        )


def _decoded_data(found: dict[str, Any], *, secret: bool) -> dict[str, bytes]:
    if secret:
        return {key: base64.b64decode(value) for key, value in (found.get("data") or {}).items()}
    data = {key: str(value).encode() for key, value in (found.get("data") or {}).items()}
    data.update({key: base64.b64decode(value) for key, value in (found.get("binaryData") or {}).items()})
    return data


def _passed_through(key: str) -> bool:
    return key in PASSTHROUGH_ENV or key.startswith(PASSTHROUGH_PREFIXES)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    """The process runs in its own session: signal its whole group, children included."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
