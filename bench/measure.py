"""What the benchmarks measure besides wall time: CPU seconds of a process, and the machine."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cpu_seconds(pid: int, *, with_ended_children: bool = False) -> float:
    """CPU time a process has used; with its children that ended too (PostgreSQL's backends end
    with their connection)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = fields[11:15] if with_ended_children else fields[11:13]  # utime, stime, cutime, cstime
    return sum(int(value) for value in used) / os.sysconf("SC_CLK_TCK")


def jvm_cpu_seconds(spark: Any) -> Callable[[], float]:
    """CPU seconds the Spark JVM has used so far: on a shared machine a steadier measure than
    wall time, which other processes stretch."""
    pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    return lambda: cpu_seconds(pid)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants, living or ended (an ended process counts
    in its parent's cutime once reaped): the Spark JVM with the Python workers it forks."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current, with_ended_children=True)
        except OSError:
            continue
        pending += children.get(current, [])
    return total


def timed(action: Callable[[], object], cpu: Callable[[], float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds by `cpu`) of one run."""
    started, cpu_before = time.perf_counter(), cpu()
    action()
    return time.perf_counter() - started, cpu() - cpu_before


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, Python {platform.python_version()}"
