"""Relevance of each search mode on BEIR folders: nDCG@10, MAP@100, Recall@100, MRR@10.

    python benchmarks/relevance.py [FOLDER ...] [--ablation] [--no-seed] [--cache indexes]

Every BEIR folder under ../shared/data/ (relative to the repository root) is measured, plus the
folders given. Two cross-check sets are built from the seed listing ../shared/seeds/*.txt, in
the cache folder, never in the repository:
  seed-titles      each title is the query for its own abstract (the corpus has no titles)
  seed-paraphrase  queries written by hand in other words (benchmarks/seed_queries.tsv),
                   corpus with titles: this is where the title weight can show
--ablation prints one row per fusion setting instead of one per mode. Corpora are encoded once
and cached (indexes/eval-<hash>), so reruns only run the queries.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from paperlens.config import DEFAULT_MODEL, Settings  # noqa: E402
from paperlens.embed import model_identity  # noqa: E402
from paperlens.evaluate import METRICS, EvalResult, evaluate_beir  # noqa: E402
from paperlens.papers import read_papers  # noqa: E402
from paperlens.search import MODES  # noqa: E402

SHARED = ROOT.parent / "shared"

# (label, mode, settings overrides): the rows of --ablation.
ABLATION: list[tuple[str, str, dict]] = [
    ("dense (MiniLM, 256-token truncation)", "dense", {}),
    ("bm25 (tantivy, Snowball stemming, stop words)", "bm25", {}),
    ("rrf k=60 depth=100", "hybrid", {"fusion": "rrf", "rrf_k": 60}),
    ("rrf k=60 depth=1000", "hybrid", {"fusion": "rrf", "rrf_k": 60, "fusion_depth": 1000}),
    ("rrf k=10 depth=1000", "hybrid", {"fusion": "rrf", "rrf_k": 10, "fusion_depth": 1000}),
    ("minmax w=0.5 depth=100", "hybrid", {"fusion": "minmax"}),
    ("zscore w=0.5 depth=100", "hybrid", {"fusion": "zscore"}),
    ("max w=0.3 depth=100", "hybrid", {"dense_weight": 0.3}),
    ("max w=0.4 depth=100", "hybrid", {"dense_weight": 0.4}),
    ("max w=0.5 depth=100 (default)", "hybrid", {}),
    ("max w=0.6 depth=100", "hybrid", {"dense_weight": 0.6}),
    ("max w=0.7 depth=100", "hybrid", {"dense_weight": 0.7}),
    ("max w=0.5 depth=20", "hybrid", {"fusion_depth": 20}),
    ("max w=0.5 depth=1000", "hybrid", {"fusion_depth": 1000}),
    ("max w=0.5 title weight 2", "hybrid", {"title_weight": 2.0}),
    ("bm25 title weight 2", "bm25", {"title_weight": 2.0}),
]


def beir_folders(extra: list[Path]) -> list[Path]:
    data = SHARED / "data"
    found = sorted(p for p in data.iterdir() if (p / "corpus.jsonl").is_file()) if data.is_dir() else []
    return found + [Path(p) for p in extra]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple[str, str]]) -> Path:
    _write_jsonl(folder / "corpus.jsonl", corpus)
    _write_jsonl(folder / "queries.jsonl", queries)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    return folder


def seed_sets(cache: Path) -> list[Path]:
    """The two cross-check BEIR folders built from the seed listing (empty if it is absent)."""
    listings = sorted((SHARED / "seeds").glob("*.txt"))
    if not listings:
        return []
    papers = read_papers(listings[0]).papers
    by_id = {p.id: p for p in papers}
    titles = _write_beir(
        cache / "crosscheck" / "seed-titles",
        [{"_id": p.id, "title": "", "text": p.abstract} for p in papers],
        [{"_id": f"q-{p.id}", "text": p.title} for p in papers],
        [(f"q-{p.id}", p.id) for p in papers],
    )
    with open(ROOT / "benchmarks" / "seed_queries.tsv", newline="") as handle:
        written = [row for row in csv.DictReader(handle, delimiter="\t") if row["paper_id"] in by_id]
    paraphrase = _write_beir(
        cache / "crosscheck" / "seed-paraphrase",
        [{"_id": p.id, "title": p.title, "text": p.abstract} for p in papers],
        [{"_id": f"q{i}", "text": row["query"]} for i, row in enumerate(written)],
        [(f"q{i}", row["paper_id"]) for i, row in enumerate(written)],
    )
    return [titles, paraphrase]


def row(label: str, result: EvalResult) -> str:
    values = result.as_json()
    return f"| {label:<38} | " + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |"


def header(first: str) -> str:
    return f"| {first:<38} | " + " | ".join(f"{m:>10}" for m in METRICS) + " |\n|" + "-" * 40 + "|" + "------------|" * len(METRICS)


def measure(folder: Path, cache: Path, ablation: bool, show_progress: bool) -> None:
    print(f"\n### {folder.name}  ({folder})\n")
    print(header("mode" if not ablation else "setting"))
    rows = ABLATION if ablation else [(mode, mode, {}) for mode in MODES]
    for label, mode, overrides in rows:
        settings = Settings(show_progress=show_progress, **overrides)
        result = evaluate_beir(folder, settings, mode, cache_root=cache, show_progress=show_progress)
        print(row(label, result), flush=True)
    print(f"\n{result.queries} queries, {result.docs} documents")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="more BEIR folders")
    parser.add_argument("--ablation", action="store_true", help="one row per fusion setting")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed-listing cross-check sets")
    parser.add_argument("--cache", type=Path, default=ROOT / "indexes", help="where corpora are indexed (default: indexes/)")
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    args = parser.parse_args()
    folders = beir_folders(args.folders) + ([] if args.no_seed else seed_sets(args.cache))
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(f"model:   {model_identity(Settings().model or DEFAULT_MODEL)}")
    print(f"date:    {dt.datetime.now().isoformat(timespec='minutes')}")
    for folder in folders:
        measure(folder, args.cache, args.ablation, args.progress)


if __name__ == "__main__":
    main()
