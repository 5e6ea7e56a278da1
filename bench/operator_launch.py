"""Benchmark: how fast the operator turns new ETLPipelines into driver pods, and its memory.

Against the harness's control plane (etcd, kube-apiserver, kube-controller-manager on loopback),
with the operator as its own process (`python -m etl_operator`), so its memory and CPU are its own:

  1. one warm-up pipeline, so the operator's watches are live before the clock starts;
  2. N pipelines (default 500) created at once from a thread pool. A pod watch opened before the
     creates stamps each driver pod's ADDED event: time to driver pod = pod seen - create call
     returned; p50, p95, max, and launches a minute = N / (last pod seen - first create);
  3. more pipelines up to the total (default 1,000), created at a steady --rate (default 1,000
     a minute, the goal's rate), timed the same way;
  4. a fake kubelet that only flips phases (Pending, Running, Succeeded; no process) takes every
     run to its end; once the operator is idle, its memory (VmRSS; VmHWM, the peak) is read.

No kubelet runs while launches are timed: it would take the same cores for work that is not the
operator's (binding, status writes), and a new pipeline's pod needs none to be created.
`--kubelet-during-launch` starts it first instead. The CPU time of every process in the timed
window is shown, the machine's other processes included: on a shared machine they explain
much. A burst cannot take less time than the CPU its launches need, spread over the cores.

  .venv/bin/python bench/operator_launch.py --pipelines 500 --total 1000
  # cProfile of the operator's CPU time, every thread (slows it: its figures do not compare)
  BENCH_OPERATOR_PROFILE=/tmp/operator.prof .venv/bin/python bench/operator_launch.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.infra.fake_kubelet import FakeKubelet
    from tests.infra.kube import KubeCluster

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-operator"
GROUP, VERSION, PLURAL = "etl.sparkops.io", "v1alpha1", "etlpipelines"
LABEL_PIPELINE = f"{GROUP}/pipeline"
GOALS = {"launches_per_minute": 1000.0, "p95_seconds": 2.0, "rss_mb": 300.0}

#: Run as the operator's process when BENCH_OPERATOR_PROFILE names a file: cProfile of CPU time
#: in every thread (passes run in worker threads), the merged stats written when it stops.
PROFILED_OPERATOR = """
import atexit, cProfile, pstats, sys, threading, time
profiles = []
def _profile_thread(*_):
    profile = cProfile.Profile(time.thread_time)
    profiles.append(profile)
    profile.enable()
threading.setprofile(_profile_thread)
main_profile = cProfile.Profile(time.thread_time)
profiles.append(main_profile)
def _dump():
    stats = pstats.Stats(*profiles)
    stats.dump_stats(sys.argv[1])
atexit.register(_dump)
from etl_operator.__main__ import main
main_profile.enable()
code = main()
raise SystemExit(code)
"""


def pipeline(name: str) -> dict[str, Any]:
    """A small valid batch pipeline with no schedule: one run per spec generation."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ETLPipeline",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "mode": "batch",
            "extract": {"sourceType": "S3", "path": "s3a://raw/events/", "format": "csv"},
            "transforms": [
                {
                    "transformType": "Aggregation",
                    "groupBy": ["user_id"],
                    "aggregations": [{"column": "amount", "function": "sum", "as": "total_amount"}],
                }
            ],
            "load": {"sinkType": "S3", "path": f"s3a://out/{name}/", "format": "parquet"},
            "spark": {"driver": {"cores": 1, "memory": "1g"}},
        },
    }


# --- the machine and the operator's process -------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kb = proc_fields("/proc/meminfo", ("MemTotal",))["MemTotal"]
    return {
        "cores": str(os.cpu_count()),
        "RAM": f"{memory_kb / 1024 / 1024:.1f} GiB",
        "CPU": cpu,
        "Python": platform.python_version(),
        "load average at start (1, 5 min)": " ".join(Path("/proc/loadavg").read_text().split()[:2]),
    }


def proc_fields(path: str, names: Iterable[str]) -> dict[str, int]:
    """Numeric fields (kB) of /proc/<pid>/status or /proc/meminfo."""
    wanted, found = set(names), {}
    with open(path) as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in wanted:
                found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process on the machine used so far (busy time of all cores)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def pid_of(argv: list[str]) -> int | None:
    """The process running exactly `argv` (the harness's servers), for its CPU time."""
    wanted = "\0".join(argv).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().rstrip(b"\0") == wanted:
                    return int(entry.name)
            except OSError:
                continue
    return None


@dataclass
class Operator:
    """The operator in its own process, its log in `log_path`."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    health_port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MB."""
        found = proc_fields(f"/proc/{self.pid}/status", ("VmRSS", "VmHWM"))
        return found["VmRSS"] / 1024, found["VmHWM"] / 1024

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.popen.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=1) as ok:
                    if ok.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the operator was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def wait_idle(self, quiet_seconds: float = 3.0, timeout: float = 120) -> None:
        """Until the operator has used under 2% of a core for `quiet_seconds`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = cpu_seconds(self.pid)
            time.sleep(quiet_seconds)
            if cpu_seconds(self.pid) - before < 0.02 * quiet_seconds:
                return

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()  # kopf stops gracefully on SIGTERM (and a profile is written)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def start_operator(cluster: KubeCluster, workdir: Path, profile: str | None) -> Operator:
    from tests.infra.process import free_port

    health_port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "ETL_OPERATOR_WATCH_NAMESPACES": NAMESPACE,
        "ETL_OPERATOR_JOB_IMAGE": "registry.local/etl-job:bench",
        "ETL_OPERATOR_HEALTH_PORT": str(health_port),
        "ETL_OPERATOR_PEERING_NAME": "",  # one replica, no peering object
    }
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    argv = [python, "-c", PROFILED_OPERATOR, profile] if profile else [python, "-m", "etl_operator"]
    log_path = workdir / "operator.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO
        )
    operator = Operator(popen, log_path, health_port)
    operator.wait_ready()
    return operator


# --- creating pipelines and seeing their pods -----------------------------------------------


def admin_client(cluster: KubeCluster, pool: int) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


@dataclass
class PodWatch:
    """Stamps the arrival of each driver pod's ADDED event, by pipeline, from a watch stream
    opened before the pipelines are created."""

    api: Any
    seen: dict[str, float] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    stopping: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        threading.Thread(target=self._run, name="pod-watch", daemon=True).start()
        if not self.ready.wait(30):
            raise RuntimeError("the pod watch did not start")

    def _run(self) -> None:
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api)
        version = core.list_namespaced_pod(NAMESPACE, limit=1).metadata.resource_version
        while not self.stopping.is_set():
            stream = watch.Watch()
            self.ready.set()
            try:
                for event in stream.stream(
                    core.list_namespaced_pod,
                    NAMESPACE,
                    resource_version=version,
                    timeout_seconds=60,
                    deserialize=False,
                ):
                    now = time.monotonic()
                    pod = event["object"]
                    version = pod["metadata"]["resourceVersion"]
                    owner = (pod["metadata"].get("labels") or {}).get(LABEL_PIPELINE)
                    if event["type"] == "ADDED" and owner:
                        with self._changed:
                            self.seen.setdefault(owner, now)
                            self._changed.notify_all()
                    if self.stopping.is_set():
                        stream.stop()
                        break
            except Exception:
                if self.stopping.is_set():
                    return  # the control plane is going away
                raise

    def wait_for(self, names: Iterable[str], timeout: float) -> None:
        wanted = set(names)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not wanted <= self.seen.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(wanted - self.seen.keys())
                    raise RuntimeError(f"no driver pod within {timeout:.0f}s for {len(missing)} pipelines")
                self._changed.wait(left)


def create_all(api: Any, names: list[str], threads: int, per_minute: float | None = None) -> dict[str, float]:
    """Create the pipelines at once, or paced at `per_minute`; the local time each create call
    returned, by name."""
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    bodies = {name: pipeline(name) for name in names}  # built before the clock starts

    def create(name: str) -> tuple[str, float]:
        response = objects.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, bodies[name], _preload_content=False
        )
        returned = time.monotonic()
        response.data  # noqa: B018 - read, so the connection is reused, not a new TLS handshake
        return name, returned

    with ThreadPoolExecutor(threads) as pool:
        if per_minute is None:
            return dict(pool.map(create, names))
        start, futures = time.monotonic(), []
        for index, name in enumerate(names):
            time.sleep(max(0.0, start + index * 60 / per_minute - time.monotonic()))
            futures.append(pool.submit(create, name))
        return dict(future.result() for future in futures)


@dataclass
class LaunchFigures:
    pipelines: int
    #: "at once", or the pace of the creates.
    arrival: str
    p50: float
    p95: float
    max: float
    launches_per_minute: float
    create_seconds: float
    seconds: float
    #: CPU time each process used from the first create to the last pod seen.
    cpu_seconds: dict[str, float]


def launch_round(
    api: Any,
    watch: PodWatch,
    names: list[str],
    threads: int,
    cpu: Callable[[], dict[str, float]],
    per_minute: float | None = None,
) -> LaunchFigures:
    cpu_before = cpu()
    created = create_all(api, names, threads, per_minute)
    watch.wait_for(names, timeout=300)
    cpu_after = cpu()
    delays = sorted(watch.seen[name] - created[name] for name in names)
    first_create, last_seen = min(created.values()), max(watch.seen[name] for name in names)
    return LaunchFigures(
        pipelines=len(names),
        arrival="at once" if per_minute is None else f"at {per_minute:.0f} a minute",
        p50=statistics.median(delays),
        p95=delays[max(0, round(0.95 * len(delays)) - 1)],
        max=delays[-1],
        launches_per_minute=len(names) / (last_seen - first_create) * 60,
        create_seconds=max(created.values()) - first_create,
        seconds=last_seen - first_create,
        cpu_seconds={name: cpu_after[name] - cpu_before[name] for name in cpu_after},
    )


def wait_all_succeeded(api: Any, total: int, timeout: float) -> None:
    from kubernetes import client

    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 15
    done = 0
    while time.monotonic() < deadline:
        listed = json.loads(
            objects.list_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, _preload_content=False
            ).data
        )
        done = sum(1 for item in listed["items"] if (item.get("status") or {}).get("phase") == "Succeeded")
        if done >= total:
            return
        if time.monotonic() >= next_report:
            print(f"  {done} of {total} pipelines Succeeded", file=sys.stderr)
            next_report = time.monotonic() + 15
        time.sleep(2)
    raise RuntimeError(f"only {done} of {total} pipelines Succeeded within {timeout:.0f}s")


# --- the run --------------------------------------------------------------------------------


def prepare_cluster(cluster: KubeCluster) -> None:
    crd = REPO / "crds" / "etlpipelines.etl.sparkops.io.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    deadline = time.monotonic() + 60
    # `kubectl wait` fails outright while the new CRD has no status yet: ask again.
    while cluster.kubectl(
        "wait", "--for=condition=Established", "crd/etlpipelines.etl.sparkops.io", "--timeout=5s", check=False
    ).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError("the ETLPipeline CRD was not established within 60s")
        time.sleep(0.2)
    cluster.kubectl("create", "namespace", NAMESPACE)
    # Driver pods run as this ServiceAccount; the API server refuses pods naming a missing one.
    cluster.kubectl("create", "serviceaccount", "spark-driver", "-n", NAMESPACE)


def start_kubelet(cluster: KubeCluster, workdir: Path) -> FakeKubelet:
    from tests.infra.fake_kubelet import FakeKubelet, PhaseFlip

    flip = PhaseFlip(message=json.dumps({"recordsExtracted": 1, "recordsLoaded": 1}), exit_code=0)
    kubelet = FakeKubelet(cluster.kubeconfig, workdir / "kubelet", namespaces=[NAMESPACE], phase_flip=flip)
    # A thread per pod: a thousand pods at once would open a thousand TLS connections, and some
    # requests time out, leaving pods Pending for good. They share 16 kept connections instead.
    kubelet.api.rest_client.pool_manager.connection_pool_kw.update(maxsize=16, block=True)
    return kubelet.start()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.infra.kube import start_local_control_plane
    from tests.infra.process import make_workdir

    report: dict[str, Any] = {"machine": machine()}
    started = time.monotonic()
    cluster = start_local_control_plane()
    kubelet: FakeKubelet | None = None
    operator: Operator | None = None
    watch: PodWatch | None = None
    workdir = make_workdir("bench-operator")
    try:
        prepare_cluster(cluster)
        servers = {p.name: pid_of(p.argv) for p in cluster.processes}
        operator = start_operator(cluster, workdir, os.environ.get("BENCH_OPERATOR_PROFILE"))
        running = operator

        def cpu() -> dict[str, float]:
            used = {"operator": cpu_seconds(running.pid)}
            used |= {name: cpu_seconds(pid) for name, pid in servers.items() if pid is not None}
            used["benchmark (creates, watch)"] = cpu_seconds(os.getpid())
            # Work that is not this benchmark's (other jobs on a shared machine) is told apart.
            used["other processes on the machine"] = machine_busy_seconds() - sum(used.values())
            return used

        api = admin_client(cluster, args.threads + 4)
        watch = PodWatch(admin_client(cluster, 2))
        watch.start()
        if args.kubelet_during_launch:
            kubelet = start_kubelet(cluster, workdir)
        create_all(api, ["warm-up"], 1)
        watch.wait_for(["warm-up"], timeout=120)
        report["rss_idle_mb"] = operator.memory_mb()[0]
        print(f"control plane and operator up in {time.monotonic() - started:.0f}s", file=sys.stderr)

        first = [f"p-{n:04d}" for n in range(args.pipelines)]
        report["launch"] = launch_round(api, watch, first, args.threads, cpu)
        print(f"{args.pipelines} driver pods seen; launching the rest", file=sys.stderr)

        rest = [f"p-{n:04d}" for n in range(args.pipelines, args.total - 1)]
        if rest:
            report["launch_more"] = launch_round(api, watch, rest, args.threads, cpu, args.rate)
        if kubelet is None:
            kubelet = start_kubelet(cluster, workdir)
        flipping = time.monotonic()
        wait_all_succeeded(api, args.total, timeout=900)
        print(f"{args.total} runs Succeeded {time.monotonic() - flipping:.0f}s after the kubelet started",
              file=sys.stderr)  # fmt: skip
        operator.wait_idle()
        report["rss_mb"], report["hwm_mb"] = operator.memory_mb()
        report["total"] = args.total
        report["kubelet"] = "during launches" if args.kubelet_during_launch else "after the timed launches"
        return report
    finally:
        if watch is not None:
            watch.stopping.set()
        if kubelet is not None:
            kubelet.stop()
        if operator is not None:
            operator.stop()
            if report.get("rss_mb") is None:
                print(f"--- operator log ---\n{operator.log_tail()}", file=sys.stderr)
        cluster.stop()
        if report.get("rss_mb") is not None:
            from tests.infra.process import WORKDIRS

            for path in WORKDIRS:
                shutil.rmtree(path, ignore_errors=True)


#: The processes that serve the operator's requests (the harness's control plane).
CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")


def print_report(report: dict[str, Any]) -> None:
    launch: LaunchFigures = report["launch"]
    cores = os.cpu_count() or 1
    per_launch = {name: used / launch.pipelines * 1000 for name, used in launch.cpu_seconds.items()}
    control_plane = sum(per_launch.get(name, 0.0) for name in CONTROL_PLANE)
    # What the launches would reach were the cores theirs alone: the CPU they used, spread.
    cpu_bound = cores * 60_000 / (per_launch["operator"] + control_plane)
    rows: list[tuple[str, str, str]] = [(key, value, "") for key, value in report["machine"].items()]
    rows += [
        ("kubelet (phase flips only)", report["kubelet"], ""),
        (f"driver pod after create, p50 ({launch.pipelines} at once)", f"{launch.p50:.2f} s", ""),
        ("driver pod after create, p95", f"{launch.p95:.2f} s",
         _goal(launch.p95 < GOALS["p95_seconds"], "< 2 s")),
        ("driver pod after create, max", f"{launch.max:.2f} s", ""),
        ("launches per minute", f"{launch.launches_per_minute:.0f}",
         _goal(launch.launches_per_minute >= GOALS["launches_per_minute"], ">= 1000")),
        ("creates took (client side)", f"{launch.create_seconds:.2f} s", ""),
    ]  # fmt: skip
    rows += [
        (f"CPU in those {launch.seconds:.1f} s: {name}", f"{used:.1f} s", "")
        for name, used in launch.cpu_seconds.items()
    ]
    rows += [
        ("CPU per launch: operator", f"{per_launch['operator']:.1f} ms", ""),
        ("CPU per launch: API server, etcd, controller-manager", f"{control_plane:.1f} ms", ""),
        (f"launches per minute the CPU allows on {cores} free cores", f"{cpu_bound:.0f}", "(estimate)"),
        (f"CPU time of the {launch.pipelines} launches over {cores} free cores",
         f"{launch.pipelines * 60 / cpu_bound:.1f} s", "(the burst cannot take less)"),
    ]  # fmt: skip
    more: LaunchFigures | None = report.get("launch_more")
    if more is not None:
        rows += [
            (f"next {more.pipelines} {more.arrival}: p50 / p95 / max",
             f"{more.p50:.2f} / {more.p95:.2f} / {more.max:.2f} s",
             _goal(more.p95 < GOALS["p95_seconds"], "< 2 s")),
            ("next batch: launches per minute", f"{more.launches_per_minute:.0f}", ""),
        ]  # fmt: skip
    rows += [
        ("operator RSS, idle with 1 pipeline", f"{report['rss_idle_mb']:.0f} MB", ""),
        (f"operator RSS, {report['total']} pipelines, all Succeeded", f"{report['rss_mb']:.0f} MB",
         _goal(report["rss_mb"] < GOALS["rss_mb"], "< 300 MB")),
        ("operator peak RSS (VmHWM)", f"{report['hwm_mb']:.0f} MB", ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {goal}".rstrip())


def _goal(met: bool, target: str) -> str:
    return f"goal {target}: {'met' if met else 'MISSED'}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipelines", type=int, default=500, help="created at once and timed")
    parser.add_argument("--total", type=int, default=1000, help="pipelines when memory is read")
    parser.add_argument("--threads", type=int, default=32, help="threads creating pipelines")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="pipelines a minute after the first ones, up to --total"
    )
    parser.add_argument(
        "--kubelet-during-launch", action="store_true", help="flip pod phases during the timed launches too"
    )
    args = parser.parse_args()
    if args.total < args.pipelines + 1:
        parser.error("--total must exceed --pipelines (one more pipeline warms the operator up)")
    sys.path.insert(0, str(REPO))  # the harness lives in tests/infra
    # On SIGTERM (a CI timeout), unwind, so the control plane and the operator are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print_report(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
