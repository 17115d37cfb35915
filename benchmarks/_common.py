"""Shared helpers for the benchmark scripts: the data folder, a header, medians."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact-subset"


def header(title: str) -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"# {title}\n# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n"
            f"# date: {dt.datetime.now().isoformat(timespec='seconds')}  machine: {platform.node()}, "
            f"{os.cpu_count()} cores, {cpu}, flags: {' '.join(cpu_flags()) or 'none of note'}, load {os.getloadavg()[0]:.1f}"
            + ("\n# AVX-512, VNNI and AMX hidden from this process (benchmarks/avx2_only.py): its libraries run their AVX2 kernels"
               if "avx2_only" in os.environ.get("LD_PRELOAD", "") else ""))


NOTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> list[str]:
    """The CPU features int8 and vector speed follow (lscpu's flags): AVX2, AVX-512, VNNI, AMX."""
    from paperlens.onnx_encoder import cpu_flags as flags_of_this_cpu

    flags = flags_of_this_cpu()
    return [flag for flag in NOTED_FLAGS if flag in flags]


def simd_flags() -> str:
    """Each noted flag, yes or no."""
    present = cpu_flags()
    return " ".join(f"{flag}={'yes' if flag in present else 'no'}" for flag in NOTED_FLAGS)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
