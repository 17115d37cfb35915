"""Relevance on a BEIR folder: index its corpus once, run every query, score the run with ranx.

    FOLDER/corpus.jsonl     {"_id", "title", "text"} per line
    FOLDER/queries.jsonl    {"_id", "text"} per line
    FOLDER/qrels/test.tsv   query-id, corpus-id, score (a header line)

The corpus is indexed into ``CACHE/eval-<hash>``, the hash covering the corpus file, the model
and how papers are encoded, so a second run (another mode, another fusion setting) never
re-encodes: encoding is the only slow step (minutes for 2k abstracts on 2 CPU cores).
Metrics come from ranx, not from hand-written formulas; as in BEIR, a paper whose id equals the
query's id is left out of that query's ranking.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from .config import DEFAULT_MODEL, Settings
from .embed import model_identity, pick_backend
from .errors import InvalidInput
from .library import Library, ingest, open_library
from .papers import Paper, normalise_id, read_papers
from .search import MODES, Mode, search_text

METRICS = ("ndcg@10", "map@100", "recall@100", "mrr@10")
RUN_DEPTH = 100  # the deepest cut-off among METRICS
ENCODING_VERSION = "1"  # bump when what the encoder sees for a paper changes: the cache key follows


@dataclass
class BeirSet:
    folder: Path
    papers: list[Paper]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass
class EvalResult:
    mode: str
    ndcg_at_10: float
    map_at_100: float
    recall_at_100: float
    mrr_at_10: float
    queries: int
    docs: int

    def as_json(self) -> dict[str, object]:
        """The keys the CLI prints: metric names as ranx and BEIR spell them."""
        values = asdict(self)
        return {"mode": self.mode, **{m: round(values[f], 6) for m, f in zip(METRICS, _FIELDS)},
                "queries": self.queries, "docs": self.docs}


_FIELDS = ("ndcg_at_10", "map_at_100", "recall_at_100", "mrr_at_10")


def check_beir_folder(folder: Path) -> None:
    """InvalidInput naming what is missing, before anything is read or encoded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv")
    missing = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv") if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"{folder} is not a BEIR folder: missing {', '.join(missing)}")


def _read_queries(path: Path) -> dict[str, str]:
    queries = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                queries[str(record["_id"])] = str(record["text"])
            except (ValueError, KeyError, TypeError):
                raise InvalidInput(f"{path}:{number}: expected a JSON object with _id and text") from None
    return queries


def _doc_id(raw: str) -> str | None:
    """The id a corpus id gets in the store (papers.normalise_id), None for one no paper can have."""
    try:
        return normalise_id(raw)
    except InvalidInput:
        return None


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    for number, row in enumerate(rows, start=1):
        if number == 1 and row and not row[-1].strip().lstrip("-").isdigit():
            continue  # header
        if len(row) < 3 or not row[2].strip().lstrip("-").isdigit():
            raise InvalidInput(f"{path}:{number}: expected query-id, corpus-id, score separated by tabs")
        doc = _doc_id(row[1].strip())
        if doc is not None and int(row[2]) > 0:
            qrels.setdefault(row[0].strip(), {})[doc] = int(row[2])
    return qrels


def load_beir(folder: Path) -> BeirSet:
    """The corpus as Papers, the queries that have judgments, and the judgments."""
    folder = Path(folder)
    check_beir_folder(folder)
    papers = read_papers(folder / "corpus.jsonl", "beir").papers
    if not papers:
        raise InvalidInput(f"{folder / 'corpus.jsonl'} holds no usable document")
    qrels = _read_qrels(folder / "qrels" / "test.tsv")
    queries = {qid: text for qid, text in _read_queries(folder / "queries.jsonl").items() if qid in qrels}
    if not queries:
        raise InvalidInput(f"{folder}: no query in queries.jsonl has a judgment in qrels/test.tsv")
    return BeirSet(folder, papers, queries, {qid: qrels[qid] for qid in queries})


def cache_folder(folder: Path, settings: Settings, cache_root: Path) -> Path:
    """indexes/eval-<hash of corpus file, model, backend, encoding version>: one index per corpus and encoder."""
    digest = hashlib.sha1()
    with open(Path(folder) / "corpus.jsonl", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(model_identity(settings.model or DEFAULT_MODEL).encode())
    backend = pick_backend(settings.backend, settings.device)
    digest.update(f"|{settings.max_seq_length}|{backend}|{ENCODING_VERSION}".encode())
    return Path(cache_root) / f"eval-{digest.hexdigest()[:16]}"


def open_eval_index(beir: BeirSet, settings: Settings, cache_root: Path, show_progress: bool = False) -> Library:
    """The cached index of the corpus, built (encoded) only when the cache lacks papers."""
    library = open_library(settings, cache_folder(beir.folder, settings, cache_root), create=True)
    if len(library) != len(beir.papers):
        ingest(library, beir.papers, show_progress=show_progress)
    return library


def run_queries(library: Library, beir: BeirSet, mode: Mode, show_progress: bool = False) -> dict[str, dict[str, float]]:
    """query id → {paper id: score} for the top RUN_DEPTH papers (ranks are what ranx scores)."""
    run: dict[str, dict[str, float]] = {}
    items = tqdm(beir.queries.items(), desc=f"queries ({mode})", unit="q", file=sys.stderr, disable=not show_progress)
    for qid, text in items:
        hits = search_text(library, text[: library.settings.max_query_chars], k=RUN_DEPTH + 1, mode=mode)
        ranked = [hit for hit in hits if hit.id != qid][:RUN_DEPTH]
        # Scores by rank, not the raw ones: ranx sorts by score, and fused or tied raw scores
        # must not reorder what the engine returned.
        run[qid] = {hit.id: float(len(ranked) - i) for i, hit in enumerate(ranked)}
    return run


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    values = evaluate(Qrels(qrels), Run(run), list(METRICS), make_comparable=True)
    return {metric: float(values[metric]) for metric in METRICS}


def evaluate_beir(
    folder: Path, settings: Settings, mode: Mode = "hybrid", cache_root: Path | None = None, show_progress: bool = False
) -> EvalResult:
    """nDCG@10, MAP@100, Recall@100 and MRR@10 of one search mode on a BEIR folder."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    beir = load_beir(Path(folder))
    root = Path(cache_root) if cache_root is not None else Path(settings.index).parent
    with open_eval_index(beir, settings, root, show_progress) as library:
        run = run_queries(library, beir, mode, show_progress)
        scores = score_run(beir.qrels, run)
        docs = len(library)
    return EvalResult(mode, *(scores[m] for m in METRICS), queries=len(beir.queries), docs=docs)
