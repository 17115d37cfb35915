"""Where the time of a `paperlens ingest` goes, and the whole command's rate.

    PYTHONPATH=src python benchmarks/ingest_stages.py [--runs 3] [--data FOLDER] [--skip-command]

1. The whole command, as a user runs it: ``python -m paperlens.cli ingest FOLDER --index NEW
   --quiet`` in a fresh process into a fresh index folder (start-up, model load, everything),
   ``--runs`` times; median wall seconds, abstracts/s, and the CPU seconds of the process (wall
   time on a shared machine moves with other jobs, CPU time much less). txtai indexing the same
   texts with the same model in a fresh process is the peer, in the same run, when installed.
2. Stages of one ingest in this process, each timed by wrapping the function that does it:
   read, tokenise (in its own thread, one batch ahead of the model: overlapped), ONNX run
   (with pooling), store write, the keyword index, FAISS, the filter columns, manifest. The
   import of paperlens and the model load are timed first, as a fresh command pays them.

Needs the scifact-subset folder (../shared/data); says so and stops when it is absent.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from _common import SCIFACT, header, simd_flags

TIMES: dict[str, float] = defaultdict(float)


def timed(owner: object, name: str, stage: str) -> None:
    """Replace ``owner.name`` by a wrapper that adds its seconds to ``TIMES[stage]``."""
    original: Callable = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[stage] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def run_timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


TXTAI = """
import json, sys
from txtai import Embeddings
from paperlens.embed import packaged_model_path
from paperlens.papers import read_papers
papers = read_papers(sys.argv[1]).papers
embeddings = Embeddings(path=str(packaged_model_path()), content=False)
embeddings.index([(p.id, p.text, None) for p in papers])
"""


def command_rows(data: Path, runs: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                                        os.environ.get("PYTHONPATH")]))}
    from paperlens.papers import read_papers

    count = len(read_papers(data).papers)
    engines = {"paperlens ingest (onnx-int8)": lambda folder: [sys.executable, "-m", "paperlens.cli", "ingest", str(data),
                                                               "--index", str(folder), "--quiet"]}
    try:
        import txtai  # noqa: F401

        engines["txtai Embeddings.index (torch)"] = lambda folder: [sys.executable, "-c", TXTAI, str(data)]
    except ImportError:
        print("# txtai is not installed (pip install 'paperlens[bench]'): its row is left out", file=sys.stderr)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory(prefix="paperlens-ingest-") as tmp:
        for run in range(runs):
            for name, command in engines.items():  # the engines take turns: load from elsewhere falls on both
                results[name].append(run_timed(command(Path(tmp) / f"{run}-{len(results[name])}"), env))
                print(f"# {name} run {run + 1}: {results[name][-1][0]:.1f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    rows = ["| engine | abstracts | wall s (median) | abstracts/s | CPU s (median) | abstracts per CPU-s |", "|---|---|---|---|---|---|"]
    rates = {}
    for name, times in results.items():
        wall = statistics.median(t[0] for t in times)
        cpu = statistics.median(t[1] for t in times)
        rates[name] = count / wall
        rows.append(f"| {name} | {count} | {wall:.1f} | {count / wall:.1f} | {cpu:.1f} | {count / cpu:.1f} |")
    if len(rates) == 2:
        ours, theirs = rates.values()
        rows.append(f"\npaperlens / txtai: {ours / theirs:.2f}×")
    return rows


def stage_rows(data: Path) -> list[str]:
    start = time.perf_counter()
    from paperlens.caches import FaissCache, FilterCache, KeywordCache
    from paperlens.config import Settings
    from paperlens.embed import load_encoder
    from paperlens.library import Manifest, ingest, open_library
    from paperlens.onnx_encoder import OnnxInt8Encoder
    from paperlens.papers import read_papers
    from paperlens.store import Store

    TIMES["import paperlens"] = time.perf_counter() - start
    for name in ("upsert_papers", "put_vectors", "add_aliases", "add_external_ids", "bump_generation"):
        timed(Store, name, "store write (SQLite)")
    timed(OnnxInt8Encoder, "_tokenise", "tokenise (thread, overlapped)")
    timed(OnnxInt8Encoder, "_run", "ONNX run + pooling")
    timed(KeywordCache, "apply", "keyword index (tantivy)")
    timed(FaissCache, "apply", "FAISS")
    timed(FilterCache, "apply", "filter columns")
    timed(Manifest, "write", "manifest")

    with tempfile.TemporaryDirectory(prefix="paperlens-stages-") as tmp:
        settings = Settings(index=Path(tmp) / "index", show_progress=False)
        start = time.perf_counter()
        with open_library(settings, create=True) as library:
            TIMES["open index folder"] = time.perf_counter() - start
            start = time.perf_counter()
            encoder = load_encoder(library.encoder_spec)
            TIMES[f"model load ({encoder.backend})"] = time.perf_counter() - start
            start = time.perf_counter()
            papers = read_papers(data).papers
            TIMES["read (BEIR corpus.jsonl)"] = time.perf_counter() - start
            start = time.perf_counter()
            ingest(library, papers)
            total = time.perf_counter() - start
            start = time.perf_counter()
        TIMES["close"] = time.perf_counter() - start
    TIMES["ingest: rest (planning, hashing, lock)"] = total - sum(
        TIMES[k] for k in ("store write (SQLite)", "ONNX run + pooling", "keyword index (tantivy)", "FAISS", "filter columns", "manifest"))
    whole = sum(v for k, v in TIMES.items() if "overlapped" not in k)
    rows = [f"{len(papers)} abstracts; in-process total {whole:.1f} s = {len(papers) / whole:.1f} abstracts/s",
            "", "| stage | seconds | share |", "|---|---|---|"]
    for stage, seconds in sorted(TIMES.items(), key=lambda item: -item[1]):
        share = "overlapped" if "overlapped" in stage else f"{100 * seconds / whole:.1f} %"
        rows.append(f"| {stage} | {seconds:.2f} | {share} |")
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SCIFACT, help="a BEIR folder (default: scifact-subset)")
    parser.add_argument("--runs", type=int, default=3, help="whole-command runs (median)")
    parser.add_argument("--skip-command", action="store_true", help="only the stage table")
    args = parser.parse_args(argv[1:])
    if not (args.data / "corpus.jsonl").is_file():
        raise SystemExit(f"no BEIR corpus at {args.data}: this benchmark needs the shared development data")
    print(header("paperlens ingest: whole command and stages"))
    print(f"# cpu flags: {simd_flags()}; load average at start {os.getloadavg()[0]:.1f}\n", flush=True)
    if not args.skip_command:
        print(f"## The whole command, fresh process and index folder ({args.runs} runs)\n")
        print("\n".join(command_rows(args.data, args.runs)), flush=True)
    print("\n## Stages of one ingest, in process\n")
    print("\n".join(stage_rows(args.data)))
    print(f"\n# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main(sys.argv)
