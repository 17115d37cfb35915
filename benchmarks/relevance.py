"""Relevance of each mode on BEIR folders: nDCG@10, nDCG@20, MAP@100, Recall@100, MRR@10, R-precision.

    python benchmarks/relevance.py [FOLDER ...] [--ablation | --loso] [--no-seed] [--cache indexes]

Every BEIR folder under ../shared/data/ (relative to the repository root) is measured, plus the
folders given. A folder whose queries are papers (``metadata.query_paper_id``, as csfcube-dev) is
measured as "more like this": each query paper's text pasted (POST /similar) and, after it was
added, asked for by id (GET /papers/{id}/similar), graded nDCG@20 its main metric; the others as
free-text search, nDCG@10. Each table ends with the default's margin over the better single side. Two cross-check sets are built from the seed listing ../shared/seeds/*.txt, in
the cache folder, never in the repository:
  seed-titles      each title is the query for its own abstract (the corpus has no titles)
  seed-paraphrase  queries written by hand in other words (benchmarks/seed_queries.tsv),
                   corpus with titles: this is where the title weight can show
--ablation prints one row per fusion setting instead of one per mode. --loso measures a grid of
fusion settings on every set and chooses, leaving each set out in turn, the setting whose worst
gain on the other sets is best, then gives its margin on the set left out. A gain is the margin over
the better single side as a share of what that side left to gain (1 - its score): near-saturated
sets (the seed sets, 0.94-0.97) then count as much as hard ones instead of tying every setting. Corpora are encoded once and cached (indexes/eval-<hash>), so reruns only run the queries.
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
from paperlens.evaluate import METRICS, EvalResult, evaluate_beir, load_beir  # noqa: E402
from paperlens.papers import read_papers  # noqa: E402
from paperlens.search import MODES  # noqa: E402

SHARED = ROOT.parent / "shared"

# (label, mode, settings overrides): the rows of --ablation; a dense share applies to free text and papers alike.
ABLATION: list[tuple[str, str, dict]] = [
    ("dense (MiniLM, 256-token truncation)", "dense", {}),
    ("bm25 (tantivy, Snowball stemming, stop words)", "bm25", {}),
    ("rrf k=60 depth=100", "hybrid", {"fusion": "rrf", "rrf_k": 60}),
    ("confidence w=0.6 depth=100", "hybrid", {"fusion_weighting": "confidence"}),
    ("rrf k=60 depth=1000", "hybrid", {"fusion": "rrf", "rrf_k": 60, "fusion_depth": 1000}),
    ("rrf k=10 depth=1000", "hybrid", {"fusion": "rrf", "rrf_k": 10, "fusion_depth": 1000}),
    ("minmax w=0.6 depth=100", "hybrid", {"fusion": "minmax"}),
    ("zscore w=0.6 depth=100", "hybrid", {"fusion": "zscore"}),
    ("max w=0.3 depth=100", "hybrid", {"dense_weight": 0.3, "similar_dense_weight": 0.3}),
    ("max w=0.4 depth=100", "hybrid", {"dense_weight": 0.4, "similar_dense_weight": 0.4}),
    ("max w=0.5 depth=100", "hybrid", {"dense_weight": 0.5, "similar_dense_weight": 0.5}),
    ("max w=0.6 depth=100 (default)", "hybrid", {}),
    ("max w=0.7 depth=100", "hybrid", {"dense_weight": 0.7, "similar_dense_weight": 0.7}),
    ("max w=0.6 depth=20", "hybrid", {"fusion_depth": 20}),
    ("max w=0.6 depth=1000", "hybrid", {"fusion_depth": 1000}),
    ("max w=0.6 title weight 2", "hybrid", {"title_weight": 2.0}),
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


# The grid of --loso: (label, settings overrides), one dense share for free text and papers alike.
LOSO_GRID: list[tuple[str, dict]] = [
    (f"{weighting} w={w}", {"fusion_weighting": weighting, "dense_weight": w, "similar_dense_weight": w})
    for weighting in ("fixed", "confidence") for w in (0.4, 0.5, 0.6, 0.7, 0.8)
]


def row(label: str, result: EvalResult) -> str:
    values = result.as_json()
    return f"| {label:<38} | " + " | ".join(f"{values[m]:.3f}" for m in METRICS) + " |"


def header(first: str) -> str:
    return f"| {first:<38} | " + " | ".join(f"{m:>10}" for m in METRICS) + " |\n|" + "-" * 40 + "|" + "------------|" * len(METRICS)


def tasks_of(folder: Path) -> list[tuple[str, str, str]]:
    """(name, task, by) runs of a folder, and so its main metric: papers as queries or free text."""
    if any(q != p.id for q, p in load_beir(folder).query_papers.items()):  # query ids name facets of papers
        return [(f"{folder.name} (similar, pasted text)", "similar", "text"), (f"{folder.name} (similar, by id)", "similar", "id")]
    return [(folder.name, "search", "text")]


def main_metric(task: str) -> str:
    return "ndcg@20" if task == "similar" else "ndcg@10"


def run(folder: Path, cache: Path, mode: str, task: str, by: str, show_progress: bool, **overrides) -> EvalResult:
    settings = Settings(show_progress=show_progress, **overrides)
    return evaluate_beir(folder, settings, mode, cache_root=cache, show_progress=show_progress, task=task, by=by)


def measure(folder: Path, cache: Path, ablation: bool, show_progress: bool) -> None:
    for name, task, by in tasks_of(folder):
        print(f"\n### {name}  ({folder})\n")
        print(header("mode" if not ablation else "setting"))
        rows = ABLATION if ablation else [(mode, mode, {}) for mode in MODES]
        scores = {}
        for label, mode, overrides in rows:
            result = run(folder, cache, mode, task, by, show_progress, **overrides)
            scores[label] = result.metrics[main_metric(task)]
            print(row(label, result), flush=True)
        print(f"\n{result.queries} queries, {result.docs} documents")
        if not ablation:
            best = max(scores["bm25"], scores["dense"])
            print(f"default (hybrid) over the better single side: {scores['hybrid'] - best:+.3f} {main_metric(task)}")


def loso(folders: list[Path], cache: Path, show_progress: bool) -> None:
    """Margins of every grid setting on every set, then leave-one-set-out choices."""
    margins: dict[str, dict[str, float]] = {}
    headroom: dict[str, float] = {}
    for folder in folders:
        for name, task, by in tasks_of(folder):
            metric = main_metric(task)
            single = max(run(folder, cache, mode, task, by, show_progress).metrics[metric] for mode in ("bm25", "dense"))
            headroom[name] = max(1.0 - single, 1e-6)
            margins[name] = {label: run(folder, cache, "hybrid", task, by, show_progress, **overrides).metrics[metric] - single
                             for label, overrides in LOSO_GRID}
            print(f"measured {name}", file=sys.stderr, flush=True)
    gain = {name: {label: margin / headroom[name] for label, margin in row.items()} for name, row in margins.items()}
    sets = list(margins)
    print("\n### margin of hybrid over the better single side (nDCG@10 free text, nDCG@20 papers)\n")
    print("| setting | " + " | ".join(sets) + " | worst gain |\n|---|" + "---|" * (len(sets) + 1))
    for label, _ in LOSO_GRID:
        values = [margins[s][label] for s in sets]
        print(f"| {label} | " + " | ".join(f"{v:+.3f}" for v in values) + f" | {min(gain[s][label] for s in sets):+.1%} |")
    print("\n### leave one set out: chosen on the others by their worst gain\n\n| set left out | chosen | its margin there |\n|---|---|---|")
    for left_out in sets:
        others = [s for s in sets if s != left_out]
        chosen = max((label for label, _ in LOSO_GRID), key=lambda label: min(gain[s][label] for s in others))
        print(f"| {left_out} | {chosen} | {margins[left_out][chosen]:+.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="more BEIR folders")
    parser.add_argument("--ablation", action="store_true", help="one row per fusion setting")
    parser.add_argument("--loso", action="store_true", help="fusion grid on every set, chosen leaving one set out")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed-listing cross-check sets")
    parser.add_argument("--cache", type=Path, default=ROOT / "indexes", help="where corpora are indexed (default: indexes/)")
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    args = parser.parse_args()
    folders = beir_folders(args.folders) + ([] if args.no_seed else seed_sets(args.cache))
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(f"model:   {model_identity(Settings().model or DEFAULT_MODEL)}")
    print(f"date:    {dt.datetime.now().isoformat(timespec='minutes')}")
    if args.loso:
        loso(folders, args.cache, args.progress)
        return
    for folder in folders:
        measure(folder, args.cache, args.ablation, args.progress)


if __name__ == "__main__":
    main()
