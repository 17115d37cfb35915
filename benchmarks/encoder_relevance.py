"""nDCG@10 on scifact-subset per encoder backend and token limit (dense search, exact index).

    PYTHONPATH=src python benchmarks/encoder_relevance.py [--backends torch,onnx-int8] [--lengths 256,128]

Dense only, so a change here is the encoder's alone; the hybrid (BM25 + dense) default mode is
measured by the relevance benchmark. 47 queries: differences under ~3 points are noise, but a
backend change shows up per query too, which is why the table also gives the vectors' cosine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from paperlens.embed import EncoderSpec, load_encoder
from paperlens.evaluate import load_beir, score_run

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact-subset"


def evaluate(backend: str, max_len: int, data: Path) -> tuple[float, float, np.ndarray]:
    """Dense nDCG@10 (ranx, as ``paperlens eval``), abstracts/s of the document encode, and the vectors."""
    beir = load_beir(data)
    encoder = load_encoder(EncoderSpec("default", backend=backend, max_seq_length=max_len))
    start = time.perf_counter()
    docs = encoder.encode([p.text for p in beir.papers])
    rate = len(beir.papers) / (time.perf_counter() - start)
    ids = [p.id for p in beir.papers]
    run = {}
    for qid, text in beir.queries.items():
        order = np.argsort(-(docs @ encoder.encode_query(text)))[:100]
        run[qid] = {ids[i]: float(100 - rank) for rank, i in enumerate(order)}
    return score_run(beir.qrels, run)["ndcg@10"], rate, docs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--lengths", default="256,128")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv[1:])
    rows = [(backend, int(length)) for length in args.lengths.split(",") for backend in args.backends.split(",")]
    print(f"# command: python {' '.join(argv)}\n\n| backend | max_seq_length | nDCG@10 (dense) | abstracts/s | "
          f"cosine to {rows[0][0]}-{rows[0][1]} (min) |\n|---|---|---|---|---|")
    reference = None
    for backend, length in rows:
        score, rate, docs = evaluate(backend, length, args.data)
        reference = docs if reference is None else reference  # the first row's vectors
        cosine = float((docs * reference).sum(axis=1).min())
        print(f"| {backend} | {length} | {score:.4f} | {rate:.1f} | {cosine:.4f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv)
