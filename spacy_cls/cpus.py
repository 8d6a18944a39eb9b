"""How many CPUs this process may really use, and torch's threads capped to it.

`os.cpu_count()` counts the machine; a process may run on fewer CPUs (its affinity
mask: taskset, numactl, Kubernetes' static CPU manager) or get less CPU time than
its affinity suggests (a cgroup CPU quota: `docker --cpus`, Kubernetes CPU limits).
torch and ONNX Runtime size their thread pools from the affinity mask at best, so a
container with a 2-CPU quota on a 64-CPU host would run 64 threads on 2 CPUs' worth
of time, each matrix product waiting on threads that are not running.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Optional

logger = logging.getLogger(__name__)

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (the machine's count where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> Optional[float]:
    """The CPU quota of this process's cgroup in CPUs (quota / period), the smallest
    along its path up to the root, cgroup v2 or v1; None when there is no limit or no
    cgroup file system to read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2: "0::/path"
            limits += _limits_along(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            for mount in (controllers, "cpu,cpuacct", "cpu"):
                if (root / mount).is_dir():
                    limits += _limits_along(root / mount, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _limits_along(mount: Path, path: str, read_limit) -> list:
    # Inside a container the path in /proc/self/cgroup may name the host's view
    # (absent under the container's mount): the mount's own files are then its cgroup.
    relative = Path(path.strip().lstrip("/"))
    folder = mount / relative
    if not folder.is_dir():
        folder = mount
    limits = []
    while True:
        limit = read_limit(folder)
        if limit is not None:
            limits.append(limit)
        if folder == mount or mount not in folder.parents:
            break
        folder = folder.parent
    return limits


def _v2_limit(folder: Path) -> Optional[float]:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return _ratio(quota, period)


def _v1_limit(folder: Path) -> Optional[float]:
    try:
        quota = (folder / "cpu.cfs_quota_us").read_text().strip()
        period = (folder / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> Optional[float]:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # v1 writes -1 for no limit
        return None
    return q / p


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, cut to its cgroup's CPU quota
    (rounded down, at least 1: a thread that gets 0.5 of a CPU only waits)."""
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return cpus


def env_threads() -> Optional[int]:
    """The thread count the user set with OMP_NUM_THREADS, if a positive number."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n > 0 else None


def default_threads() -> int:
    """Threads for one process's compute: OMP_NUM_THREADS when set, else the usable CPUs."""
    return env_threads() or usable_cpus()


_CAPPED = False


def cap_torch_threads() -> int:
    """Once per process: lower torch's intra-op threads to the usable CPUs when it
    would run more (a thread count above them only adds waiting). An explicit
    OMP_NUM_THREADS is left alone, and so is any count at or below the usable CPUs.
    Returns torch's thread count."""
    global _CAPPED
    import torch

    threads = torch.get_num_threads()
    if _CAPPED:
        return threads
    _CAPPED = True
    usable = usable_cpus()
    if env_threads() is None and threads > usable:
        logger.info("torch would run %d threads on %d usable CPUs: running %d", threads, usable, usable)
        torch.set_num_threads(usable)
        threads = usable
    return threads


def reset_cap() -> None:
    """Forget that the cap was applied (tests; a process whose CPUs changed)."""
    global _CAPPED
    _CAPPED = False
