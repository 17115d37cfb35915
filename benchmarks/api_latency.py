"""Ingest rate of the whole CLI command and HTTP latency of search and by-id similar.

    python benchmarks/api_latency.py [CORPUS] [--requests 200]

CORPUS defaults to ../shared/data/scifact-subset. The ingest is timed as a newcomer runs it
(`paperlens ingest corpus.jsonl --index X`, start-up and model load included); then
`paperlens serve` answers free-text queries (the BEIR queries when present) and by-id similar
requests, one client, medians of the per-request latency.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _common import REPO, SCIFACT, header, percentile

PAPERLENS = str(Path(sys.executable).with_name("paperlens"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("server did not become healthy")


def timed_requests(client: httpx.Client, paths: list[str]) -> list[float]:
    latencies = []
    for path in paths:
        start = time.perf_counter()
        response = client.get(path)
        latencies.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", nargs="?", default=str(SCIFACT))
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    corpus = Path(args.corpus)
    corpus_file = corpus / "corpus.jsonl" if corpus.is_dir() else corpus
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        start = time.perf_counter()
        out = subprocess.run([PAPERLENS, "ingest", str(corpus_file), "--index", str(index), "--json"],
                             check=True, capture_output=True, text=True, cwd=REPO)
        ingest_s = time.perf_counter() - start
        added = json.loads(out.stdout.strip().splitlines()[-1])["added"]

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([PAPERLENS, "serve", "--index", str(index), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(url, server)
            queries_file = corpus / "queries.jsonl"
            queries = [json.loads(line)["text"] for line in queries_file.open()] if queries_file.exists() else ["neural networks"]
            ids = [json.loads(line).get("_id") or json.loads(line).get("id") for line, _ in zip(corpus_file.open(), range(500))]
            n = args.requests
            with httpx.Client(base_url=url, timeout=30) as client:
                timed_requests(client, [f"/search?q={queries[0]}&k=10"] * 5)  # warm-up
                search = timed_requests(client, [httpx.URL("/search", params={"q": queries[i % len(queries)], "k": 10}).raw_path.decode() for i in range(n)])
                similar = timed_requests(client, [f"/papers/{ids[i % len(ids)]}/similar?k=10" for i in range(n)])
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(header(f"paperlens ingest + HTTP latency on {corpus.name}"))
    print(f"ingest (whole command): {added} papers in {ingest_s:.1f} s = {added / ingest_s:.1f} papers/s")
    print(f"{'request':<26}{'p50 ms':>10}{'p99 ms':>10}{'n':>6}")
    for name, values in (("GET /search (k=10)", search), ("GET /papers/{id}/similar", similar)):
        print(f"{name:<26}{percentile(values, 50):>10.2f}{percentile(values, 99):>10.2f}{len(values):>6}")


if __name__ == "__main__":
    main()
