"""Backups of an index folder, safe while a server writes it, and their restore.

A backup is a folder:

    papers.sqlite          the store (papers, vectors, users, likes, collections, feeds), copied
                           with SQLite's online backup API: one consistent state, even while
                           another process commits
    manifest.json          model, dimension and layout of the index (as the folder had it)
    session.secret         the web page's cookie key, if the folder has one (mode 0600)
    paperlens-backup.json  what this is: paperlens version, time, papers, store write

vectors.faiss and keywords/ are not copied: they are caches of the store, rebuilt at restore from
the stored vectors and texts (no model needed). Copying them consistently with the store would
mean holding the writer lock for the copy; rebuilding costs only time at restore, the rare case.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__
from .config import Settings
from .errors import IndexMismatch, IndexNotFound, InvalidInput, PaperlensError
from .library import MANIFEST_FILE, STORE_FILE, CheckReport, Manifest, check_library, open_library
from .locking import LOCK_FILE, WriterLock
from .web.session import SECRET_FILE

BACKUP_FILE = "paperlens-backup.json"
BACKUP_FORMAT = 1


@dataclass
class BackupInfo:
    """paperlens-backup.json: written last, so a folder without it is no (complete) backup."""

    format: int
    paperlens: str
    created: str
    source: str
    papers: int
    users: int
    generation: int
    model: str | None


def backup(folder: Path, dest: Path) -> BackupInfo:
    """Copy the index folder's store, manifest and session key into the new folder ``dest``.

    Never waits for a writer and never blocks one: SQLite's backup reads one committed state.
    Written beside ``dest`` and renamed into place, so an interrupted backup leaves no folder
    that looks complete."""
    folder, dest = Path(folder), Path(dest)
    if not (folder / STORE_FILE).is_file():
        raise IndexNotFound(f"no index at {folder} (no {STORE_FILE})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(f"{dest} exists and is not an empty folder; a backup never overwrites anything")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        info = _copy_store(folder / STORE_FILE, partial / STORE_FILE, origin=str(folder.resolve()))
        for name in (MANIFEST_FILE, SECRET_FILE):  # each replaced whole by its writer: a read sees one version
            if (folder / name).is_file():
                shutil.copy2(folder / name, partial / name)
        if (partial / SECRET_FILE).exists():
            os.chmod(partial / SECRET_FILE, 0o600)
        (partial / BACKUP_FILE).write_text(json.dumps(asdict(info), indent=2))
        if dest.exists():
            dest.rmdir()
        os.replace(partial, dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return info


def _copy_store(source: Path, target: Path, origin: str) -> BackupInfo:
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one read transaction, one committed state
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        meta = dict(dst.execute("SELECT key, value FROM meta").fetchall())
        papers = dst.execute("SELECT COUNT(*) FROM papers").fetchone()[0]
        users = dst.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    finally:
        dst.close()
        src.close()
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return BackupInfo(format=BACKUP_FORMAT, paperlens=__version__, created=created, papers=papers, users=users,
                      generation=int(meta.get("generation", 0)), model=meta.get("model"), source=origin)


def read_backup(source: Path) -> BackupInfo:
    """The description of the backup in ``source``, or why it is not one."""
    source = Path(source)
    marker = source / BACKUP_FILE
    if not source.is_dir() or not marker.is_file() or not (source / STORE_FILE).is_file():
        raise InvalidInput(f"{source} is not a paperlens backup (it has no {BACKUP_FILE} and {STORE_FILE}); "
                           "make one with 'paperlens backup DEST --index DIR'")
    try:
        data = json.loads(marker.read_text())
        info = BackupInfo(**{name: data[name] for name in BackupInfo.__dataclass_fields__})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"{marker} is unreadable ({exc}): not a paperlens backup") from None
    if info.format > BACKUP_FORMAT:
        raise IndexMismatch(f"{source} was written by a newer paperlens (backup format {info.format})")
    return info


def restore(source: Path, folder: Path, settings: Settings, force: bool = False) -> CheckReport:
    """Make ``folder`` an index of the backup in ``source``: its store and manifest copied, the
    caches rebuilt from the store, then checked. A folder that holds anything is replaced only with
    ``force`` (its papers and users are lost); the new index is built beside it and renamed into place."""
    source, folder = Path(source), Path(folder)
    info = read_backup(source)
    _check_sound(source / STORE_FILE)
    occupied = folder.exists() and (not folder.is_dir() or any(p.name != LOCK_FILE for p in folder.iterdir()))
    if occupied and not force:
        raise InvalidInput(f"{folder} is not empty; restoring would replace its papers and users. "
                           "Pass --force to replace it, or restore into a new folder")
    if folder.exists() and not folder.is_dir():
        raise PaperlensError(f"{folder} is not a folder")
    staging = folder.with_name(f".{folder.name}.restore-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copy2(source / STORE_FILE, staging / STORE_FILE)
        if (source / SECRET_FILE).is_file():
            shutil.copy2(source / SECRET_FILE, staging / SECRET_FILE)
            os.chmod(staging / SECRET_FILE, 0o600)
        if (source / MANIFEST_FILE).is_file():
            saved = Manifest.read(source)
            # Model, dimension and layout as backed up; nothing vouches for cache files, so open rebuilds them.
            Manifest(model=saved.model, dim=saved.dim, layout=saved.layout, index_params=saved.index_params).write(staging)
        with open_library(settings, staging, repair=True) as library:
            report = check_library(library, repair=True)
        if not report.ok:
            raise PaperlensError(f"the backup in {source} does not make a sound index: " + "; ".join(report.problems))
        _swap_in(staging, folder, settings)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.index = str(folder)
    report.repaired = [f"restored {info.papers} papers and {info.users} users backed up {info.created} from {info.source}"]
    return report


def _check_sound(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        result = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        raise InvalidInput(f"{path} is not a readable SQLite file ({exc}): not a paperlens backup") from None
    finally:
        conn.close()
    if result != ["ok"]:
        raise InvalidInput(f"{path} fails SQLite's check: {'; '.join(result[:3])}")


def _swap_in(staging: Path, folder: Path, settings: Settings) -> None:
    """Rename the restored index into place; an index already there is moved aside under its writer
    lock (no write of another process is cut in half), then removed."""
    if not folder.exists():
        os.replace(staging, folder)
        return
    old = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
    with WriterLock(folder).hold(settings.writer_wait_seconds):
        os.replace(folder, old)
        os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
