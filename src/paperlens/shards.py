"""A collection split into shards by a hash of the paper id, and a library that queries them all.

    DIR/
      shards.json      shard count, hash rule, model, dimension, the shard folders
      shard-0/ ...     each a complete index folder (papers, vectors, FAISS, keywords/, manifest)
      users.sqlite     users, likes, collections and feed secrets: one place for the whole collection

``shard_collection`` ('paperlens shard') builds DIR from an index folder's stored vectors, never
re-encoding. A paper lives on shard ``owner(id)``: blake2b of its id, modulo the shard count.

``ShardedLibrary`` is a ``Library`` whose FAISS index, keyword index and paper lookups are spread
over shards, so search.py, recommend.py, feeds.py and the HTTP routes run unchanged over it. Each
shard is a ``Shard`` (an opened index folder answering ``Shard.call``), reached through a
``ShardClient``: in this process (tests, tools) or a Ray Serve deployment (ray_serve.py). Every
query goes to all shards at once and their answers are merged:

- pks are made distinct across shards: a shard's pk p is ``p * shards + shard`` here;
- dense: each shard's exact top k (re-ranked with its stored vectors), merged by score: the same
  top k as one index;
- BM25: every shard scores with the collection's document frequencies (gathered from all shards
  first, ``KeywordIndex.with_collection_idf``), so scores mean the same on every shard; only the
  average paper length stays each shard's own;
- a shard that fails or does not answer in ``Settings.shard_timeout`` is left out and named
  (``missing_shards``): the routes answer ``"partial": true`` instead of failing.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .config import Settings
from .errors import ConcurrentChange, IndexNotFound, InvalidInput, PaperlensError
from .filters import FilterColumns, Filters
from .keyword import MoreLikeThis, Terms, TermStats, like_terms
from .library import STORE_FILE, InFlight, IngestReport, Library, Manifest, check_library, delete, ingest, open_library, resolve_ids
from .limits import check_paper_sizes
from .papers import PAPERLENS, InvalidRecord, LookupKey, Paper, normalise_id
from .store import Store, StoredPaper

log = logging.getLogger(__name__)

SHARD_MAP = "shards.json"
USERS_FILE = "users.sqlite"
HASH_RULE = "blake2b-64 of the UTF-8 paper id, big-endian, modulo the shard count"


class ShardUnavailable(PaperlensError):
    """A write whose shard did not answer: nothing else is lost, and sending it again is safe."""

    status_code = 503


# --- the shard map ---------------------------------------------------------------------------------


def owner(paper_id: str, shards: int) -> int:
    """The shard that holds ``paper_id`` (stable across processes and Python versions, unlike hash())."""
    digest = hashlib.blake2b(paper_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


@dataclass
class ShardMap:
    shards: int
    model: str
    dim: int
    folders: list[str]
    papers: int = 0
    users: str = USERS_FILE
    hash: str = HASH_RULE
    format_version: int = 1

    @classmethod
    def read(cls, folder: Path) -> ShardMap:
        try:
            data = json.loads((folder / SHARD_MAP).read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise PaperlensError(f"{folder / SHARD_MAP} is unreadable ({exc})") from None

    def write(self, folder: Path) -> None:
        tmp = folder / (SHARD_MAP + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, folder / SHARD_MAP)


def is_sharded(folder: Path) -> bool:
    return (Path(folder) / SHARD_MAP).exists()


def shard_collection(settings: Settings, source: Path, shards: int, out: Path, progress: Callable[[str], None] | None = None) -> ShardMap:
    """Split the index folder ``source`` into ``shards`` index folders under ``out`` by ``owner``,
    from its stored vectors (no model is loaded); its users, likes and collections go to
    ``out/users.sqlite``, the one user store of the sharded collection."""
    if not isinstance(shards, int) or not 1 <= shards <= 1024:
        raise InvalidInput(f"--shards must be between 1 and 1024, got {shards!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InvalidInput(f"{out} exists and is not empty: shard into a new folder")
    with open_library(settings, Path(source)) as library:
        if library.manifest is None:
            raise InvalidInput(f"{source} holds no papers yet: nothing to shard")
        manifest = library.manifest
        out.mkdir(parents=True, exist_ok=True)
        folders = [f"shard-{i}" for i in range(shards)]
        for name in folders:
            (out / name).mkdir()
        stores = [Store(out / name / STORE_FILE) for name in folders]
        try:
            for store in stores:
                with store.transaction():
                    store.set_meta("model", manifest.model)
                    store.set_meta("dim", str(manifest.dim))
            copied = _copy_papers(library, stores, progress)
            for store in stores:
                with store.transaction():
                    store.bump_generation()
            users = Store(out / USERS_FILE)
            try:
                users.users.copy_from(Path(source) / STORE_FILE)
            finally:
                users.close()
        finally:
            for store in stores:
                store.close()
    # The FAISS file and keywords/ are built from the stored vectors and texts, as open_library
    # rebuilds missing ones (its warnings that they are missing are expected here, and dropped).
    quiet = _DropMissing()
    logging.getLogger("paperlens.library").addFilter(quiet)
    try:
        for name in folders:
            if progress:
                progress(f"{name}: building vectors.faiss and keywords/ from its store")
            with open_library(settings.model_copy(update={"index": out / name}), out / name, repair=True) as shard:
                report = check_library(shard, repair=True, quick=True)
                if not report.ok:
                    raise PaperlensError(f"{out / name} failed its check: " + "; ".join(report.problems))
    finally:
        logging.getLogger("paperlens.library").removeFilter(quiet)
    shard_map = ShardMap(shards=shards, model=manifest.model, dim=manifest.dim, folders=folders, papers=copied)
    shard_map.write(out)
    return shard_map


class _DropMissing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "is missing: rebuilding" not in record.getMessage()


def _copy_papers(library: Library, stores: list[Store], progress: Callable[[str], None] | None, batch: int = 5000) -> int:
    """Papers, vectors, external ids and aliases of merged records, each to its owner's store."""
    source, dim, count = library.store, library.manifest.dim, 0
    pending: list[StoredPaper] = []

    def flush() -> None:
        nonlocal count
        by_shard: dict[int, list[StoredPaper]] = {}
        for item in pending:
            by_shard.setdefault(owner(item.paper.id, len(stores)), []).append(item)
        merged = source.has_merged([item.pk for item in pending])
        vectors = dict(zip(*source.candidate_vectors([item.pk for item in pending], dim)))
        for shard, items in by_shard.items():
            items = [item for item in items if item.pk in vectors]  # papers without vectors are not searchable anyway
            store = stores[shard]
            with store.transaction():
                outcomes = store.upsert_papers([item.paper for item in items], [_text_hash(item.paper) for item in items])
                store.put_vectors([o.pk for o in outcomes], np.stack([vectors[item.pk] for item in items]) if items else
                                  np.zeros((0, dim), np.float32))
                aliases = [(alias, o.pk) for item, o in zip(items, outcomes) if item.pk in merged
                           for alias in source.names(item.paper.id)[1:]]
                store.add_aliases(aliases)
            count += len(items)
        pending.clear()
        if progress:
            progress(f"copied {count} papers")

    for item in source.iter_papers():
        pending.append(item)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    return count


def _text_hash(paper: Paper) -> str:
    from .embed import text_hash

    return text_hash(paper.text)


# --- one shard ------------------------------------------------------------------------------------


class Shard:
    """One shard's index folder, answering the calls a ``ShardedLibrary`` makes. Pks are the
    shard's own; the library translates them."""

    def __init__(self, folder: Path, settings: Settings):
        self.folder = Path(folder)
        self.library = open_library(settings.model_copy(update={"index": self.folder}), self.folder, repair=True)
        report = check_library(self.library, repair=True, quick=True)
        if not report.ok:
            self.library.close()
            raise PaperlensError(f"{self.folder} failed its start-up check: " + "; ".join(report.problems))
        # Writes to this folder from other processes (another replica's, a CLI's) show up here too.
        follow = settings.follow_seconds
        self._stop_following = self.library.follow(follow) if follow > 0 else None

    def call(self, method: str, *args: Any) -> Any:
        if method not in self.METHODS:
            raise InvalidInput(f"a shard does not answer {method!r}")
        return getattr(self, method)(*args)

    METHODS = frozenset({"info", "search", "term_stats", "keyword_top", "keyword_scores", "store", "filter_columns", "ingest", "delete"})
    # Read-only store lookups a ShardedStore forwards.
    STORE_READS = frozenset({"get", "get_many", "candidate_vectors", "pks_for_ids", "resolve", "names", "identities",
                             "copy_candidates", "has_merged", "text_hashes", "count", "vector_count"})

    def info(self) -> dict[str, Any]:
        library = self.library
        return {"folder": str(self.folder), "papers": len(library), "layout": library.manifest.layout if library.manifest else None,
                "generation": library.generation}

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> list[list[tuple[int, float]]]:
        """Each query's exact top k here (an approximate layout's candidates re-scored)."""
        from .search import rank_by_vector

        return [rank_by_vector(self.library, query, k, allowed=allowed, exact=True) for query in np.atleast_2d(queries)]

    def term_stats(self, terms: list[str]) -> TermStats:
        keywords = self.library.keywords
        return keywords.term_stats(terms) if keywords is not None else TermStats(0, {})

    def keyword_top(self, terms: Terms, k: int, title_weight: float, allowed: np.ndarray | None, stats: TermStats,
                    where: Filters | None = None) -> list[tuple[int, float]]:
        keywords = self.library.keywords
        return keywords.top(keywords.with_collection_idf(terms, stats), k, title_weight, allowed, where) if keywords is not None else []

    def keyword_scores(self, terms: Terms, pks: list[int], title_weight: float, stats: TermStats) -> dict[int, float]:
        keywords = self.library.keywords
        return keywords.scores(keywords.with_collection_idf(terms, stats), pks, title_weight) if keywords is not None else {}

    def store(self, method: str, *args: Any) -> Any:
        if method not in self.STORE_READS:
            raise InvalidInput(f"a shard's store does not answer {method!r}")
        return getattr(self.library.store, method)(*args)

    def filter_columns(self) -> FilterColumns:
        return self.library.filter_columns()

    def ingest(self, papers: list[Paper]) -> IngestReport:
        return ingest(self.library, papers)

    def delete(self, paper_ids: list[str]) -> list[str]:
        return delete(self.library, paper_ids)

    def close(self) -> None:
        if self._stop_following is not None:
            self._stop_following()
        self.library.close()


# --- reaching the shards ------------------------------------------------------------------------


class Pending(Protocol):
    def result(self, timeout: float | None = None) -> Any: ...


class ShardClient(Protocol):
    """How the library reaches one shard: ``call`` starts ``Shard.call(method, *args)`` and returns at once."""

    name: str

    def call(self, method: str, *args: Any) -> Pending: ...


class LocalShard:
    """A shard in this process (tests, tools); calls run on a thread of their own, as remote ones would."""

    def __init__(self, shard: Shard, workers: ThreadPoolExecutor):
        self.shard, self.workers, self.name = shard, workers, str(shard.folder)

    def call(self, method: str, *args: Any) -> Future:
        return self.workers.submit(self.shard.call, method, *args)


# The shards a request could not reach, for its answer ("partial": true): set per HTTP request by
# PartialAnswers, filled by ShardedLibrary's fan-outs (their worker threads carry the context).
_MISSING: ContextVar[set[int] | None] = ContextVar("paperlens_missing_shards", default=None)


def missing_shards() -> list[int]:
    """The shards left out of this request's answer, sorted; empty on an unsharded server."""
    missing = _MISSING.get()
    return sorted(missing) if missing else []


class PartialAnswers:
    """ASGI middleware of a sharded server: gives each request its set of missing shards and names
    them in an ``X-Paperlens-Missing-Shards`` header on every route (JSON results say it in the body)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        missing: set[int] = set()
        token = _MISSING.set(missing)

        async def send_marked(message: dict) -> None:
            if message["type"] == "http.response.start" and missing:
                header = (b"x-paperlens-missing-shards", ",".join(map(str, sorted(missing))).encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_marked)
        finally:
            _MISSING.reset(token)


class ContextExecutor(ThreadPoolExecutor):
    """Runs each task in a copy of the submitter's context, so a fan-out on a query worker still
    records its missing shards on the request that started it."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


# --- the sharded library ----------------------------------------------------------------------------


class ShardedLibrary(Library):
    """A Library over shards (module docstring). Its own folder holds the shard map and the user store."""

    def __init__(self, folder: Path, settings: Settings, shard_map: ShardMap, clients: Sequence[ShardClient]):
        if len(clients) != shard_map.shards:
            raise PaperlensError(f"{folder} has {shard_map.shards} shards, {len(clients)} were given")
        # Not Library.__init__: the caches live on the shards.
        self.folder = Path(folder)
        self.settings = settings
        self.shard_map = shard_map
        self.clients = list(clients)
        self.count = len(clients)
        self.manifest = Manifest(model=shard_map.model, dim=shard_map.dim, layout="sharded", count=shard_map.papers)
        self.store = ShardedStore(self, Store(self.folder / shard_map.users))
        self.lock = threading.RLock()
        self.recovered: list[str] = []
        self.caches = ()
        self.workers = ContextExecutor(max_workers=max(4, os.cpu_count() or 2), thread_name_prefix="paperlens-query")
        self.hybrid_searches = InFlight()
        self._index = ShardedIndex(self)
        self._keywords = ShardedKeywords(self)
        self._columns: tuple[float, FilterColumns] | None = None
        self._papers: tuple[float, int] | None = None
        self._generation = 0
        self.encode_observers: list[Callable[[int, float], None]] = []
        self._observed: list = []

    @property
    def index(self) -> ShardedIndex:
        return self._index

    @property
    def keywords(self) -> ShardedKeywords:
        return self._keywords

    # Global pks: shard s's pk p is p * count + s.
    def to_global(self, shard: int, pks: Iterable[int]) -> list[int]:
        return [int(pk) * self.count + shard for pk in pks]

    def split_pks(self, pks: Iterable[int]) -> dict[int, list[int]]:
        """Local pks by shard, in the order given."""
        parts: dict[int, list[int]] = {}
        for pk in pks:
            parts.setdefault(int(pk) % self.count, []).append(int(pk) // self.count)
        return parts

    def split_allowed(self, allowed: np.ndarray | None) -> dict[int, np.ndarray | None]:
        if allowed is None:
            return dict.fromkeys(range(self.count))
        allowed = np.asarray(allowed, dtype=np.int64)
        return {s: allowed[allowed % self.count == s] // self.count for s in range(self.count)}

    def fan_out(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        """Call every shard in ``args`` at once; the answers of those that answered in time. The
        others are recorded as missing for this request (``missing_shards``)."""
        pending = {}
        for shard, shard_args in args.items():
            try:
                pending[shard] = self.clients[shard].call(method, *shard_args)
            except Exception as exc:  # a handle that cannot even send
                self._missing(shard, method, exc)
        deadline = time.monotonic() + self.settings.shard_timeout
        answers = {}
        for shard, future in pending.items():
            try:
                answers[shard] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                self._missing(shard, method, exc)
        return answers

    def everywhere(self, method: str, *args: Any) -> dict[int, Any]:
        return self.fan_out(method, {shard: args for shard in range(self.count)})

    def call_one(self, shard: int, method: str, *args: Any) -> Any:
        """A write's call to the shard that owns its papers: its own errors are the caller's."""
        try:
            return self.clients[shard].call(method, *args).result(timeout=self.settings.shard_write_timeout)
        except PaperlensError:
            raise
        except Exception as exc:
            cause = getattr(exc, "cause", None)  # Ray wraps the shard's exception
            if isinstance(cause, PaperlensError):
                raise type(cause)(str(cause)) from None
            log.warning("shard %d failed %s: %r", shard, method, exc)
            raise ShardUnavailable(f"shard {shard} did not answer ({exc.__class__.__name__}); the other shards' "
                                   "writes stand, and sending the request again is safe") from None

    def _missing(self, shard: int, method: str, exc: BaseException) -> None:
        log.warning("shard %d left out of %s: %s", shard, method, exc.__class__.__name__)
        missing = _MISSING.get()
        if missing is not None:
            missing.add(shard)

    def filter_columns(self) -> FilterColumns:
        """Every shard's columns under global pks, kept ``Settings.shard_cache_seconds`` (writes through
        this library drop them at once)."""
        cached = self._columns
        if cached is not None and time.monotonic() - cached[0] < self.settings.shard_cache_seconds:
            return cached[1]
        columns = merge_columns(self.everywhere("filter_columns"), self.count)
        self._columns = (time.monotonic(), columns)
        return columns

    def shard_states(self) -> list[dict[str, Any]]:
        """Each shard's folder, state ("ok" or "unavailable") and papers, for /health."""
        answers = self.everywhere("info")
        states = []
        for shard in range(self.count):
            info = answers.get(shard)
            states.append({"shard": shard, "folder": self.shard_map.folders[shard], "state": "ok" if info else "unavailable",
                           "papers": info["papers"] if info else None, "layout": info["layout"] if info else None})
        self._papers = (time.monotonic(), sum(state["papers"] or 0 for state in states))
        self._generation = sum(answer["generation"] for answer in answers.values())
        return states

    @property
    def generation(self) -> int:
        """The sum of the shards' store writes: it rises with every write any shard takes."""
        self.shard_states()
        return self._generation

    def follow(self, interval: float) -> Callable[[], None]:
        """Nothing to follow here: the ingress keeps no caches of its own beyond ``shard_cache_seconds``,
        and each shard follows writes to its own folder (``Shard``)."""
        return lambda: None

    def __len__(self) -> int:
        cached = self._papers
        if cached is None or time.monotonic() - cached[0] >= self.settings.shard_cache_seconds:
            self.shard_states()
        return self._papers[1]

    def _wrote(self) -> None:
        self._columns = self._papers = None
        self._keywords.forget()

    def ingest(self, papers: list[Paper]) -> IngestReport:
        """Each paper to the shard that holds it (or an older record it was merged into), else to its owner."""
        if not papers:
            raise InvalidInput("no papers to ingest")
        for paper in papers:
            try:
                paper.id = normalise_id(paper.id)
            except InvalidRecord as exc:
                raise InvalidInput(str(exc)) from None
        check_paper_sizes(self.settings, papers)
        held = self.store.holders([paper.id for paper in papers])
        parts: dict[int, list[Paper]] = {}
        for paper in papers:
            parts.setdefault(held.get(paper.id, owner(paper.id, self.count)), []).append(paper)
        report = IngestReport()
        try:
            for shard, part in parts.items():
                done: IngestReport = self.call_one(shard, "ingest", part)
                report.added += done.added
                report.updated += done.updated
                report.unchanged += done.unchanged
                report.merged.update(done.merged)
                report.encoded += done.encoded
        finally:
            self._wrote()
        return report

    def delete(self, paper_ids: list[str]) -> list[str]:
        """Remove papers, each from the shard that holds it; the stored ids of those that existed."""
        stored = list(dict.fromkeys(resolve_ids(self, paper_ids).values()))
        held = self.store.holders(stored)
        deleted: list[str] = []
        try:
            for shard in sorted(set(held.values())):
                deleted += self.call_one(shard, "delete", [pid for pid in stored if held.get(pid) == shard])
        finally:
            self._wrote()
        return deleted

    def close(self) -> None:
        self.workers.shutdown(wait=True)
        self.store.close()


def merge_columns(parts: dict[int, FilterColumns], count: int) -> FilterColumns:
    """One FilterColumns over the shards' columns, under global pks, sorted as FilterColumns needs."""
    if not parts:
        return FilterColumns(np.zeros(0, np.int64), np.zeros(0, "S10"), np.zeros(0, np.float64), {},
                             np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint32))
    pks = np.concatenate([part.pks * count + shard for shard, part in parts.items()])
    order = np.argsort(pks, kind="stable")
    dates = np.concatenate([part.dates.astype("S10") for part in parts.values()])[order]
    popularity = np.concatenate([part.popularity for part in parts.values()])[order]
    categories: dict[str, list[np.ndarray]] = {}
    for shard, part in parts.items():
        for name, members in part.categories.items():
            categories.setdefault(name, []).append(members * count + shard)
    # Each paper's run of author entries, moved with the paper to its place in the global order.
    starts, lengths, base = [], [], 0
    for part in parts.values():
        starts.append(part.author_offsets[:-1] + base)
        lengths.append(np.diff(part.author_offsets))
        base += len(part.author_family)
    starts, run = np.concatenate(starts)[order], np.concatenate(lengths)[order]
    offsets = np.concatenate([[0], np.cumsum(run)]).astype(np.int64)
    entries = np.repeat(starts - offsets[:-1], run) + np.arange(offsets[-1])
    family = np.concatenate([part.author_family for part in parts.values()])[entries]
    initial = np.concatenate([part.author_initial for part in parts.values()])[entries]
    return FilterColumns(pks[order], dates, popularity, {name: np.sort(np.concatenate(m)) for name, m in categories.items()},
                         offsets, family, initial)


class ShardedIndex:
    """The FAISS side over all shards: each shard's exact top k, merged by score. The answers are
    exact already (each shard re-ranks its own candidates), so to search.rank_by_vector this is a
    flat index that needs no re-ranking."""

    layout = "flat"

    def __init__(self, library: ShardedLibrary):
        self.library = library
        self.dim = library.shard_map.dim

    def __len__(self) -> int:
        return len(self.library)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        library = self.library
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        split = library.split_allowed(allowed)
        answers = library.fan_out("search", {s: (queries, k, part) for s, part in split.items() if part is None or len(part)})
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row in range(len(queries)):
            merged = sorted(((score, pk * library.count + shard) for shard, found in answers.items() for pk, score in found[row]),
                            key=lambda item: -item[0])[:k]
            for col, (score, pk) in enumerate(merged):
                scores[row, col], ids[row, col] = score, pk
        return scores, ids


class ShardedKeywords:
    """The BM25 side over all shards, every shard scoring with the collection's term statistics."""

    def __init__(self, library: ShardedLibrary):
        self.library = library
        # The collection's document frequencies by term, kept Settings.shard_cache_seconds (they move
        # slowly; writes through this library drop them): a hybrid request asks for them up to three times.
        self._lock = threading.Lock()
        self._docs: tuple[float, int] | None = None
        self._freq: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.library)

    def forget(self) -> None:
        with self._lock:
            self._docs, self._freq = None, {}

    def term_stats(self, terms: Sequence[str]) -> TermStats:
        terms = list(dict.fromkeys(terms))
        with self._lock:
            docs, freq = self._docs, self._freq
            if docs is None or time.monotonic() - docs[0] >= self.library.settings.shard_cache_seconds or len(freq) > 1_000_000:
                docs, freq = None, {}
        wanted = [term for term in terms if term not in freq]
        if docs is not None and not wanted:
            return TermStats(docs[1], {term: freq[term] for term in terms})
        answers = self.library.everywhere("term_stats", wanted)
        found = TermStats.summed(answers.values())
        if len(answers) < self.library.count:  # a shard is missing: use what came, keep none of it
            return TermStats(found.docs, {term: freq.get(term, found.doc_freq.get(term, 0)) for term in terms})
        with self._lock:
            if docs is None:
                self._docs, self._freq = (time.monotonic(), found.docs), {}
            self._freq.update(found.doc_freq)
            docs, freq = self._docs, self._freq
            return TermStats(docs[1], {term: freq.get(term, found.doc_freq.get(term, 0)) for term in terms})

    def top(self, terms: Terms, k: int, title_weight: float = 1.0, allowed: np.ndarray | None = None,
            where: Filters | None = None) -> list[tuple[int, float]]:
        if not terms or k <= 0 or (allowed is not None and len(allowed) == 0):
            return []
        library = self.library
        stats = self.term_stats([term for term, _ in terms])
        split = library.split_allowed(allowed)
        answers = library.fan_out("keyword_top", {s: (terms, k, title_weight, part, stats, where) for s, part in split.items()
                                                  if part is None or len(part)})
        merged = [(pk * library.count + shard, score) for shard, found in answers.items() for pk, score in found]
        return sorted(merged, key=lambda item: -item[1])[:k]

    def scores(self, terms: Terms, pks: list[int], title_weight: float = 1.0) -> dict[int, float]:
        if not terms or not pks:
            return {}
        library = self.library
        stats = self.term_stats([term for term, _ in terms])
        answers = library.fan_out("keyword_scores", {s: (terms, part, title_weight, stats) for s, part in library.split_pks(pks).items()})
        return {pk * library.count + shard: score for shard, found in answers.items() for pk, score in found.items()}

    def more_like_this(self, texts: Sequence[str], weights: Sequence[float] | None = None, how: MoreLikeThis = MoreLikeThis(),
                       indexed: bool = False) -> Terms:
        return like_terms(texts, weights, how, indexed, self.term_stats)


@dataclass
class ShardedStore:
    """The store lookups of search, recommend and feeds over the shards (pk lookups go to the pk's
    shard, id lookups to all), and the collection's one user store (``local``) for everything else."""

    library: ShardedLibrary
    local: Store

    @property
    def users(self):
        return self.local.users

    @property
    def harvests(self):
        """Harvests write to the shards' folders, so the ingress's own record of them stays empty."""
        return self.local.harvests

    def transaction(self):
        return self.local.transaction()

    def get_meta(self, key: str) -> str | None:
        return self.local.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.local.set_meta(key, value)

    def close(self) -> None:
        self.local.close()

    def _by_pk(self, method: str, pks: Iterable[int], *args: Any) -> dict[int, Any]:
        parts = self.library.split_pks(pks)
        return self.library.fan_out("store", {s: (method, part, *args) for s, part in parts.items()})

    def _everywhere(self, method: str, *args: Any) -> dict[int, Any]:
        return self.library.everywhere("store", method, *args)

    def get_many(self, pks: Iterable[int]) -> dict[int, StoredPaper]:
        count = self.library.count
        return {pk * count + s: StoredPaper(pk * count + s, item.paper)
                for s, found in self._by_pk("get_many", pks).items() for pk, item in found.items()}

    def candidate_vectors(self, pks: list[int], dim: int) -> tuple[list[int], np.ndarray]:
        count = self.library.count
        found: dict[int, np.ndarray] = {}
        for s, (present, vectors) in self._by_pk("candidate_vectors", pks, dim).items():
            found.update(zip((pk * count + s for pk in present), vectors))
        present = [int(pk) for pk in pks if int(pk) in found]
        return present, np.stack([found[pk] for pk in present]) if present else np.zeros((0, dim), np.float32)

    def get_vectors(self, pks: list[int], dim: int) -> np.ndarray:
        present, vectors = self.candidate_vectors(pks, dim)
        if len(present) != len(pks):
            raise ConcurrentChange("a paper of this request was deleted (or its shard did not answer) while it was being read; try again")
        return vectors

    def identities(self, pks: Iterable[int]) -> dict[int, tuple[str, str]]:
        count = self.library.count
        return {pk * count + s: value for s, found in self._by_pk("identities", pks).items() for pk, value in found.items()}

    def copy_candidates(self, pks: Iterable[int]) -> list[tuple[int, int, bool]]:
        """Other records of the same paper on the same shard (records on two shards are not found)."""
        count = self.library.count
        return sorted((a * count + s, b * count + s, same) for s, found in self._by_pk("copy_candidates", pks).items()
                      for a, b, same in found)

    def has_merged(self, pks: Iterable[int]) -> set[int]:
        count = self.library.count
        return {pk * count + s for s, found in self._by_pk("has_merged", pks).items() for pk in found}

    def pks_for_ids(self, ids: Iterable[str]) -> dict[str, int]:
        ids = list(ids)
        count = self.library.count
        return {paper_id: pk * count + s for s, found in self._everywhere("pks_for_ids", ids).items() for paper_id, pk in found.items()}

    def holders(self, ids: Iterable[str]) -> dict[str, int]:
        """The shard of each stored paperlens id or alias (a paper merged into an entry of another owner)."""
        found = self.library.fan_out("store", {s: ("resolve", [(PAPERLENS, paper_id) for paper_id in ids])
                                               for s in range(self.library.count)})
        missing = [s for s in range(self.library.count) if s not in found]
        if missing:
            raise ShardUnavailable(f"shard {missing[0]} did not answer; nothing was written, try again")
        return {key[1]: s for s, resolved in sorted(found.items(), reverse=True) for key in resolved}

    def resolve(self, keys: Iterable[LookupKey]) -> dict[LookupKey, str]:
        keys = list(keys)
        resolved: dict[LookupKey, str] = {}
        for _, found in sorted(self._everywhere("resolve", keys).items(), reverse=True):
            resolved.update(found)  # shard 0 last: the same answer wherever a key is held twice
        return resolved

    def get(self, paper_id: str) -> StoredPaper | None:
        """From the shard that owns the id, else (an alias merged into an entry of another owner) from any."""
        library = self.library
        home = owner(paper_id, library.count)
        answers = library.fan_out("store", {home: ("get", paper_id)})
        if answers.get(home) is None:
            answers = self._everywhere("get", paper_id)
        for shard, item in sorted(answers.items()):
            if item is not None:
                return StoredPaper(item.pk * library.count + shard, item.paper)
        return None

    def names(self, paper_id: str) -> list[str]:
        names = [paper_id]
        for _, found in sorted(self._everywhere("names", paper_id).items()):
            names += [name for name in found[1:] if name not in names]
        return names

    def text_hashes(self, ids: Iterable[str]) -> dict[str, str]:
        ids = list(ids)
        return {key: value for found in self._everywhere("text_hashes", ids).values() for key, value in found.items()}

    def count(self) -> int:
        return sum(self._everywhere("count").values())

    def vector_count(self) -> int:
        return sum(self._everywhere("vector_count").values())


def open_sharded(settings: Settings, folder: Path, clients: Sequence[ShardClient]) -> ShardedLibrary:
    folder = Path(folder)
    if not is_sharded(folder):
        raise IndexNotFound(f"no sharded index at {folder} (no {SHARD_MAP}): make one with 'paperlens shard'")
    return ShardedLibrary(folder, settings, ShardMap.read(folder), clients)


def open_local_shards(settings: Settings, folder: Path) -> ShardedLibrary:
    """A sharded folder with its shards opened in this process: the same answers as a cluster, for
    tools and tests."""
    folder = Path(folder)
    shard_map = ShardMap.read(folder) if is_sharded(folder) else None
    if shard_map is None:
        raise IndexNotFound(f"no sharded index at {folder} (no {SHARD_MAP}): make one with 'paperlens shard'")
    workers = ThreadPoolExecutor(max_workers=2 * shard_map.shards, thread_name_prefix="paperlens-shard")
    shards = [Shard(folder / name, settings) for name in shard_map.folders]
    library = ShardedLibrary(folder, settings, shard_map, [LocalShard(shard, workers) for shard in shards])
    close = library.close

    def close_all() -> None:
        close()
        workers.shutdown(wait=True)
        for shard in shards:
            shard.close()

    library.close = close_all  # type: ignore[method-assign]
    return library
