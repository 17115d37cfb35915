"""Ingest rate of the whole CLI command, HTTP latency of search and by-id similar, and by-id QPS.

    python benchmarks/api_latency.py [CORPUS] [--requests 300] [--clients 4] [--seconds 10]

CORPUS defaults to ../shared/data/scifact-subset. The ingest is timed as a newcomer runs it
(`paperlens ingest corpus.jsonl --index X`, start-up and model load included); then
`paperlens serve` answers free-text queries (the BEIR queries when present, then short
three-word queries cut from them) and by-id similar requests from one client, one request at a
time; last, --clients threads send by-id similar requests for --seconds and the rate is counted.
The client is the standard library's http.client on a kept-alive connection: its own cost is
~0.1 ms a request, against ~0.6 ms for httpx, so the figures are the server's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from _common import REPO, SCIFACT, header, percentile

PAPERLENS = str(Path(sys.executable).with_name("paperlens"))


@dataclass
class HttpFigures:
    papers: int
    ingest_s: float
    latencies_ms: dict[str, list[float]]
    by_id_qps: float
    clients: int

    @property
    def ingest_rate(self) -> float:
        return self.papers / self.ingest_s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def start_server(folder: Path | str, source: str | None = None) -> tuple[int, subprocess.Popen]:
    """``paperlens serve`` on a free port, remembering no query vector (benchmark queries repeat);
    ``source``: a paperlens source tree put first on its PYTHONPATH (another version's code)."""
    port = free_port()
    env = {**os.environ, "PAPERLENS_QUERY_CACHE": "0", **({"PYTHONPATH": source} if source else {})}
    server = subprocess.Popen([PAPERLENS, "serve", "--index", str(folder), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return port, server


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if get(http.client.HTTPConnection("127.0.0.1", port, timeout=1), "/health") == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server did not become healthy")


def timed_requests(port: int, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for path in paths:
        start = time.perf_counter()
        status = get(conn, path)
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise SystemExit(f"GET {path} answered {status}")
    return latencies


def concurrent_rate(port: int, paths: list[str], clients: int, seconds: float) -> float:
    """Requests/s answered 200 by ``clients`` threads, each on its own connection, for ``seconds``."""
    counts = [0] * clients
    deadline = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = slot
        while time.perf_counter() < deadline:
            counts[slot] += get(conn, paths[i % len(paths)]) == 200
            i += clients

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def measure(corpus: Path, requests: int = 300, clients: int = 4, seconds: float = 10.0) -> HttpFigures:
    corpus_file = corpus / "corpus.jsonl" if corpus.is_dir() else corpus
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        start = time.perf_counter()
        out = subprocess.run([PAPERLENS, "ingest", str(corpus_file), "--index", str(index), "--json"],
                             check=True, capture_output=True, text=True, cwd=REPO)
        ingest_s = time.perf_counter() - start
        added = json.loads(out.stdout.strip().splitlines()[-1])["added"]

        port, server = start_server(index)
        try:
            wait_healthy(port, server)
            queries_file = corpus / "queries.jsonl"
            queries = [json.loads(line)["text"] for line in queries_file.open()] if queries_file.exists() else ["neural networks"]
            short = [" ".join(q.split()[:3]) for q in queries]
            ids = [json.loads(line).get("_id") or json.loads(line).get("id") for line, _ in zip(corpus_file.open(), range(500))]
            search = lambda qs: ["/search?" + urlencode({"q": qs[i % len(qs)], "k": 10}) for i in range(requests)]  # noqa: E731
            similar = [f"/papers/{quote(ids[i % len(ids)], safe='')}/similar?k=10" for i in range(requests)]
            timed_requests(port, search(queries)[:10] + similar[:10])  # warm-up
            latencies = {
                "GET /search (claims, hybrid)": timed_requests(port, search(queries)),
                "GET /search (3 words, hybrid)": timed_requests(port, search(short)),
                "GET /papers/{id}/similar": timed_requests(port, similar),
                "GET /health": timed_requests(port, ["/health"] * requests),
            }
            qps = concurrent_rate(port, similar, clients, seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return HttpFigures(added, ingest_s, latencies, qps, clients)


def print_figures(figures: HttpFigures) -> None:
    print(f"ingest (whole command): {figures.papers} papers in {figures.ingest_s:.1f} s = {figures.ingest_rate:.1f} papers/s\n")
    print("| request | p50 ms | p99 ms | n |\n|---|---|---|---|")
    for name, values in figures.latencies_ms.items():
        print(f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 99):.2f} | {len(values)} |")
    print(f"| by-id similar, {figures.clients} concurrent clients | {figures.by_id_qps:.0f} requests/s | | |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", nargs="?", default=str(SCIFACT))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    figures = measure(Path(args.corpus), args.requests, args.clients, args.seconds)
    print(header(f"paperlens ingest + HTTP latency on {Path(args.corpus).name}"))
    print_figures(figures)


if __name__ == "__main__":
    main()
