"""Run a command as on an AVX2-only x86 CPU, or time it both ways: how paperlens does where there
is no AVX-512 and no VNNI, measured on this machine.

    python benchmarks/avx2_only.py -- COMMAND ...                       # once, AVX-512 and VNNI hidden
    python benchmarks/avx2_only.py --compare 3 --items 2101 -- COMMAND  # as-is and AVX2-only in turns, a table

``avx2_only.c``, built here with the system's C compiler, is preloaded into the command: through
Linux's CPUID faulting it clears the AVX-512, VNNI (AVX-512 and AVX) and AMX bits of every CPUID the
process runs, so ONNX Runtime, numpy, FAISS and tokenizers pick their AVX2 kernels, while the cores,
clocks and caches stay this machine's: the figures isolate the instruction set, which a real
AVX2-only machine (older, often slower cores) does not. Needs x86-64 Linux with the ``cpuid_fault``
flag (most KVM guests and recent bare metal) and gcc or cc; says so and exits 2 otherwise.

In ``--compare``, ``{run}`` in the command becomes a fresh empty folder for each run (an index to
ingest into), and ``--items`` turns wall seconds into items per second. Each run's wall time and
CPU time (user + system of the command and its children) are printed, then the medians.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import header
from paperlens.onnx_encoder import cpu_flags

SOURCE = Path(__file__).with_name("avx2_only.c")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "paperlens" / "bench"
SEEN_BY_NUMPY = ("import numpy._core._multiarray_umath as m; f = m.__cpu_features__; "
                 "print(' '.join(k for k in ('AVX2', 'AVX512F', 'AVX512VNNI', 'AVX512_SPR') if f.get(k)))")


class Unavailable(Exception):
    pass


def build() -> Path:
    """The preload library, compiled once per version of its source."""
    if "cpuid_fault" not in cpu_flags():
        raise Unavailable("this CPU or hypervisor offers no CPUID faulting (no cpuid_fault flag in /proc/cpuinfo)")
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise Unavailable("no C compiler (gcc or cc) to build avx2_only.c")
    library = CACHE / f"avx2_only-{hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]}.so"
    if not library.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        built = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE), "-ldl"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            raise Unavailable(f"{compiler} could not build {SOURCE.name}: {built.stderr.strip()[-500:]}")
        partial.replace(library)
    return library


def environment(library: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if library is not None:
        env["LD_PRELOAD"] = " ".join(filter(None, [str(library), env.get("LD_PRELOAD", "")]))
    return env


def features(library: Path | None) -> str:
    """What numpy's dispatcher sees in a process started so: the proof that the preload took."""
    seen = subprocess.run([sys.executable, "-c", SEEN_BY_NUMPY], env=environment(library), capture_output=True, text=True)
    if seen.returncode != 0:
        raise Unavailable(f"a process with the preload failed: {seen.stderr.strip()[-500:]}")
    return seen.stdout.strip()


def timed(command: list[str], library: Path | None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (the command and its children) and exit status of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    status = subprocess.run(command, env=environment(library), stdout=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), status


def compare(command: list[str], rounds: int, items: int | None, library: Path) -> int:
    runs: dict[str, list[tuple[float, float]]] = {"this CPU": [], "AVX2 only": []}
    with tempfile.TemporaryDirectory(prefix="avx2-only-") as scratch:
        for round_ in range(rounds):
            for label, preload in (("this CPU", None), ("AVX2 only", library)):
                folder = Path(scratch) / f"{round_}-{label.replace(' ', '-')}"
                wall, cpu, status = timed([part.replace("{run}", str(folder)) for part in command], preload)
                if status != 0:
                    print(f"{label}: the command exited with {status}", file=sys.stderr)
                    return 1
                runs[label].append((wall, cpu))
                rate = f", {items / wall:.1f} items/s" if items else ""
                print(f"# round {round_ + 1} {label}: {wall:.2f} s wall, {cpu:.2f} s CPU{rate}", flush=True)
                shutil.rmtree(folder, ignore_errors=True)
    print("| CPU as seen | wall s (median) | CPU s (median) |" + (" items/s |" if items else ""))
    print("|---|---|---|" + ("---|" if items else ""))
    for label, measured in runs.items():
        wall = statistics.median(w for w, _ in measured)
        cpu = statistics.median(c for _, c in measured)
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |" + (f" {items / wall:.1f} |" if items else ""))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS", help="time the command as-is and AVX2-only, in turns")
    parser.add_argument("--items", type=int, help="items the command handles (abstracts), for a rate")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    try:
        library = build()
        print(header("a command as on an AVX2-only CPU"))
        print(f"# numpy sees: as-is {features(None) or 'none'}; with the preload {features(library) or 'none'}", flush=True)
    except Unavailable as exc:
        print(f"avx2_only: {exc}", file=sys.stderr)
        return 2
    if args.compare:
        return compare(command, args.compare, args.items, library)
    return subprocess.run(command, env=environment(library)).returncode


if __name__ == "__main__":
    sys.exit(main())
