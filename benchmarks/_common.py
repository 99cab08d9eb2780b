"""Helpers the benchmark scripts share: interleaved timing, thread settings, load average, and
the peak memory of a process measured so that it is its own.

Peak memory: ``ru_maxrss`` of a child started with fork + exec starts at the parent's peak
(Linux keeps the larger of the two when the child execs), so a benchmark that measures in a
child with ``ru_maxrss`` reports at least its parent's peak. :func:`peak_rss_mib` reads
``VmHWM`` from ``/proc/self/status`` instead: the high-water mark of this process's own address
space, which exec starts afresh.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "OMP_WAIT_POLICY")


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (``VmHWM``; ``ru_maxrss`` where there is no
    ``/proc``, which may include a parent's peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def interleaved(contenders: dict[str, Callable[[], object]], repeat: int,
                warmup: bool = True) -> dict[str, list[float]]:
    """Seconds of each contender over ``repeat`` rounds, the contenders in turn in each round
    (A, B, A, B, ...) after one untimed call each."""
    if warmup:
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in times.items()}


def load_average() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def thread_settings() -> str:
    """The thread-related environment of this process, as one line."""
    parts = [f"{k}={os.environ.get(k, 'unset')}" for k in THREAD_VARIABLES]
    if "torch" in sys.modules:
        parts.append(f"torch threads {sys.modules['torch'].get_num_threads()}")
    return ", ".join(parts)
