"""Relevance on a BEIR folder: index its corpus once, run every query, score the run with ranx.

    FOLDER/corpus.jsonl     {"_id", "title", "text"} per line
    FOLDER/queries.jsonl    {"_id", "text", "metadata"?} per line
    FOLDER/qrels/test.tsv   query-id, corpus-id, score (a header line; graded scores allowed)

Two tasks. ``search``: each query is free text (``/search``). ``similar``: each query is a paper
("more like this"): its title and abstract (``metadata.title`` / ``metadata.abstract`` when given,
else ``text``) are pasted as ``POST /similar`` does, or, ``by="id"``, the query papers are added
to the index and asked for by id as ``GET /papers/{id}/similar`` does. The query paper itself
(``metadata.query_paper_id``, else the query id) never counts. Several queries may share one paper
(CSFCube's facets): its ranking is computed once and scored against each query's judgments.

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
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from .config import DEFAULT_MODEL, Settings
from .embed import model_identity, pick_backend
from .errors import InvalidInput
from .library import Library, ingest, open_library
from .onnx_encoder import EXPORT_FORMAT, int8_weights
from .papers import InvalidRecord, Paper, normalise_id, read_papers
from .search import MODES, Mode, search_text, similar_to_paper, similar_to_text

# Graded metrics use the judgments' grades; the binary ones count a grade >= relevant_grade.
METRICS = ("ndcg@10", "ndcg@20", "map@100", "recall@100", "mrr@10", "r-precision")
BINARY_METRICS = ("map@100", "recall@100", "mrr@10", "r-precision")
RUN_DEPTH = 100  # the deepest cut-off among METRICS
ENCODING_VERSION = "1"  # bump when what the encoder sees for a paper changes: the cache key follows
TASKS = ("search", "similar")
Task = Literal["search", "similar"]


@dataclass
class BeirSet:
    folder: Path
    papers: list[Paper]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    # For the similar task: the paper each query stands for (facets of one paper share it).
    query_papers: dict[str, Paper] = field(default_factory=dict)


@dataclass
class EvalResult:
    mode: str
    metrics: dict[str, float]
    queries: int
    docs: int
    task: str = "search"

    def as_json(self) -> dict[str, object]:
        """The keys the CLI prints: metric names as ranx and BEIR spell them."""
        return {"task": self.task, "mode": self.mode, **{m: round(self.metrics[m], 6) for m in METRICS},
                "queries": self.queries, "docs": self.docs}


def check_beir_folder(folder: Path) -> None:
    """InvalidInput naming what is missing, before anything is read or encoded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/test.tsv")
    missing = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv") if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(f"{folder} is not a BEIR folder: missing {', '.join(missing)}")


def _read_queries(path: Path) -> dict[str, dict]:
    """query id → its record ({"_id", "text", "metadata"?})."""
    queries = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                record["text"] = str(record["text"])
                queries[str(record["_id"])] = record
            except (ValueError, KeyError, TypeError):
                raise InvalidInput(f"{path}:{number}: expected a JSON object with _id and text") from None
    return queries


def _query_paper(qid: str, record: dict) -> Paper | None:
    """The paper a query stands for, None when its id cannot be a paper id."""
    meta = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    paper_id = _doc_id(str(meta.get("query_paper_id") or qid))
    if paper_id is None:
        return None
    title, abstract = meta.get("title"), meta.get("abstract")
    if isinstance(title, str) and isinstance(abstract, str) and (title or abstract):
        return Paper(id=paper_id, title=title, abstract=abstract, source="query")
    return Paper(id=paper_id, title="", abstract=record["text"], source="query")


def _doc_id(raw: str) -> str | None:
    """The id a corpus id gets in the store (papers.normalise_id), None for one no paper can have."""
    try:
        return normalise_id(raw)
    except (InvalidInput, InvalidRecord):
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
    records = {qid: record for qid, record in _read_queries(folder / "queries.jsonl").items() if qid in qrels}
    if not records:
        raise InvalidInput(f"{folder}: no query in queries.jsonl has a judgment in qrels/test.tsv")
    query_papers = {qid: paper for qid, record in records.items() if (paper := _query_paper(qid, record)) is not None}
    return BeirSet(folder, papers, {qid: r["text"] for qid, r in records.items()}, {qid: qrels[qid] for qid in records}, query_papers)


def cache_folder(folder: Path, settings: Settings, cache_root: Path) -> Path:
    """indexes/eval-<hash of corpus file, model, backend, encoding version>: one index per corpus and encoder."""
    digest = hashlib.sha1()
    with open(Path(folder) / "corpus.jsonl", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(model_identity(settings.model or DEFAULT_MODEL).encode())
    backend = pick_backend(settings.backend, settings.device)
    # a new int8 recipe, or the other weight type, gives other vectors
    export = f"|onnx{EXPORT_FORMAT}{int8_weights(settings.int8_weights)}" if backend == "onnx-int8" else ""
    digest.update(f"|{settings.max_seq_length}|{backend}{export}|{ENCODING_VERSION}".encode())
    return Path(cache_root) / f"eval-{digest.hexdigest()[:16]}"


def open_eval_index(beir: BeirSet, settings: Settings, cache_root: Path, show_progress: bool = False,
                    with_query_papers: bool = False) -> Library:
    """The cached index of the corpus, built (encoded) only when the cache lacks papers.

    ``with_query_papers``: a copy of it that also holds the query papers (for by-id similar), so
    the corpus is encoded once for both."""
    folder = cache_folder(beir.folder, settings, cache_root)
    if with_query_papers:
        papers = list({p.id: p for p in beir.papers + list(beir.query_papers.values())}.values())
        target = folder.with_name(folder.name + "-with-queries")
        if not target.exists():
            open_eval_index(beir, settings, cache_root, show_progress).close()
            shutil.copytree(folder, target)
        folder = target
    else:
        papers = beir.papers
    library = open_library(settings, folder, create=True)
    if len(library) != len(papers):
        ingest(library, papers, show_progress=show_progress)
    return library


def _ranked_ids(hits: list, leave_out: str) -> dict[str, float]:
    """Ranks as scores (ranx sorts by score, and fused or tied raw scores must not reorder what the
    engine returned), ``leave_out`` dropped, RUN_DEPTH deep."""
    ranked = [hit.id for hit in hits if hit.id != leave_out][:RUN_DEPTH]
    return {paper_id: float(len(ranked) - i) for i, paper_id in enumerate(ranked)}


def run_queries(library: Library, beir: BeirSet, mode: Mode, show_progress: bool = False, task: Task = "search",
                by: str = "text") -> dict[str, dict[str, float]]:
    """query id → {paper id: score} for the top RUN_DEPTH papers."""
    limit = library.settings.max_query_chars
    run: dict[str, dict[str, float]] = {}
    done: dict[str, dict[str, float]] = {}  # by query paper: facets of one paper share its ranking
    items = tqdm(beir.queries.items(), desc=f"queries ({mode})", unit="q", file=sys.stderr, disable=not show_progress)
    for qid, text in items:
        if task == "search":
            run[qid] = _ranked_ids(search_text(library, text[:limit], k=RUN_DEPTH + 1, mode=mode), qid)
            continue
        paper = beir.query_papers.get(qid)
        if paper is None:
            raise InvalidInput(f"query {qid!r} names no usable paper id")
        if paper.id not in done:
            if by == "id":
                hits = similar_to_paper(library, paper.id, k=RUN_DEPTH, mode=mode)
            else:
                hits = similar_to_text(library, paper.text[:limit], k=RUN_DEPTH + 1, mode=mode)
            done[paper.id] = _ranked_ids(hits, paper.id)
        run[qid] = done[paper.id]
    return run


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], relevant_grade: int = 1) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    # ranx's "-lN" suffix: a judgment counts as relevant from grade N on (binary metrics only).
    names = {m: (f"{m}-l{relevant_grade}" if m in BINARY_METRICS and relevant_grade > 1 else m) for m in METRICS}
    values = evaluate(Qrels(qrels), Run(run), list(names.values()), make_comparable=True)
    return {metric: float(values[name]) for metric, name in names.items()}


def evaluate_beir(
    folder: Path, settings: Settings, mode: Mode = "hybrid", cache_root: Path | None = None, show_progress: bool = False,
    task: Task = "search", by: str = "text", relevant_grade: int = 1,
) -> EvalResult:
    """METRICS of one mode on a BEIR folder, for free-text queries (``task="search"``) or papers as
    queries (``task="similar"``, pasted as text or, ``by="id"``, asked for by id)."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if task not in TASKS:
        raise InvalidInput(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if by not in ("text", "id"):
        raise InvalidInput(f"unknown query form {by!r}; choose text or id")
    if relevant_grade < 1:
        raise InvalidInput(f"the relevant grade must be 1 or more, got {relevant_grade}")
    beir = load_beir(Path(folder))
    root = Path(cache_root) if cache_root is not None else Path(settings.index).parent
    with open_eval_index(beir, settings, root, show_progress, with_query_papers=task == "similar" and by == "id") as library:
        run = run_queries(library, beir, mode, show_progress, task, by)
        scores = score_run(beir.qrels, run, relevant_grade)
        docs = len(library)
    return EvalResult(mode, scores, queries=len(beir.queries), docs=docs, task=task)
