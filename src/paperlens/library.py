"""An index folder: the SQLite store, the FAISS file and a manifest, kept in step.

    indexes/NAME/
      papers.sqlite   papers and their vectors (the source of truth)
      vectors.faiss   the ANN index over those vectors (a cache: rebuilt from the store if stale)
      keywords/       the BM25 index over titles and abstracts (tantivy; a cache, as vectors.faiss)
      manifest.json   model, dimension, count, layout, format version, what each cache reflects

Every write (ingest, delete, check's repairs) takes the folder's writer lock (locking.py), commits
to the store first, then goes through ``Library.apply_write``, which brings each cache (caches.py)
up to it; open and check ask each cache whether it is behind and rebuild it from the store if so.
Ingests and deletes that arrive together share one commit of the store and one ``apply_write``
(commits.py: group commit); an ingest encodes before it queues.
A library opened beside another process's writes (a server beside a CLI ingest) follows them with
``Library.catch_up``, which a server runs every Settings.follow_seconds.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Self

import numpy as np

from .caches import (
    INDEX_FILE,
    KEYWORD_DIR,
    Cache,
    ChangeSet,
    FaissCache,
    FilterCache,
    KeywordCache,
)
from .commits import GroupCommit
from .config import DEFAULT_MODEL, Settings
from .duplicates import TitleHeads, duplicate_groups, merge_papers, same_paper
from .embed import Encoder, EncoderSpec, load_encoder, model_identity, text_hash
from .errors import (
    IndexMismatch,
    IndexNotFound,
    InvalidInput,
    ManifestUnreadable,
    NothingToIngest,
    PaperlensError,
    PaperNotFound,
    WriterBusy,
)
from .faults import crash_point
from .filters import FilterColumns
from .index import SearchTuning, VectorIndex, choose_layout, fsync_dir, layout_params, params_outdated
from .keyword import KeywordIndex, KeywordView
from .limits import check_paper_sizes
from .locking import WriterLock
from .papers import PAPERLENS, InvalidRecord, Paper, lookup_keys, normalise_id, title_key
from .store import Store

log = logging.getLogger(__name__)

__all__ = ["INDEX_FILE", "KEYWORD_DIR", "MANIFEST_FILE", "CheckReport", "DedupReport", "IngestReport", "Library", "Manifest",
           "check_library", "dedup", "delete", "ingest", "open_library", "resolve_id", "resolve_ids"]

FORMAT_VERSION = 1
STORE_FILE = "papers.sqlite"
MANIFEST_FILE = "manifest.json"


@dataclass
class Manifest:
    model: str
    dim: int
    layout: str
    count: int = 0
    # Build-time parameters of the layout (HNSW's M, IVF's nlist, ...), as chosen by layout_params.
    index_params: dict = field(default_factory=dict)
    # What vectors.faiss holds: compared with the file and the store at every open.
    generation: int = 0
    max_pk: int = 0
    checksum: str = ""
    # The store write keywords/ reflects (-1: none yet, as in folders from before it existed).
    keyword_generation: int = -1
    format_version: int = FORMAT_VERSION
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    updated: str = ""

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            data = json.loads((folder / MANIFEST_FILE).read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ManifestUnreadable(f"{folder / MANIFEST_FILE} is unreadable ({exc}); "
                                     f"'paperlens check --index {folder}' rebuilds it from the store") from None

    def write(self, folder: Path) -> None:
        self.updated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        path = folder / MANIFEST_FILE
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(folder)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Records of papers already held (or earlier in the same batch) under another id: id → the entry's id.
    merged: dict[str, str] = field(default_factory=dict)
    encoded: int = 0

    @property
    def ids(self) -> list[str]:
        return self.added + self.updated + self.unchanged + list(self.merged)


class InFlight:
    """How many of one kind of work are running now in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    @contextmanager
    def entered(self) -> Iterator[int]:
        """Count this one in while the block runs; yields the count with it."""
        with self._lock:
            self.count += 1
            running = self.count
        try:
            yield running
        finally:
            with self._lock:
                self.count -= 1


class Library:
    """The opened index folder: the store, the caches kept in step with it, and the writer lock.
    Search, recommend, ingest and delete are functions over it; what it decides itself is only the
    order in which a committed write reaches the caches (``apply_write``)."""

    def __init__(self, folder: Path, settings: Settings, store: Store, manifest: Manifest | None, writer: WriterLock | None = None,
                 manifest_stamp: tuple[int, int, int] | None = None):
        self.folder = folder
        self.settings = settings
        self.store = store
        self.manifest = manifest
        # One writer of the index at a time, across processes (``writing``); searches never take it.
        self.writer = writer or WriterLock(folder)
        # This process's part of it: also guards the caches against a concurrent catch-up.
        self.lock = self.writer.thread_lock
        # Which manifest.json ``manifest`` was read from (see _reload_manifest).
        self._manifest_stamp = manifest_stamp
        # What open_library found and repaired (an interrupted save, a stale FAISS file), for 'check'.
        self.recovered: list[str] = []
        self.filter_cache = FilterCache(self)
        self.keyword_cache = KeywordCache(self)
        self.faiss_cache = FaissCache(self)
        # Writers queue here; writes that arrive together share one commit (commits.py).
        self.commits = GroupCommit(self)
        # Opened and caught up in this order; a write takes keywords/ last (see apply_write).
        self.caches: tuple[Cache, ...] = (self.filter_cache, self.keyword_cache, self.faiss_cache)
        # Threads for the parts of one query that can overlap (hybrid search's keyword side);
        # ThreadPoolExecutor starts them on first use.
        self.workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="paperlens-query")
        # Hybrid searches running now: one with a core to spare scores ahead (search.hybrid_rank).
        self.hybrid_searches = InFlight()
        # Told (texts, seconds) of every encode while this library is open (a server's metrics):
        # given to the process's shared encoder when it loads, taken back at close.
        self.encode_observers: list[Callable[[int, float], None]] = []
        self._observed: list[Encoder] = []

    @property
    def index(self) -> VectorIndex | None:
        """The FAISS index; a search holds on to the one it started with (writers swap in a new one)."""
        return self.faiss_cache.index

    @property
    def keywords(self) -> KeywordIndex | KeywordView | None:
        """The BM25 side; replaced whole by writers, as ``index`` is. Holds every write answered
        before this call: while a keywords/ commit is still in flight (group commit answers first),
        a view with that commit's papers (``KeywordCache.reading``), except for the writer itself."""
        if not self.writer.held:
            return self.keyword_cache.reading(self.settings.writer_wait_seconds)
        return self.keyword_cache.index

    def filter_columns(self) -> FilterColumns:
        return self.filter_cache.get()

    @property
    def model_name(self) -> str:
        if self.manifest:
            return self.manifest.model
        return model_identity(self.settings.model or DEFAULT_MODEL)

    @property
    def encoder_spec(self) -> EncoderSpec:
        """The encoder this index's vectors come from: the model in its manifest (or configured, for a new one)."""
        return EncoderSpec(
            model=model_identity(self.settings.model or (self.manifest.model if self.manifest else DEFAULT_MODEL)),
            device=self.settings.device,
            batch_size=self.settings.batch_size,
            max_seq_length=self.settings.max_seq_length,
            backend=self.settings.backend,
            threads=self.settings.threads,
            query_cache=self.settings.query_cache,
            int8_weights=self.settings.int8_weights,
        )

    @property
    def encoder(self) -> Encoder:
        """Loaded on first use: 'info', 'delete' and by-id similar never pay for the model."""
        spec = self.encoder_spec
        encoder = load_encoder(spec)
        if self.encode_observers:
            for observer in self.encode_observers:
                encoder.add_observer(observer)
            if encoder not in self._observed:
                self._observed.append(encoder)
        if self.manifest and encoder.dim != self.manifest.dim:
            raise IndexMismatch(f"model {spec.model!r} gives {encoder.dim}-d vectors but {self.folder} holds {self.manifest.dim}-d ones")
        return encoder

    @property
    def tuning(self) -> SearchTuning:
        return search_tuning(self.settings)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock of the folder (waiting at most Settings.writer_wait_seconds for another
        writer, then WriterBusy), with the caches first brought up to what other processes wrote."""
        with self.writer.hold(self.settings.writer_wait_seconds):
            if self.writer.depth == 1:
                self.catch_up()
            yield

    def apply_write(self, changes: ChangeSet, answer: Callable[[], None] | None = None, defer_keywords: bool = False) -> None:
        """After a store commit, under the writer lock: bring every cache up to it, one after another,
        keywords/ last, then write the manifest that records it.

        ``answer`` (group commit's) is called once the filter columns and FAISS hold the change,
        before keywords/ commits: from then on the write is answered, so a keywords/ failure is
        logged and left to the next write or open, not raised. Searches of this process read the
        answered papers through a view of keywords/ meanwhile (``keywords``). ``defer_keywords``
        (with ``answer``) leaves keywords/ owing the change: group commit settles the groups it
        commits in a row with one ``settle_keywords``, before it lets the writer lock go. Every
        writer ends here. A kill between two caches leaves the later ones behind the store; the
        next open finds them so (``Cache.problem``) and rebuilds them."""
        for cache in (self.filter_cache, self.faiss_cache):
            cache.apply(changes)
            cache.generation = changes.generation
            crash_point(f"cache-applied:{cache.key}")
        if answer is None:
            self.settle_keywords()  # none owed but by group commit, which settles before it lets the lock go
            self._apply_keywords(changes)
            return
        self.keyword_cache.expect(changes)
        answer()
        if not defer_keywords:
            self.settle_keywords()

    def _apply_keywords(self, changes: ChangeSet) -> None:
        """keywords/ takes ``changes``, then the manifest records it."""
        keywords = self.keyword_cache
        keywords.apply(changes)
        keywords.generation = changes.generation
        crash_point(f"cache-applied:{keywords.key}")
        if self.manifest is not None:
            self.manifest.write(self.folder)  # vouches for keywords/ at this write (and FAISS's fields)

    def settle_keywords(self) -> None:
        """Under the writer lock: keywords/ takes the answered writes it owes in one commit, then the
        manifest records it. A failure is logged: the writes were answered, and keywords/ stays
        behind the store until the next write or open brings it up."""
        keywords = self.keyword_cache
        owed = keywords.owed
        if owed is None:
            return
        try:
            self._apply_keywords(owed)
        except Exception:
            log.exception("keywords/ of %s could not take write %d; it stays behind the store until the next write "
                          "or open brings it up", self.folder, owed.generation)
        finally:
            keywords.settled()

    @property
    def generation(self) -> int:
        """The store write every cache of this process reflects (keywords/: as its searches read it,
        ``KeywordCache.readable_generation``)."""
        return min(cache.readable_generation() if cache is self.keyword_cache else cache.generation for cache in self.caches)

    def catch_up(self) -> bool:
        """Bring the caches up to the writes other processes committed since (a CLI ingest or delete
        beside a server): the store's log names the papers each write changed, and every cache that is
        behind applies their current state in memory (``Cache.catch_up``). Writes nothing; cheap when
        nothing changed (one stat and one SELECT). Whether any cache moved."""
        with self.lock:
            self._reload_manifest()
            with self.store.snapshot():
                target = self.store.generation()
                behind = [cache for cache in self.caches if cache.generation < target or cache.stale()]
                if not behind:
                    return False
                changes = self._changes_since(min(cache.generation for cache in behind), target)
                for cache in behind:
                    cache.generation = cache.catch_up(changes, target)
            return True

    def _reload_manifest(self) -> None:
        """Read manifest.json again if another process replaced it (its layout, counts, keyword write)."""
        stamp = _stamp(self.folder / MANIFEST_FILE)
        if stamp is None or stamp == self._manifest_stamp:
            return
        try:
            self.manifest = Manifest.read(self.folder)
        except ManifestUnreadable as exc:
            log.warning("%s; keeping the manifest read before", exc)
            return
        self._manifest_stamp = stamp

    def _changes_since(self, since: int, generation: int) -> ChangeSet | None:
        """Every paper written after ``since`` as it is stored now (its text and vector, or removed);
        None when the log does not reach back that far."""
        changed = self.store.changed_since(since)
        if changed is None or self.manifest is None:
            return None
        rows = self.store.texts(changed.tolist())
        present, vectors = self.store.candidate_vectors([pk for pk, _, _ in rows], self.manifest.dim)
        kept = set(present)
        return ChangeSet(generation, rows=[row for row in rows if row[0] in kept], vectors=vectors,
                         removed=sorted(set(changed.tolist()) - kept))

    def follow(self, interval: float) -> Callable[[], None]:
        """Catch up every ``interval`` seconds in a thread (a server beside other writers); returns the
        function that stops it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.catch_up()
                except Exception as exc:  # a passing state of another process's write: try again next time
                    log.warning("catching up with %s failed: %s: %s", self.folder, exc.__class__.__name__, exc)

        thread = threading.Thread(target=loop, name="paperlens-follow", daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join()

        return halt

    def observe_encoding(self, observer: Callable[[int, float], None]) -> None:
        """Tell ``observer`` (texts, seconds) of every encode from now on (a server's metrics)."""
        self.encode_observers.append(observer)

    def unobserve_encoding(self, observer: Callable[[int, float], None]) -> None:
        if observer in self.encode_observers:
            self.encode_observers.remove(observer)
        for encoder in self._observed:
            encoder.remove_observer(observer)

    def __len__(self) -> int:
        """Papers held: the keyword index counts them without a scan (COUNT(*) is slow at scale)."""
        return len(self.keywords) if self.keywords is not None else self.store.count()

    def close(self) -> None:
        """Save what the caches deferred, under the writer lock; if another process keeps it, leave
        that to the next open (the store's log replays it)."""
        self.commits.close()  # the queued writes first
        if any(cache.deferred for cache in self.caches):
            try:
                with self.writing():
                    for cache in self.caches:
                        cache.close()
            except WriterBusy as exc:
                log.warning("closing without saving deferred files: %s", exc)
        for observer in list(self.encode_observers):
            self.unobserve_encoding(observer)
        self.workers.shutdown(wait=True)
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a replaced file from the one read before, without reading it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def search_tuning(settings: Settings) -> SearchTuning:
    return SearchTuning(ef_search=settings.ef_search, nprobe=settings.nprobe, device="cpu" if settings.device == "cpu" else "auto",
                        filter_widen_power=settings.filter_widen_power)


def open_library(settings: Settings, folder: Path | None = None, create: bool = False, repair: bool = False) -> Library:
    """Open an index folder (create it when asked). Never re-encodes: a stale FAISS file is rebuilt from stored vectors.

    With ``repair`` ('paperlens check', 'paperlens serve') an unreadable manifest is rebuilt from the
    store as a missing one is: the model and dimension are in the store, the layout follows the size."""
    folder = Path(folder or settings.index)
    if "\x00" in str(folder):
        raise InvalidInput("the index folder name contains a NUL character")
    if folder.exists() and not folder.is_dir():
        raise PaperlensError(f"{folder} is not a folder")
    if not (folder / STORE_FILE).exists():
        if not create:
            raise IndexNotFound(f"no index at {folder}: build one with 'paperlens ingest FILE --index {folder}'")
        folder.mkdir(parents=True, exist_ok=True)
    # Opening repairs files (leftovers of a killed save, a stale cache): only the writer may. Usually
    # no one writes and the lock is free; when another process holds it, open without it, and if
    # anything looks torn (it may be that writer's save in progress), wait for it and open again.
    writer = WriterLock(folder)
    locked = writer.try_acquire()
    try:
        try:
            return _open(settings, folder, writer, create, repair)
        except _WriterActive:
            writer.acquire(settings.writer_wait_seconds)
            locked = True
            return _open(settings, folder, writer, create, repair)
    finally:
        if locked:
            writer.release()


class _WriterActive(Exception):
    """A repair is due while another process holds the writer lock (it may be mid-save)."""


def _open(settings: Settings, folder: Path, writer: WriterLock, create: bool, repair: bool) -> Library:
    if not writer.held and (folder / (MANIFEST_FILE + ".tmp")).exists():
        raise _WriterActive
    recovered = _remove_interrupted_saves(folder)
    manifest, damaged = None, None
    stamp = _stamp(folder / MANIFEST_FILE)  # before the read: a manifest replaced meanwhile is read again
    if (folder / MANIFEST_FILE).exists():
        try:
            manifest = Manifest.read(folder)
        except ManifestUnreadable:
            if not repair:
                raise
            if not writer.held:
                raise _WriterActive from None
            damaged = f"{MANIFEST_FILE} was unreadable"
    store = Store(folder / STORE_FILE)
    if manifest is None:
        manifest = _manifest_from_store(store, settings)
        if manifest and damaged:
            manifest.write(folder)  # in place of the damaged one (under the writer lock); the caches' rebuilds complete it
        if manifest:
            recovered.append(f"{damaged or MANIFEST_FILE + ' was missing'}: model and dimension recovered from the store")
        elif damaged:  # nothing stored yet: the next ingest writes a new one
            (folder / MANIFEST_FILE).unlink()
            recovered.append(f"{damaged}: removed (the store holds no vectors yet)")
    try:
        _check_manifest(folder, manifest, settings)
    except PaperlensError:
        store.close()
        raise
    library = Library(folder, settings, store, manifest, writer, stamp)
    library.recovered = recovered
    opened_at = store.generation()  # read first: a write committed meanwhile is caught up again, harmlessly
    for cache in library.caches:
        problem = cache.open()
        if problem is not None and not writer.held:
            library.close()
            raise _WriterActive
        if problem is not None:
            log.warning("%s: rebuilding %s from the store", problem, cache.name)
            library.recovered.append(f"rebuilt {cache.name} from the store: {problem}")
            cache.rebuild()
    for cache in library.caches:
        cache.generation = opened_at
    return library


def _check_manifest(folder: Path, manifest: Manifest | None, settings: Settings) -> None:
    if manifest is None:
        return
    if manifest.format_version > FORMAT_VERSION:
        raise IndexMismatch(f"{folder} was written by a newer paperlens (format {manifest.format_version})")
    if settings.model and model_identity(settings.model) != manifest.model:
        raise IndexMismatch(
            f"{folder} was built with model {manifest.model!r}, but {model_identity(settings.model)!r} is configured; "
            "results would be meaningless. Use the index's model (leave PAPERLENS_MODEL unset) or build a new index."
        )


def _remove_interrupted_saves(folder: Path) -> list[str]:
    """A manifest.json.tmp is a save that was killed before its rename: the old file is intact.
    (FaissCache.open does the same for vectors.faiss.)"""
    tmp = folder / (MANIFEST_FILE + ".tmp")
    if not tmp.exists():
        return []
    tmp.unlink()
    return [f"removed {tmp.name} left by an interrupted save of {MANIFEST_FILE}"]


def _manifest_from_store(store: Store, settings: Settings) -> Manifest | None:
    """The first ingest commits the model and dimension with its papers; the manifest may not have followed."""
    model, dim = store.get_meta("model"), store.get_meta("dim")
    if not model or not dim or store.vector_count() == 0:
        return None
    return Manifest(model=model, dim=int(dim), layout=choose_layout(store.vector_count(), settings.layout))


class TextEncoder(Protocol):
    """What ingest needs of an encoder: ``Encoder`` in this process, or ``ray_ingest.RayEncoder`` on a cluster."""

    identity: str

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


def ingest(library: Library, papers: list[Paper], show_progress: bool = False, encoder: TextEncoder | None = None,
           within: Callable[[], None] | None = None) -> IngestReport:
    """Add or update papers by id. Unchanged texts are never re-encoded; changed ones replace their vector.

    ``within`` runs in the store transaction that writes the papers, after them: a caller's own
    writes (an import's likes) commit with the papers, or neither does when it raises.

    A paper already held under another id (a listing's hash id, then its arXiv id) is merged into
    that entry (duplicates.py says when): its id becomes an alias of the entry and its external ids
    (DOI, arXiv, CorpusId, ...) the entry's, which takes the richer metadata of both records and
    keeps its own id and text.

    ``encoder``: where the changed papers are encoded (a Ray cluster's, ray_ingest.py); by default
    ``library.encoder``. It must give the vectors ``library.encoder`` would."""
    if not papers:
        raise NothingToIngest("no papers to ingest")
    for paper in papers:
        try:
            paper.id = normalise_id(paper.id)  # '2401.00001v2' updates '2401.00001'
        except InvalidRecord as exc:
            raise InvalidInput(str(exc)) from None
    check_paper_sizes(library.settings, papers)
    # Last occurrence of an id wins, as if the records had been ingested one after another.
    papers = list({paper.id: paper for paper in papers}.values())
    hashes = [text_hash(paper.text) for paper in papers]
    # Encode before taking the writer lock, the slow part: searches never wait for it and another
    # writer can commit meanwhile. A vector depends only on the text, so it stays valid; what to
    # store is decided again under the lock. A model failure leaves nothing half-written.
    encoded = _encode(library, papers, _changed(library, papers, hashes), {}, show_progress, encoder)
    while True:
        try:
            return library.commits.submit("ingest", functools.partial(_stage_ingest, library, papers, hashes, encoded, encoder, within))
        except _Unencoded as missing:  # another writer changed these papers meanwhile: encode them, outside the group
            encoded = _encode(library, papers, missing.positions, encoded, encoder=encoder)


class _Unencoded(Exception):
    """Papers of an ingest that need a vector it has not encoded (their stored text changed since)."""

    def __init__(self, positions: list[int]):
        super().__init__(f"{len(positions)} papers need encoding")
        self.positions = positions


def _stage_ingest(library: Library, papers: list[Paper], hashes: list[str], encoded: dict[int, np.ndarray],
                  encoder: TextEncoder | None, within: Callable[[], None] | None) -> tuple[ChangeSet, IngestReport]:
    """An ingest's part of a group commit (commits.py): under the writer lock, in the group's
    transaction, decide again what to store, write it, and say what changed."""
    to_encode = _changed(library, papers, hashes)
    missing = [i for i in to_encode if i not in encoded]
    if missing:
        raise _Unencoded(missing)
    report = IngestReport()
    new_manifest = library.manifest is None
    if new_manifest:
        enc = encoder or library.encoder
        layout = choose_layout(len(papers), library.settings.layout)
        library.manifest = Manifest(model=enc.identity, dim=enc.dim, layout=layout, index_params=layout_params(layout, len(papers)))
    plan = _plan_merges(library, papers, hashes, encoded)
    keep = [i for i in range(len(papers)) if i not in plan.into]
    write = [plan.papers.get(i, papers[i]) for i in keep] + list(plan.entries.values())
    write_hashes = [hashes[i] for i in keep] + list(plan.entry_hashes.values())
    encoding = set(to_encode)
    encode_at = [n for n, i in enumerate(keep) if i in encoding]
    vectors = np.stack([encoded[keep[n]] for n in encode_at]) if encode_at else None
    outcomes = library.store.upsert_papers(write, write_hashes)
    pk_of = {i: outcomes[n].pk for n, i in enumerate(keep)} | dict(zip(plan.entries, (o.pk for o in outcomes[len(keep):])))
    merged_into = {i: pk_of[plan.into[i]] if isinstance(plan.into[i], int) else plan.into[i][1] for i in plan.into}
    # The merged record's id resolves to the entry as an old paperlens id, its DOI, arXiv id, ... as the entry's.
    library.store.add_aliases([(papers[i].id, pk) for i, pk in merged_into.items()])
    library.store.add_external_ids([(pk, papers[i]) for i, pk in merged_into.items()])
    if encode_at:
        library.store.put_vectors([outcomes[n].pk for n in encode_at], vectors)
    # Every paper written is logged, new vector or not: other processes catch up from the log.
    touched = [o.pk for o in outcomes if o.status != "unchanged"]
    if touched:
        library.store.bump_generation(touched)
    if new_manifest:
        # With the papers, so a kill before the manifest is written loses nothing (see open_library).
        library.store.set_meta("model", library.manifest.model)
        library.store.set_meta("dim", str(library.manifest.dim))
    entry_ids = {o.pk: o.id for o in outcomes}
    if within is not None:
        within()
    encoded_now = set(encode_at)  # exactly the papers whose title or abstract changed (or that are new)
    changes = ChangeSet(
        0,
        rows=[(outcomes[n].pk, write[n].title, write[n].abstract) for n in encode_at],
        vectors=vectors,
        refreshed=[o.pk for n, o in enumerate(outcomes) if o.status != "unchanged" and n not in encoded_now],
    )
    report.encoded = len(encode_at)
    for outcome in outcomes[:len(keep)]:
        {"added": report.added, "unchanged": report.unchanged}.get(outcome.status, report.updated).append(outcome.id)
    report.merged = {papers[i].id: entry_ids[pk] for i, pk in merged_into.items()}
    return changes, report


@dataclass
class MergePlan:
    """Which papers of an ingest are records of a paper held under another id, and what is written instead."""

    # position → the position of an earlier paper of the batch, or ("entry", pk) of a stored entry
    into: dict[int, int | tuple[str, int]] = field(default_factory=dict)
    papers: dict[int, Paper] = field(default_factory=dict)  # kept papers of the batch, with merged metadata
    entries: dict[int, Paper] = field(default_factory=dict)  # stored entries by pk, with merged metadata
    entry_hashes: dict[int, str] = field(default_factory=dict)


def _plan_merges(library: Library, papers: list[Paper], hashes: list[str], encoded: dict[int, np.ndarray]) -> MergePlan:
    """Under the writer lock: match each new paper against the stored papers and the earlier papers
    of the batch with the same normalised title (duplicates.same_paper)."""
    store = library.store
    ids = [paper.id for paper in papers]
    stored_hashes = store.text_hashes(ids)
    aliased = _merged_ids(library, ids)
    entry_pks = store.pks_for_ids(aliased.values())
    new = [i for i, paper in enumerate(papers) if paper.id not in stored_hashes and paper.id not in aliased]
    keys = {i: title_key(papers[i].title) for i in new}
    same = store.same_titles(keys.values())
    present, vectors = store.candidate_vectors([pk for rows in same.values() for pk, _ in rows], library.manifest.dim)
    stored_vectors = dict(zip(present, vectors))
    position = {paper_id: i for i, paper_id in enumerate(ids)}
    into: dict[int, int | tuple[str, int]] = {i: ("entry", entry_pks[aliased[ids[i]]]) for i in range(len(papers))
                                              if ids[i] in aliased and aliased[ids[i]] in entry_pks}
    heads: dict[str, TitleHeads] = {}
    for i in new:
        if not keys[i]:
            continue
        match = next((pk for pk, stored in same.get(keys[i], []) if same_paper(
            stored == hashes[i], float(encoded[i] @ stored_vectors[pk]) if pk in stored_vectors else 0.0)), None)
        earlier = heads[keys[i]].find(hashes[i], encoded[i]) if keys[i] in heads else None
        if match is not None:
            into[i] = ("entry", match)
        elif earlier is not None:
            into[i] = earlier
        else:
            heads.setdefault(keys[i], TitleHeads(len(encoded[i]))).add(i, hashes[i], encoded[i])
    plan = MergePlan(into=into)
    stored = store.get_many({target[1] for target in into.values() if isinstance(target, tuple)})
    for i, target in into.items():
        if isinstance(target, tuple) and target[1] in stored and stored[target[1]].paper.id in position:
            target = into[i] = position[stored[target[1]].paper.id]  # the entry is also updated by this batch
        if isinstance(target, int):
            plan.papers[target] = merge_papers(plan.papers.get(target, papers[target]), papers[i])
        else:
            pk = target[1]
            plan.entries[pk] = merge_papers(plan.entries.get(pk, stored[pk].paper), papers[i])
    # An entry that has absorbed other records keeps their richer metadata when updated by its own id.
    own = store.pks_for_ids(ids[i] for i in range(len(papers)) if ids[i] in stored_hashes and i not in into)
    updated = {pk: position[paper_id] for paper_id, pk in own.items()}
    absorbed = store.has_merged(updated)
    for pk, stored_paper in store.get_many(absorbed).items():
        i = updated[pk]
        plan.papers[i] = merge_papers(plan.papers.get(i, papers[i]), stored_paper.paper)
    plan.entry_hashes = {pk: text_hash(paper.text) for pk, paper in plan.entries.items()}
    return plan


def _merged_ids(library: Library, ids: list[str]) -> dict[str, str]:
    """Of these paperlens ids, those of records merged into another entry: id → the entry's id
    (store.resolve, through paper_aliases)."""
    found = library.store.resolve((PAPERLENS, paper_id) for paper_id in ids)
    return {key[1]: entry for key, entry in found.items() if key[1] != entry}


def _changed(library: Library, papers: list[Paper], hashes: list[str]) -> list[int]:
    """Positions of the papers whose text differs from the stored one (or that are new); records
    under an alias of a stored entry merge into it and need no vector."""
    ids = [paper.id for paper in papers]
    known = library.store.text_hashes(ids)
    aliased = _merged_ids(library, ids)
    return [i for i, (paper, text) in enumerate(zip(papers, hashes)) if paper.id not in aliased and known.get(paper.id) != text]


def _encode(library: Library, papers: list[Paper], wanted: list[int], encoded: dict[int, np.ndarray],
            show_progress: bool = False, encoder: TextEncoder | None = None) -> dict[int, np.ndarray]:
    """Vectors by paper position for ``wanted``, encoding only those ``encoded`` lacks."""
    missing = [i for i in wanted if i not in encoded]
    if not missing:
        return encoded
    vectors = (encoder or library.encoder).encode([papers[i].text for i in missing], show_progress=show_progress)
    if library.manifest and vectors.shape[1] != library.manifest.dim:
        raise IndexMismatch(f"the encoder gives {vectors.shape[1]}-d vectors but {library.folder} holds {library.manifest.dim}-d ones")
    return {**encoded, **dict(zip(missing, vectors))}


def resolve_ids(library: Library, raw_ids: Iterable[str], strict: bool = True) -> dict[str, str]:
    """The stored id of each id a user or a client gives, as the API, the CLI and the Semantic Scholar
    routes all take them (papers.lookup_keys): a paperlens id (an arXiv id with or without its version
    or 'arXiv:' prefix; a merged paper's old id), a DOI (bare, 'doi:' or a doi.org link), or another
    service's id as S2 writes it ('CorpusId:42', S2's sha, ...). Ids not in the index are left out;
    a malformed one is InvalidInput (a 422, not a 404), or left out too when not ``strict``."""
    keys: dict[str, list[tuple[str, str]]] = {}
    for raw in raw_ids:
        try:
            keys[raw] = lookup_keys(raw) if isinstance(raw, str) else []
        except InvalidRecord as exc:
            if strict:
                raise InvalidInput(str(exc)) from None
            keys[raw] = []
    found = library.store.resolve(key for options in keys.values() for key in options)
    return {raw: next(found[key] for key in options if key in found) for raw, options in keys.items()
            if any(key in found for key in options)}


def resolve_id(library: Library, raw_id: str) -> str:
    """The stored id for ``raw_id`` (see ``resolve_ids``), or PaperNotFound."""
    found = resolve_ids(library, [raw_id])
    if raw_id not in found:
        raise PaperNotFound(raw_id)
    return found[raw_id]


def delete(library: Library, paper_ids: list[str]) -> list[str]:
    """Remove papers from the store and the index; returns the stored ids of those that existed."""
    paper_ids = list(dict.fromkeys(resolve_ids(library, paper_ids).values()))

    def stage() -> tuple[ChangeSet, list[str]]:
        found = library.store.pks_for_ids(paper_ids)
        if not found:
            return ChangeSet(0), []
        library.store.delete(found)
        library.store.bump_generation(found.values())
        return ChangeSet(0, removed=list(found.values())), list(found)

    return library.commits.submit("delete", stage)


@dataclass
class DedupReport:
    """Papers held as several entries: each group's ids, the kept entry's first. ``merged`` once done."""

    groups: list[list[str]] = field(default_factory=list)
    merged: bool = False

    @property
    def entries(self) -> int:
        """Entries that merging removes (they become aliases of the kept ones)."""
        return sum(len(group) - 1 for group in self.groups)


def dedup(library: Library, dry_run: bool = False) -> DedupReport:
    """Merge the papers already stored as several entries (duplicates.duplicate_groups) into their
    oldest entry, as ingest merges a new record: the others' ids and aliases become aliases of it,
    their external ids its own, and it takes the richer metadata. Likes and collections that name a merged id keep naming it;
    it resolves to the kept entry (resolve_ids, feeds.build_profile)."""
    with library.writing():
        groups = duplicate_groups(library)
        stored = library.store.get_many(pk for group in groups for pk in group)
        groups = [[pk for pk in group if pk in stored] for group in groups]
        groups = [group for group in groups if len(group) > 1]
        report = DedupReport([[stored[pk].paper.id for pk in group] for group in groups])
        if dry_run or not groups:
            return report
        kept = [stored[group[0]].paper for group in groups]
        for n, group in enumerate(groups):
            for pk in group[1:]:
                kept[n] = merge_papers(kept[n], stored[pk].paper)
        removed = [pk for group in groups for pk in group[1:]]
        with library.store.transaction():
            outcomes = library.store.upsert_papers(kept, [text_hash(paper.text) for paper in kept])
            for group in groups:
                library.store.absorb(group[0], {pk: stored[pk].paper.id for pk in group[1:]})
            generation = library.store.bump_generation(removed + [o.pk for o in outcomes if o.status != "unchanged"])
        crash_point("dedup:after-commit")
        library.apply_write(ChangeSet(generation, refreshed=[o.pk for o in outcomes if o.status != "unchanged"], removed=removed))
    report.merged = True
    return report


@dataclass
class CheckReport:
    """What 'paperlens check' found; ``ok`` once nothing is left unrepaired. Papers held as several
    entries (``duplicates``, ids of each group) are reported, not a problem: 'paperlens dedup'
    (or check's ``dedup``) merges them."""

    index: str
    papers: int = 0
    vectors: int = 0
    faiss: int = 0
    integrity: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # sound but improvable (an older graph): not a problem

    @property
    def ok(self) -> bool:
        return not self.problems


def check_library(library: Library, repair: bool = True, quick: bool = False, merge_duplicates: bool = False,
                  rebuild_index: bool = False) -> CheckReport:
    """Verify the store (SQLite integrity, a vector per paper), then each cache against it (FAISS:
    the same ids as the store; keywords/: the same write and count), and look for papers held as
    several entries (not with ``quick``, as at start-up).

    With ``repair``, papers without vectors are encoded and a cache that disagrees is rebuilt from
    the store; a store that fails SQLite's integrity check cannot be repaired here. Duplicates are
    merged only with ``merge_duplicates``. A sound index built with older parameters is advice,
    rebuilt (from the stored vectors, no model needed) only with ``rebuild_index``.
    """
    report = CheckReport(index=str(library.folder), repaired=list(library.recovered))
    store = library.store
    report.integrity = store.integrity_check(quick=quick)
    if report.integrity != ["ok"]:
        report.problems.append("SQLite integrity check failed: " + "; ".join(report.integrity[:5]) +
                               " (restore a backup, or re-ingest the papers into a new index)")
        return report
    with library.writing():
        missing = store.papers_without_vectors()
        if missing:
            note = f"{len(missing)} papers have no vector (e.g. {missing[0].paper.id!r})"
            if repair:
                _encode_stored(library, missing)
                report.repaired.append(note + ": encoded")
            else:
                report.problems.append(note)
        for cache in library.caches:
            problem = cache.problem()
            if problem and repair:
                cache.rebuild()
                report.repaired.append(f"{problem}: rebuilt {cache.name} from the store")
            elif problem:
                report.problems.append(problem)
        outdated = index_outdated(library)
        if outdated and rebuild_index:
            library.faiss_cache.rebuild()
            report.repaired.append(f"{outdated}: rebuilt {INDEX_FILE} from the stored vectors")
        elif outdated:
            report.advice.append(outdated)
        if not quick:
            found = dedup(library, dry_run=not merge_duplicates)
            if found.merged:
                report.repaired.append(f"{found.entries} entries were other records of {len(found.groups)} papers: merged")
            else:
                report.duplicates = found.groups
        report.papers, report.vectors = store.count(), store.vector_count()
        report.faiss = len(library.index) if library.index is not None else 0
    return report


def index_outdated(library: Library) -> str | None:
    """Why the FAISS index would be faster rebuilt with today's parameters (index.params_outdated), or None."""
    manifest = library.manifest
    if manifest is None or library.index is None:
        return None
    return params_outdated(manifest.layout, manifest.index_params, len(library.index))


def _encode_stored(library: Library, missing: list) -> None:
    """Give stored papers the vectors they lack (only a damaged or hand-edited store has such papers)."""
    encoder = library.encoder
    vectors = encoder.encode([item.paper.text for item in missing])
    if library.manifest is None:
        library.manifest = Manifest(model=encoder.identity, dim=encoder.dim, layout=choose_layout(len(missing), library.settings.layout))
    with library.store.transaction():
        library.store.set_meta("model", library.manifest.model)
        library.store.set_meta("dim", str(library.manifest.dim))
        library.store.put_vectors([item.pk for item in missing], vectors)
        generation = library.store.bump_generation([item.pk for item in missing])
    library.apply_write(ChangeSet(generation, rows=[(item.pk, item.paper.title, item.paper.abstract) for item in missing],
                                  vectors=vectors))
