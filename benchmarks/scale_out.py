"""Scaling out on Ray: ingest throughput, plain against ``ingest --ray``, as a table.

    PYTHONPATH=src python benchmarks/scale_out.py [--corpus FILE] [--limit N] [--part ingest|queries|all]

Each row is the whole command, ``paperlens ingest FILE --index NEW --quiet --json`` in a fresh
process (reading, model loading, encoding, writing the index), timed from start to exit:

- plain: one process, the encoder on all cores;
- Ray, 1 node: a local cluster of one node with every core (``ray.cluster_utils.Cluster``),
  started before the command, as a long-running cluster would be;
- Ray, 2 nodes: two local nodes sharing those cores (one CPU each on a 2-core machine): the
  multi-node code path, not more hardware;
- Ray, local: ``--ray local``, the cluster started and ended by the command itself;
- Ray, 1 GPU actor: a node with the GPU, where torch sees one (else the table says "no GPU").

On one machine Ray adds work (cluster processes, actors loading the model, the texts and vectors
going through the object store) and no cores: the rows measure that overhead. More machines add
encoders; the encode stage is what scales, the driver's reading and writing do not.

``--part queries`` runs ``benchmarks/scale_out_queries.py``'s ``run(args)`` (query latency on Ray
Serve) when that file is present; ``--part all`` runs both.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SCIFACT, header


def ingest_seconds(corpus: Path, ray_address: str | None, env: dict[str, str]) -> tuple[float, dict]:
    """Wall seconds of one whole ingest command into a new index, and its --json summary."""
    folder = Path(tempfile.mkdtemp(prefix="scale-out-"))
    command = [sys.executable, "-m", "paperlens.cli", "ingest", str(corpus), "--index", str(folder / "index"), "--quiet", "--json"]
    if ray_address:
        command += ["--ray", ray_address]
    try:
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
        return seconds, json.loads(result.stdout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LocalCluster:
    """A ray.cluster_utils.Cluster under its own temp folder (RAY_TMPDIR), on ports Ray picks, so a
    cluster that 'ray start' left on this machine is neither joined nor disturbed."""

    def __init__(self, nodes: list[dict]):
        from ray.cluster_utils import Cluster

        self.folder = tempfile.mkdtemp(prefix="plbench-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.saved = os.environ.get("RAY_TMPDIR")
        os.environ["RAY_TMPDIR"] = self.folder
        self.cluster = Cluster(initialize_head=True, head_node_args={**nodes[0], "include_dashboard": False})
        for node in nodes[1:]:
            self.cluster.add_node(**node)
        self.cluster.wait_for_nodes()

    def __enter__(self) -> str:
        return self.cluster.address

    def __exit__(self, *exc) -> None:
        self.cluster.shutdown()
        if self.saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = self.saved
        shutil.rmtree(self.folder, ignore_errors=True)


def gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def ingest_part(args: argparse.Namespace) -> None:
    corpus = args.corpus
    if not corpus.exists():
        print(f"# {corpus} is not here: nothing to ingest (put the scifact-subset corpus in ../shared/data)")
        return
    if args.limit:
        lines = [line for line in corpus.read_text().splitlines() if line.strip()][:args.limit]
        corpus = Path(tempfile.mkdtemp(prefix="scale-out-corpus-")) / "corpus.jsonl"
        corpus.write_text("\n".join(lines) + "\n")
    try:
        measure_ingest(args, corpus)
    finally:
        if args.limit:
            shutil.rmtree(corpus.parent, ignore_errors=True)


def measure_ingest(args: argparse.Namespace, corpus: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                                    os.environ.get("PYTHONPATH")]))}
    cores = os.cpu_count() or 2
    rows: list[tuple[str, str, float | None, dict | None]] = []
    warm_up = Path(tempfile.mkdtemp(prefix="scale-out-")) / "warm-up.jsonl"
    warm_up.write_text("".join(corpus.read_text().splitlines(keepends=True)[:16]))
    ingest_seconds(warm_up, None, env)  # the int8 model exported and the Python modules read once, before any timing
    shutil.rmtree(warm_up.parent)

    def measure(name: str, setup: str, address: Callable[[], object] | None) -> None:
        if address is None:
            seconds, summary = ingest_seconds(corpus, None, env)
        elif isinstance(address, str):
            seconds, summary = ingest_seconds(corpus, address, env)
        else:
            with address() as cluster_address:
                seconds, summary = ingest_seconds(corpus, cluster_address, env)
        rows.append((name, setup, seconds, summary))
        print(f"#   {name}: {seconds:.1f} s", file=sys.stderr, flush=True)

    measure("plain", f"1 process, {cores} encoder threads", None)
    measure("Ray, 1 node", f"1 node x {cores} CPUs", lambda: LocalCluster([{"num_cpus": cores}]))
    measure("Ray, 2 nodes", f"2 nodes x {max(1, cores // 2)} CPU",
            lambda: LocalCluster([{"num_cpus": max(1, cores // 2)}, {"num_cpus": max(1, cores // 2)}]))
    measure("Ray, local", "--ray local: cluster started by the command", "local")
    if gpu_available():
        measure("Ray, 1 GPU actor", "1 node with the GPU (torch backend)", lambda: LocalCluster([{"num_cpus": cores, "num_gpus": 1}]))
    else:
        rows.append(("Ray, 1 GPU actor", "no GPU", None, None))

    papers = rows[0][3]["total"] if rows[0][3] else 0
    plain = rows[0][2] or 1.0
    print(header(f"ingest throughput, plain vs --ray: {papers} abstracts of {args.corpus.name}"))
    print(f"| {'run':<18} | {'setup':<44} | {'seconds':>7} | {'abstracts/s':>11} | {'vs plain':>8} |")
    print(f"|{'-' * 20}|{'-' * 46}|{'-' * 9}|{'-' * 13}|{'-' * 10}|")
    for name, setup, seconds, summary in rows:
        if seconds is None:
            print(f"| {name:<18} | {setup:<44} | {'-':>7} | {'-':>11} | {'-':>8} |")
            continue
        assert summary is not None and summary["total"] == papers, f"{name}: {summary}"
        print(f"| {name:<18} | {setup:<44} | {seconds:>7.1f} | {papers / seconds:>11.1f} | {plain / seconds:>7.2f}x |")


def queries_part(args: argparse.Namespace) -> None:
    """Query latency on Ray Serve: benchmarks/scale_out_queries.py's ``run(args)``, where that file exists."""
    try:
        module = importlib.import_module("scale_out_queries")
    except ModuleNotFoundError:
        print("# queries: benchmarks/scale_out_queries.py is not here")
        return
    module.run(args)


PARTS: dict[str, Callable[[argparse.Namespace], None]] = {"ingest": ingest_part, "queries": queries_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SCIFACT / "corpus.jsonl", help="a JSONL file of papers")
    parser.add_argument("--limit", type=int, default=0, help="only the first N papers (0: all)")
    parser.add_argument("--part", choices=[*PARTS, "all"], default="ingest")
    args = parser.parse_args()
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            part(args)


if __name__ == "__main__":
    main()
