"""Fixtures: one real index of the demo corpus (real model, FAISS, SQLite), built once per session."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.library import Library, ingest, open_library
from paperlens.papers import Paper, read_papers

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_papers() -> list[Paper]:
    return read_papers(DEMO_CORPUS).papers


@pytest.fixture(scope="session")
def demo_index_dir(tmp_path_factory, demo_papers) -> Path:
    folder = tmp_path_factory.mktemp("demo-index")
    with open_library(Settings(index=folder), create=True) as library:
        ingest(library, demo_papers)
    return folder


@pytest.fixture()
def demo_library(demo_index_dir) -> Library:
    """Read-only use: tests that write build their own index (see ``small_library``)."""
    with open_library(Settings(index=demo_index_dir)) as library:
        yield library


def topic_papers() -> list[Paper]:
    """Six papers on three unrelated topics, with metadata for filters."""
    rows = [
        ("2401.00001", "Protein folding with deep networks", "We predict three-dimensional protein structure from amino acid sequences using attention.", "2024-01-10", ["q-bio.BM"], 5),
        ("2401.00002", "Protein structure prediction at scale", "Large models trained on sequence databases predict folded protein structures accurately.", "2024-03-02", ["q-bio.BM", "cs.LG"], 1),
        ("2402.00003", "Galaxy rotation curves and dark matter", "Rotation curves of spiral galaxies indicate a halo of dark matter around the disk.", "2023-06-01", ["astro-ph.GA"], 12),
        ("2402.00004", "Dark matter halos in dwarf galaxies", "We measure dark matter density profiles of dwarf galaxies from stellar kinematics.", "2022-11-20", ["astro-ph.GA"], 0),
        ("2403.00005", "Reinforcement learning for robot grasping", "A robot arm learns to grasp novel objects with deep reinforcement learning from camera images.", "2025-02-14", ["cs.RO", "cs.LG"], 30),
        ("2403.00006", "Sim-to-real transfer for robotic manipulation", "Policies trained in simulation transfer to real robot manipulation tasks with domain randomisation.", "2025-05-05", ["cs.RO"], 2),
    ]
    return [Paper(id=i, title=t, abstract=a, date=d, categories=c, popularity=p, authors=["A. Author", "B. Author"]) for i, t, a, d, c, p in rows]


@pytest.fixture()
def small_library(tmp_path) -> Library:
    with open_library(Settings(index=tmp_path / "small"), create=True) as library:
        ingest(library, topic_papers())
        library.keyword_cache.wait_settled(60)
        yield library


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture
def settings() -> Settings:
    """Defaults as shipped, quiet: for tests that open their own index folders."""
    return Settings(show_progress=False)


@pytest.fixture
def library_of(tmp_path, settings):
    """A real index of the papers a test module names, in tmp_path/index; closed at the end."""
    opened: list[Library] = []

    def make(papers: list[Paper]) -> Library:
        library = open_library(settings, tmp_path / "index", create=True)
        ingest(library, papers)
        library.keyword_cache.wait_settled(60)  # keywords/ committed: a test's first search reads it, not a view
        opened.append(library)
        return library

    yield make
    for library in opened:
        library.close()


def hold_calls(monkeypatch, owner, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``owner.name`` stop before it runs until ``release`` is set (a slow call, in flight);
    ``started`` is set once a call has reached it. Returns (started, release)."""
    started, release = threading.Event(), threading.Event()
    real = getattr(owner, name)

    def held(*args, **kwargs):
        started.set()
        assert release.wait(60), f"the test never released {name}"
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, held)
    return started, release
