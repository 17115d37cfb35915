"""An index folder: the SQLite store, the FAISS file and a manifest, kept in step.

    indexes/NAME/
      papers.sqlite   papers and their vectors (the source of truth)
      vectors.faiss   the ANN index over those vectors (a cache: rebuilt from the store if stale)
      keywords/       the BM25 index over titles and abstracts (tantivy; a cache, as vectors.faiss)
      manifest.json   model, dimension, count, layout, format version, what each cache reflects

Ingest and delete go through here so that the store, the index and the manifest never disagree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import DEFAULT_MODEL, Settings
from .embed import Encoder, EncoderSpec, load_encoder, model_identity, text_hash
from .errors import IndexMismatch, IndexNotFound, InvalidInput, NothingToIngest, PaperlensError
from .faults import crash_point
from .index import (
    SearchTuning, VectorIndex, choose_layout, create_index, fsync_dir, layout_outdated, layout_params, load_index,
    training_sample,
)
from .index.hnsw import HNSWIndex
from .index.layered import LayeredIndex
from .keyword import KeywordIndex
from .limits import check_paper_sizes
from .papers import InvalidRecord, Paper, normalise_id
from .store import FilterColumns, Store

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STORE_FILE = "papers.sqlite"
INDEX_FILE = "vectors.faiss"
MANIFEST_FILE = "manifest.json"
KEYWORD_DIR = "keywords"


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
    def read(cls, folder: Path) -> "Manifest":
        try:
            data = json.loads((folder / MANIFEST_FILE).read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise PaperlensError(f"{folder / MANIFEST_FILE} is unreadable ({exc}); run 'paperlens check' or re-ingest") from None

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
    encoded: int = 0

    @property
    def ids(self) -> list[str]:
        return self.added + self.updated + self.unchanged


class Library:
    """The opened index folder. Holds no policy: search, recommend and ingest are functions over it."""

    def __init__(self, folder: Path, settings: Settings, store: Store, manifest: Manifest | None, index: VectorIndex | None):
        self.folder = folder
        self.settings = settings
        self.store = store
        self.manifest = manifest
        # Replaced whole by writers (copy, change, swap): a search holds on to the one it started with.
        self.index = index
        # The BM25 side; like ``index`` it is replaced whole by writers (KeywordIndex.write).
        self.keywords: KeywordIndex | None = None
        # One writer at a time; searches never take it.
        self.lock = threading.RLock()
        # What open_library found and repaired (an interrupted save, a stale FAISS file), for 'check'.
        self.recovered: list[str] = []
        # Threads for the parts of one query that can overlap (hybrid search's keyword side);
        # ThreadPoolExecutor starts them on first use.
        self.workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="paperlens-query")
        # Filterable fields as arrays (store.FilterColumns): loaded on the first filtered query,
        # patched by every write, replaced whole (searches keep the one they started with).
        self._filter_columns: FilterColumns | None = None
        # The write the in-memory FAISS index reflects when its file was left older (see _save).
        self.unsaved_generation: int | None = None

    @property
    def model_name(self) -> str:
        if self.manifest:
            return self.manifest.model
        return model_identity(self.settings.model or DEFAULT_MODEL)

    @property
    def encoder(self) -> Encoder:
        """Loaded on first use: 'info', 'delete' and by-id similar never pay for the model."""
        spec = EncoderSpec(
            model=model_identity(self.settings.model or (self.manifest.model if self.manifest else DEFAULT_MODEL)),
            device=self.settings.device,
            batch_size=self.settings.batch_size,
            max_seq_length=self.settings.max_seq_length,
            backend=self.settings.backend,
            threads=self.settings.threads,
        )
        encoder = load_encoder(spec)
        if self.manifest and encoder.dim != self.manifest.dim:
            raise IndexMismatch(f"model {spec.model!r} gives {encoder.dim}-d vectors but {self.folder} holds {self.manifest.dim}-d ones")
        return encoder

    def filter_columns(self) -> FilterColumns:
        columns = self._filter_columns
        if columns is None:
            with self.lock:  # a writer's patch must not be lost under a load that read the store before its commit
                if self._filter_columns is None:
                    self._filter_columns = self.store.filter_columns()
                columns = self._filter_columns
        return columns

    def _refresh_filter_columns(self, changed: Iterable[int], removed: Iterable[int] = ()) -> None:
        """After a write, under the writer lock: re-read these papers' fields (if the columns are loaded)."""
        if self._filter_columns is not None:
            self._filter_columns = self._filter_columns.patched(self.store.filter_columns(changed), removed)

    @property
    def tuning(self) -> SearchTuning:
        return search_tuning(self.settings)

    def __len__(self) -> int:
        """Papers held: the keyword index counts them without a scan (COUNT(*) takes ~8 ms at 1M)."""
        return len(self.keywords) if self.keywords is not None else self.store.count()

    def close(self) -> None:
        with self.lock:
            if self.unsaved_generation is not None and self.index is not None:
                _persist(self, self.unsaved_generation)  # the next open need not replay anything
        self.workers.shutdown(wait=True)
        self.store.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def search_tuning(settings: Settings) -> SearchTuning:
    return SearchTuning(ef_search=settings.ef_search, nprobe=settings.nprobe, device="cpu" if settings.device == "cpu" else "auto")


def open_library(settings: Settings, folder: Path | None = None, create: bool = False) -> Library:
    """Open an index folder (create it when asked). Never re-encodes: a stale FAISS file is rebuilt from stored vectors."""
    folder = Path(folder or settings.index)
    if "\x00" in str(folder):
        raise InvalidInput("the index folder name contains a NUL character")
    if folder.exists() and not folder.is_dir():
        raise PaperlensError(f"{folder} is not a folder")
    if not (folder / STORE_FILE).exists():
        if not create:
            raise IndexNotFound(f"no index at {folder}: build one with 'paperlens ingest FILE --index {folder}'")
        folder.mkdir(parents=True, exist_ok=True)
    recovered = _remove_interrupted_saves(folder)
    manifest = Manifest.read(folder) if (folder / MANIFEST_FILE).exists() else None
    if manifest:
        if manifest.format_version > FORMAT_VERSION:
            raise IndexMismatch(f"{folder} was written by a newer paperlens (format {manifest.format_version})")
        if settings.model and model_identity(settings.model) != manifest.model:
            raise IndexMismatch(
                f"{folder} was built with model {manifest.model!r}, but {model_identity(settings.model)!r} is configured; "
                "results would be meaningless. Use the index's model (leave PAPERLENS_MODEL unset) or build a new index."
            )
    store = Store(folder / STORE_FILE)
    if manifest is None:
        manifest = _manifest_from_store(store, settings)
        if manifest:
            recovered.append(f"{MANIFEST_FILE} was missing: model and dimension recovered from the store")
    library = Library(folder, settings, store, manifest, None)
    library.recovered = recovered
    library.keywords = _open_keywords(library)
    if manifest:
        library.index = _load_or_rebuild(library, force=any(INDEX_FILE in note for note in recovered))
    return library


def keywords_problem(library: Library, keywords: KeywordIndex) -> str | None:
    """Why keywords/ cannot be trusted as the store's papers, or None if it can."""
    store_generation = library.store.generation()
    if library.manifest is not None and library.manifest.keyword_generation != store_generation:
        return f"{KEYWORD_DIR}/ reflects write {library.manifest.keyword_generation}, the store is at write {store_generation}"
    if len(keywords) != library.store.count():
        return f"{KEYWORD_DIR}/ holds {len(keywords)} papers, the store {library.store.count()}"
    return None


def _open_keywords(library: Library) -> KeywordIndex:
    """The keyword index as the manifest vouches for it, or rebuilt from the store (no model needed)."""
    path = library.folder / KEYWORD_DIR
    try:
        keywords = KeywordIndex.open(path) if path.exists() else None
    except (ValueError, OSError, RuntimeError) as exc:
        keywords, problem = None, f"{KEYWORD_DIR}/ is unreadable ({exc})"
    else:
        problem = f"{KEYWORD_DIR}/ is missing" if keywords is None else None
    if keywords is not None:
        keywords.generation = library.store.generation()
        problem = keywords_problem(library, keywords)
        if problem is None:
            return keywords
    return rebuild_keywords(library, problem)


def rebuild_keywords(library: Library, reason: str) -> KeywordIndex:
    """A fresh keyword index of every stored paper, vouched for in the manifest."""
    with library.lock:
        if library.store.count():
            log.warning("%s: rebuilding it from the store", reason)
            library.recovered.append(f"rebuilt {KEYWORD_DIR}/ from the store: {reason}")
        generation = library.store.generation()
        keywords = KeywordIndex.recreate(library.folder / KEYWORD_DIR, library.store.iter_texts(), generation)
        library.keywords = keywords
        if library.manifest is not None:
            library.manifest.keyword_generation = generation
            library.manifest.write(library.folder)
        return keywords


def _remove_interrupted_saves(folder: Path) -> list[str]:
    """A *.tmp left in the folder is a save that was killed before its rename: the old file is intact."""
    notes = []
    for name in (INDEX_FILE, MANIFEST_FILE):
        tmp = folder / (name + ".tmp")
        if tmp.exists():
            tmp.unlink()
            notes.append(f"removed {tmp.name} left by an interrupted save of {name}")
    return notes


def _manifest_from_store(store: Store, settings: Settings) -> Manifest | None:
    """The first ingest commits the model and dimension with its papers; the manifest may not have followed."""
    model, dim = store.get_meta("model"), store.get_meta("dim")
    if not model or not dim or store.vector_count() == 0:
        return None
    return Manifest(model=model, dim=int(dim), layout=choose_layout(store.vector_count(), settings.layout))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def index_problem(library: Library, path: Path) -> str | None:
    """Why the FAISS file cannot be brought up to the store's vectors, or None if it can.

    A file that reflects an older write is fine as long as the store logged every write since."""
    manifest, store = library.manifest, library.store
    if not path.exists():
        return f"{path.name} is missing"
    if manifest.generation != store.generation() and store.changed_since(manifest.generation) is None:
        return f"{path.name} reflects write {manifest.generation}, the store is at write {store.generation()}"
    if not manifest.checksum or file_sha256(path) != manifest.checksum:
        return f"{path.name} does not match the checksum in the manifest"
    return None


def _load_or_rebuild(library: Library, force: bool = False) -> VectorIndex:
    manifest = library.manifest
    path = library.folder / INDEX_FILE
    problem = "an earlier save was interrupted" if force else index_problem(library, path)
    if problem is None:
        try:
            index = load_index(manifest.layout, path, manifest.index_params, library.tuning)
            if len(index) == manifest.count and index.dim == manifest.dim:
                _replay(library, index)
                problem = count_problem(library, index)
                if problem is None:
                    library.index = index
                    rebuild_if_needed(library)
                    return library.index
            else:
                problem = f"{path.name} holds {len(index)} {index.dim}-d vectors, not {manifest.count} {manifest.dim}-d"
        except RuntimeError as exc:
            problem = f"{path.name} is unreadable ({exc})"
    log.warning("%s: rebuilding from the store", problem)
    library.recovered.append(f"rebuilt {INDEX_FILE} from the store: {problem}")
    return rebuild_index(library)


def _replay(library: Library, index: VectorIndex) -> None:
    """Apply to a loaded FAISS index the writes made since it was saved, from the store's log."""
    behind = library.manifest.generation
    changed = library.store.changed_since(behind)
    if changed is None or len(changed) == 0:
        return
    index.remove(changed)
    pks, vectors = library.store.candidate_vectors(changed.tolist(), library.manifest.dim)
    if pks:
        index.add(np.asarray(pks, dtype=np.int64), vectors)
    library.recovered.append(f"brought {INDEX_FILE} from write {behind} to {library.store.generation()} "
                             f"by replaying {len(changed)} changed papers from the store")


def count_problem(library: Library, index: VectorIndex) -> str | None:
    stored = library.store.vector_count()
    return None if len(index) == stored else f"{INDEX_FILE} holds {len(index)} vectors, the store {stored}"


def rebuild_if_needed(library: Library) -> bool:
    """Rebuild when the collection outgrew its layout or the index asks for it (HNSW tombstones)."""
    reason = layout_outdated(library.manifest.layout, len(library.index), library.settings.layout) or library.index.needs_rebuild()
    if not reason:
        return False
    log.warning("rebuilding the index of %s from stored vectors: %s", library.folder, reason)
    rebuild_index(library)
    return True


def rebuild_index(library: Library, layout: str | None = None) -> VectorIndex:
    """A fresh FAISS index from the vectors in the store; no model needed.

    ``layout`` None keeps the manifest's layout unless the collection outgrew it (``layout_outdated``).
    Trained layouts (SQ8, PQ) are retrained on a sample of the stored vectors.
    """
    with library.lock:
        manifest = library.manifest
        count = library.store.vector_count()
        if layout is None:
            outdated = layout_outdated(manifest.layout, count, library.settings.layout)
            layout = choose_layout(count, library.settings.layout) if outdated else manifest.layout
        if count == 0:
            layout = "flat"  # nothing to train a quantiser on; the next ingest grows it into the configured layout
        params = layout_params(layout, count)
        training = _stored_sample(library, count) if layout != "flat" else None
        index = create_index(layout, manifest.dim, params, training, library.tuning)
        for pks, vectors in library.store.iter_vectors():
            index.add(pks, vectors)
        manifest.layout = layout
        manifest.index_params = params
        library.index = index
        _persist(library, library.store.generation())
        return index


def _stored_sample(library: Library, count: int, size: int = 100_000) -> np.ndarray:
    """About ``size`` stored vectors taken evenly from every batch, without holding them all."""
    keep = min(1.0, size / max(count, 1))
    parts = [training_sample(vectors, int(np.ceil(len(vectors) * keep)), seed=i) for i, (_, vectors) in enumerate(library.store.iter_vectors())]
    return np.concatenate(parts) if parts else np.zeros((0, library.manifest.dim), np.float32)


def _save(library: Library, generation: int) -> None:
    """After a write: save the FAISS file when due (see Settings.index_save_share), else only the
    manifest, whose FAISS fields keep describing the older file that the store's log completes."""
    manifest, settings = library.manifest, library.settings
    path = library.folder / INDEX_FILE
    if len(library.index) >= settings.index_save_every_write_below and path.exists():
        changed = library.store.changed_since(manifest.generation)
        if changed is not None and len(changed) < settings.index_save_share * len(library.index):
            if library.keywords is not None:
                manifest.keyword_generation = library.keywords.generation
            manifest.write(library.folder)
            library.unsaved_generation = generation
            return
    _persist(library, generation)


def _persist(library: Library, generation: int) -> None:
    """Save the FAISS file, then the manifest that vouches for it (each written aside and renamed)."""
    path = library.folder / INDEX_FILE
    if isinstance(library.index, LayeredIndex):
        library.index = library.index.merged()
    index = library.index
    index.save(path)
    crash_point("persist:before-manifest")
    library.manifest.count = len(index)
    library.manifest.generation = generation
    library.manifest.max_pk = library.store.max_vector_pk()  # the index holds exactly the stored vectors
    library.manifest.checksum = file_sha256(path)
    if library.keywords is not None:
        library.manifest.keyword_generation = library.keywords.generation
    library.manifest.write(library.folder)
    with library.store.transaction():
        library.store.forget_changes(generation)
    library.unsaved_generation = None


def ingest(library: Library, papers: list[Paper], show_progress: bool = False) -> IngestReport:
    """Add or update papers by id. Unchanged texts are never re-encoded; changed ones replace their vector."""
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
    report = IngestReport()
    hashes = [text_hash(paper.text) for paper in papers]
    # Encode before taking the writer lock, the slow part: searches never wait for it and another
    # writer can commit meanwhile. A vector depends only on the text, so it stays valid; what to
    # store is decided again under the lock. A model failure leaves nothing half-written.
    encoded = _encode(library, papers, _changed(library, papers, hashes), {}, show_progress)
    with library.lock:
        to_encode = _changed(library, papers, hashes)
        encoded = _encode(library, papers, to_encode, encoded)
        vectors = np.stack([encoded[i] for i in to_encode]) if to_encode else None
        encoder = library.encoder if to_encode else None
        new_manifest = library.manifest is None
        if new_manifest:
            enc = encoder or library.encoder
            layout = choose_layout(len(papers), library.settings.layout)
            library.manifest = Manifest(model=enc.identity, dim=enc.dim, layout=layout, index_params=layout_params(layout, len(papers)))
        generation = library.store.generation()
        with library.store.transaction():
            outcomes = library.store.upsert_papers(papers, hashes)
            if to_encode:
                library.store.put_vectors([outcomes[i].pk for i in to_encode], vectors)
                generation = library.store.bump_generation([outcomes[i].pk for i in to_encode])
            if new_manifest:
                # With the papers, so a kill before the manifest is written loses nothing (see open_library).
                library.store.set_meta("model", library.manifest.model)
                library.store.set_meta("dim", str(library.manifest.dim))
        crash_point("ingest:after-commit")
        library._refresh_filter_columns(o.pk for o in outcomes if o.status != "unchanged")
        if to_encode:  # exactly the papers whose title or abstract changed (or that are new)
            changed = [outcomes[i].pk for i in to_encode]
            library.keywords.write([(outcomes[i].pk, papers[i].title, papers[i].abstract) for i in to_encode], changed, generation)
        if to_encode or library.index is None or not (library.folder / INDEX_FILE).exists():
            changed_pks = np.array([outcomes[i].pk for i in to_encode], dtype=np.int64)
            index = _writable(library) if library.index is not None else _new_index(library, vectors)
            index.remove(changed_pks)
            index.add(changed_pks, vectors if vectors is not None else np.zeros((0, library.manifest.dim), np.float32))
            library.index = index
            if not rebuild_if_needed(library):
                _save(library, generation)
    report.encoded = len(to_encode)
    for outcome in outcomes:
        {"added": report.added, "unchanged": report.unchanged}.get(outcome.status, report.updated).append(outcome.id)
    return report


def _changed(library: Library, papers: list[Paper], hashes: list[str]) -> list[int]:
    """Positions of the papers whose text differs from the stored one (or that are new)."""
    known = library.store.text_hashes([p.id for p in papers])
    return [i for i, (paper, text) in enumerate(zip(papers, hashes)) if known.get(paper.id) != text]


def _encode(library: Library, papers: list[Paper], wanted: list[int], encoded: dict[int, np.ndarray],
            show_progress: bool = False) -> dict[int, np.ndarray]:
    """Vectors by paper position for ``wanted``, encoding only those ``encoded`` lacks."""
    missing = [i for i in wanted if i not in encoded]
    if not missing:
        return encoded
    vectors = library.encoder.encode([papers[i].text for i in missing], show_progress=show_progress)
    return {**encoded, **dict(zip(missing, vectors))}


def _writable(library: Library) -> VectorIndex:
    """The index a write changes and then swaps in; searches keep the one they started with.

    Small indexes are copied whole. A large HNSW index is layered (index/layered.py): the write
    goes to a small exact part and the graph is shared, because copying it costs 0.7 s at 1M."""
    index = library.index
    if isinstance(index, LayeredIndex):
        return index.copy()
    if isinstance(index, HNSWIndex) and len(index) >= library.settings.index_save_every_write_below:
        return LayeredIndex.over(index)
    return index.copy()


def _new_index(library: Library, vectors: np.ndarray | None) -> VectorIndex:
    """The first index of a library, its quantisers (if any) trained on the first papers."""
    manifest = library.manifest
    training = training_sample(vectors) if vectors is not None and manifest.layout != "flat" else None
    return create_index(manifest.layout, manifest.dim, manifest.index_params, training, library.tuning)


def delete(library: Library, paper_ids: list[str]) -> list[str]:
    """Remove papers from the store and the index; returns the ids that existed."""
    with library.lock:
        found = library.store.pks_for_ids(paper_ids)
        if not found:
            return []
        with library.store.transaction():
            library.store.delete(found)
            generation = library.store.bump_generation(found.values())
        crash_point("delete:after-commit")
        library._refresh_filter_columns((), found.values())
        library.keywords.write((), found.values(), generation)
        if library.index is not None:
            index = _writable(library)
            index.remove(np.array(list(found.values()), dtype=np.int64))
            library.index = index
            if not rebuild_if_needed(library):
                _save(library, generation)
    return list(found)


@dataclass
class CheckReport:
    """What 'paperlens check' found; ``ok`` once nothing is left unrepaired."""

    index: str
    papers: int = 0
    vectors: int = 0
    faiss: int = 0
    integrity: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_library(library: Library, repair: bool = True, quick: bool = False) -> CheckReport:
    """Verify the store (SQLite integrity, a vector per paper) and the FAISS file (same ids as the store).

    With ``repair``, papers without vectors are encoded and a FAISS index that disagrees is rebuilt
    from the store; a store that fails SQLite's integrity check cannot be repaired here.
    """
    report = CheckReport(index=str(library.folder), repaired=list(library.recovered))
    store = library.store
    report.integrity = store.integrity_check(quick=quick)
    if report.integrity != ["ok"]:
        report.problems.append("SQLite integrity check failed: " + "; ".join(report.integrity[:5]) +
                               " (restore a backup, or re-ingest the papers into a new index)")
        return report
    with library.lock:
        missing = store.papers_without_vectors()
        if missing:
            note = f"{len(missing)} papers have no vector (e.g. {missing[0].paper.id!r})"
            if repair:
                _encode_stored(library, missing)
                report.repaired.append(note + ": encoded")
            else:
                report.problems.append(note)
        problem = keywords_problem(library, library.keywords)
        if problem and repair:
            rebuild_keywords(library, problem)
            report.repaired.append(f"{problem}: rebuilt {KEYWORD_DIR}/ from the store")
        elif problem:
            report.problems.append(problem)
        if library.manifest is not None:
            problem = _faiss_problem(library)
            if problem and repair:
                rebuild_index(library)
                report.repaired.append(f"{problem}: rebuilt {INDEX_FILE} from the store")
            elif problem:
                report.problems.append(problem)
        report.papers, report.vectors = store.count(), store.vector_count()
        report.faiss = len(library.index) if library.index is not None else 0
    return report


def _faiss_problem(library: Library) -> str | None:
    """The in-memory index against the store (by ids), then the file on disk against the manifest."""
    if library.index is None:
        return f"{INDEX_FILE} is not loaded"
    stored = library.store.vector_pks()
    try:
        held = library.index.ids()
    except NotImplementedError:
        held = None
    if held is not None and not np.array_equal(held, stored):
        extra = np.setdiff1d(held, stored)
        missing = np.setdiff1d(stored, held)
        return f"{INDEX_FILE} holds {len(extra)} ids the store does not and lacks {len(missing)} that it has"
    if held is None and len(library.index) != len(stored):
        return f"{INDEX_FILE} holds {len(library.index)} vectors, the store {len(stored)}"
    return index_problem(library, library.folder / INDEX_FILE)


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
        library.store.bump_generation([item.pk for item in missing])
    rebuild_index(library)
