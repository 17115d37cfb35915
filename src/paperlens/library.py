"""An index folder: the SQLite store, the FAISS file and a manifest, kept in step.

    indexes/NAME/
      papers.sqlite   papers and their vectors (the source of truth)
      vectors.faiss   the ANN index over those vectors (a cache: rebuilt from the store if stale)
      manifest.json   model, dimension, count, layout, format version

Ingest and delete go through here so that the store, the index and the manifest never disagree.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .config import DEFAULT_MODEL, Settings
from .embed import Encoder, EncoderSpec, load_encoder, model_identity, text_hash
from .errors import IndexMismatch, IndexNotFound, InvalidInput, NothingToIngest, PaperlensError
from .index import VectorIndex, choose_layout, create_index, fsync_dir, load_index
from .papers import InvalidRecord, Paper, normalise_id
from .store import Store

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STORE_FILE = "papers.sqlite"
INDEX_FILE = "vectors.faiss"
MANIFEST_FILE = "manifest.json"


@dataclass
class Manifest:
    model: str
    dim: int
    layout: str
    count: int = 0
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
        self.index = index
        # One writer at a time, and no search while the FAISS index is being mutated.
        self.lock = threading.RLock()

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
        )
        encoder = load_encoder(spec)
        if self.manifest and encoder.dim != self.manifest.dim:
            raise IndexMismatch(f"model {spec.model!r} gives {encoder.dim}-d vectors but {self.folder} holds {self.manifest.dim}-d ones")
        return encoder

    def __len__(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_library(settings: Settings, folder: Path | None = None, create: bool = False) -> Library:
    """Open an index folder (create it when asked). Never re-encodes: a stale FAISS file is rebuilt from stored vectors."""
    folder = Path(folder or settings.index)
    if not (folder / STORE_FILE).exists():
        if not create:
            raise IndexNotFound(f"no index at {folder}: build one with 'paperlens ingest FILE --index {folder}'")
        folder.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not folder.is_dir():
        raise PaperlensError(f"{folder} is not a folder")
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
    library = Library(folder, settings, store, manifest, None)
    if manifest:
        library.index = _load_or_rebuild(library)
    return library


def _load_or_rebuild(library: Library) -> VectorIndex:
    manifest = library.manifest
    path = library.folder / INDEX_FILE
    stored = library.store.vector_count()
    if path.exists():
        try:
            index = load_index(manifest.layout, path)
            if len(index) == stored and index.dim == manifest.dim:
                return index
            log.warning("%s holds %d vectors, the store %d: rebuilding from the store", path, len(index), stored)
        except RuntimeError as exc:
            log.warning("%s is unreadable (%s): rebuilding from the store", path, exc)
    return rebuild_index(library)


def rebuild_index(library: Library) -> VectorIndex:
    """A fresh FAISS index from the vectors in the store; no model needed."""
    manifest = library.manifest
    layout = choose_layout(library.store.vector_count(), library.settings.layout)
    index = create_index(layout, manifest.dim)
    for pks, vectors in library.store.iter_vectors():
        index.add(pks, vectors)
    manifest.layout = layout
    manifest.count = len(index)
    library.index = index
    _persist(library)
    return index


def _persist(library: Library) -> None:
    library.index.save(library.folder / INDEX_FILE)
    library.manifest.count = len(library.index)
    library.manifest.write(library.folder)


def ingest(library: Library, papers: list[Paper], show_progress: bool = False) -> IngestReport:
    """Add or update papers by id. Unchanged texts are never re-encoded; changed ones replace their vector."""
    if not papers:
        raise NothingToIngest("no papers to ingest")
    for paper in papers:
        try:
            paper.id = normalise_id(paper.id)  # '2401.00001v2' updates '2401.00001'
        except InvalidRecord as exc:
            raise InvalidInput(str(exc)) from None
    # Last occurrence of an id wins, as if the records had been ingested one after another.
    papers = list({paper.id: paper for paper in papers}.values())
    report = IngestReport()
    hashes = [text_hash(paper.text) for paper in papers]
    with library.lock:
        known = library.store.text_hashes([p.id for p in papers])
        to_encode = [i for i, (p, h) in enumerate(zip(papers, hashes)) if known.get(p.id) != h]
        # Encode before touching the store: a model failure then leaves nothing half-written.
        encoder = library.encoder if to_encode else None
        vectors = encoder.encode([papers[i].text for i in to_encode], show_progress=show_progress) if encoder else None
        if library.manifest is None:
            enc = encoder or library.encoder
            library.manifest = Manifest(model=enc.identity, dim=enc.dim, layout=choose_layout(len(papers), library.settings.layout))
            library.index = create_index(library.manifest.layout, enc.dim)
        with library.store.transaction():
            outcomes = library.store.upsert_papers(papers, hashes)
            if to_encode:
                library.store.put_vectors([outcomes[i].pk for i in to_encode], vectors)
        changed_pks = np.array([outcomes[i].pk for i in to_encode], dtype=np.int64)
        library.index.remove(changed_pks)
        library.index.add(changed_pks, vectors if vectors is not None else np.zeros((0, library.manifest.dim), np.float32))
        if to_encode or not (library.folder / INDEX_FILE).exists():
            _persist(library)
    report.encoded = len(to_encode)
    for outcome in outcomes:
        {"added": report.added, "unchanged": report.unchanged}.get(outcome.status, report.updated).append(outcome.id)
    return report


def delete(library: Library, paper_ids: list[str]) -> list[str]:
    """Remove papers from the store and the index; returns the ids that existed."""
    with library.lock:
        found = library.store.pks_for_ids(paper_ids)
        if not found:
            return []
        with library.store.transaction():
            library.store.delete(found)
        if library.index is not None:
            library.index.remove(np.array(list(found.values()), dtype=np.int64))
            _persist(library)
    return list(found)
