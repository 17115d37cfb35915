"""The author filter: names compared as names.author_key makes them, through the library, the API and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from paperlens.api import create_app
from paperlens.cli import main
from paperlens.errors import InvalidInput
from paperlens.library import delete, ingest, open_library
from paperlens.names import AuthorKey, author_key
from paperlens.papers import Paper, read_papers
from paperlens.search import make_filters, search_text

# name as written → (family key, first initial)
NAMES = [
    ("Yann LeCun", ("lecun", "y")),
    ("LeCun, Y.", ("lecun", "y")),
    ("Y. LeCun", ("lecun", "y")),
    ("LeCun Y", ("lecun", "y")),  # PubMed: family name, then initials
    ("lecun", ("lecun", "")),
    ("LECUN", ("lecun", "")),
    ("Müller, J.", ("muller", "j")),
    ("J. Muller", ("muller", "j")),
    ("Jürgen  Müller", ("muller", "j")),
    ("Laurens van der Maaten", ("maaten", "l")),
    ("van der Maaten, L.", ("maaten", "l")),
    ("Maaten, L. van der", ("maaten", "l")),
    ("van der Maaten LJ", ("maaten", "l")),
    ("Hinton GE", ("hinton", "g")),
    ("Geoffrey E. Hinton", ("hinton", "g")),
    ("J.-M. Lévy-Leblond", ("levyleblond", "j")),
    ("Lévy-Leblond, Jean-Marc", ("levyleblond", "j")),
    ("O'Brien, P.", ("obrien", "p")),
    ("Patrick O’Brien", ("obrien", "p")),
    ("John Smith Jr.", ("smith", "j")),
    ("Smith, Jr., John", ("smith", "j")),
    ("Søren Kierkegaard", ("kierkegaard", "s")),
    ("Charles de Gaulle", ("gaulle", "c")),
    ("de Gaulle", ("gaulle", "")),
    ("Gabriel García Márquez", ("marquez", "g")),
    ("García Márquez, Gabriel", ("marquez", "g")),
    ("王伟", ("王伟", "")),
    ("", None),
    ("  ", None),
    ("...", None),
    ("3", None),
]


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_author_key(name, expected):
    assert author_key(name) == (AuthorKey(*expected) if expected else None)


def paper(pid: str, authors: list[str], title: str, **fields) -> Paper:
    return Paper(pid, title, f"{title}. A study of {title.lower()} with experiments and analysis.", authors=authors, **fields)


AUTHOR_PAPERS = [
    paper("p1", ["Yann LeCun", "Léon Bottou"], "Gradient-based learning applied to document recognition", date="1998-11-01"),
    paper("p2", ["Y. Bengio", "R. Ducharme"], "A neural probabilistic language model", date="2003-02-01"),
    paper("p3", ["Müller, Jürgen"], "Kernel methods for protein structure", date="2010-05-01"),
    paper("p4", ["Laurens van der Maaten", "Geoffrey Hinton"], "Visualizing data using t-SNE", date="2008-11-01"),
    paper("p5", ["A. LeCun"], "Convolutional networks for images, speech and time series", date="1995-01-01"),
]


@pytest.fixture()
def author_library(library_of):
    return library_of(AUTHOR_PAPERS)


def found(library, *names: str, query: str = "learning networks data methods") -> set[str]:
    return {hit.id for hit in search_text(library, query, k=10, filters=make_filters(authors=list(names)))}


def test_any_spelling_of_a_name_finds_the_same_papers(author_library):
    for name in ("Yann LeCun", "LeCun, Y.", "Y. LeCun", "LeCun Y", "yann lecun"):
        assert found(author_library, name) == {"p1"}, name
    assert found(author_library, "lecun") == {"p1", "p5"}  # no initial: any LeCun
    assert found(author_library, "J. Muller") == found(author_library, "Muller") == {"p3"}
    assert found(author_library, "van der Maaten, L.") == found(author_library, "L. van der Maaten") == {"p4"}
    assert found(author_library, "Bengio", "Hinton") == {"p2", "p4"}  # any of the names
    assert found(author_library, "Schmidhuber") == set()  # nobody: empty, not an error


def test_an_empty_or_letterless_author_is_refused():
    for bad in ("", "   ", "...", "42"):
        with pytest.raises(InvalidInput, match="author"):
            make_filters(authors=[bad])
    with pytest.raises(InvalidInput, match="the limit is 50"):
        make_filters(authors=[f"Author{i}" for i in range(51)])
    with pytest.raises(InvalidInput, match="the limit is 200"):
        make_filters(authors=["x" * 201])


def test_a_listing_record_with_only_an_author_count_never_matches(library_of, tmp_path: Path):
    listing = tmp_path / "listing.txt"
    listing.write_text("Gradient learning for document recognition\n\n" + "We study gradient learning for documents. " * 8
                       + "\n\n• 3 authors\n·\nJul 24, 2025 12\n")
    records = read_papers(listing, "listing").papers
    assert records[0].authors == [] and records[0].extra["author_count"] == 3
    library = library_of([*AUTHOR_PAPERS, *records])
    query = "gradient learning document recognition"
    assert records[0].id in {hit.id for hit in search_text(library, query, k=10)}
    for name in ("LeCun", "Author", "authors"):
        assert records[0].id not in found(library, name, query=query)


def test_author_through_the_api(author_library):
    with TestClient(create_app(author_library.settings, author_library)) as client:
        def ids(path: str, **kwargs) -> set[str]:
            response = client.request(kwargs.pop("method", "GET"), path, **kwargs)
            assert response.status_code == 200, response.text
            return {hit["id"] for hit in response.json()["results"]}

        query = "learning networks data methods"
        assert ids("/search", params={"q": query, "author": "LeCun, Y."}) == {"p1"}
        assert ids("/search", params={"q": query, "author": "Yann LeCun"}) == {"p1"}
        assert ids("/search", params=[("q", query), ("author", "Bengio"), ("author", "van der Maaten, L.")]) == {"p2", "p4"}
        assert ids("/search", params={"q": query, "author": "Nobody"}) == set()
        assert ids("/papers/p1/similar", params={"author": "lecun"}) == {"p5"}  # the paper itself stays out
        assert ids("/similar", method="POST", json={"text": "convolutional networks", "author": ["LeCun"]}) == {"p1", "p5"}
        assert ids("/recommend", method="POST", json={"positive": ["p1"], "author": ["Hinton, G."]}) == {"p4"}
        for bad in ({"q": query, "author": ""}, {"q": query, "author": "?!"}):
            response = client.get("/search", params=bad)
            assert response.status_code == 422 and "author" in response.json()["detail"]
        response = client.post("/similar", json={"text": "networks", "author": [""]})
        assert response.status_code == 422 and "author" in response.json()["detail"]


def test_author_in_the_feeds(author_library):
    with TestClient(create_app(author_library.settings, author_library)) as client:
        user = client.post("/users", json={"name": "reader"}).json()
        headers = {"Authorization": f"Bearer {user['token']}"} if "token" in user else {}
        assert client.post(f"/users/{user['id']}/interactions", json={"paper_id": "p1", "kind": "like"}, headers=headers).status_code < 300
        feed = client.get(f"/users/{user['id']}/feed", params={"author": "Bengio, Y."}, headers=headers)
        assert feed.status_code == 200, feed.text
        assert [item["id"] for item in feed.json()["results"]] == ["p2"]
        atom = client.get(f"/users/{user['id']}/feed.atom", params={"author": "Bengio, Y."}, headers=headers)
        assert atom.status_code == 200 and "neural probabilistic" in atom.text and "t-SNE" not in atom.text


def test_author_through_the_cli(author_library):
    folder = str(author_library.folder)
    author_library.close()
    runner = CliRunner()
    for name in ("LeCun, Y.", "Yann LeCun"):
        result = runner.invoke(main, ["search", "learning networks", "--index", folder, "--author", name, "--json"])
        assert result.exit_code == 0, result.output
        assert [hit["id"] for hit in json.loads(result.output)["results"]] == ["p1"]
    result = runner.invoke(main, ["search", "learning networks", "--index", folder, "--author", "Bengio", "--author", "Hinton", "--json"])
    assert {hit["id"] for hit in json.loads(result.output)["results"]} == {"p2", "p4"}
    result = runner.invoke(main, ["similar", "p1", "--index", folder, "--author", "lecun", "--json"])
    assert [hit["id"] for hit in json.loads(result.output)["results"]] == ["p5"]
    result = runner.invoke(main, ["search", "learning", "--index", folder, "--author", ""])
    assert result.exit_code == 1 and "author is empty" in result.output


def reference(papers: dict[str, list[str]], names: list[str]) -> set[str]:
    """The rule in plain Python: any name asked for agrees with any author on family name and,
    when both have one, initial."""
    wanted = [author_key(n) for n in names]
    def agrees(have, want):
        return have.family == want.family and (not want.initial or not have.initial or have.initial == want.initial)
    return {pid for pid, authors in papers.items()
            if any(agrees(have, want) for have in filter(None, map(author_key, authors)) for want in wanted)}


def test_the_author_columns_follow_writes(tmp_path: Path, settings):
    rng = random.Random(3)
    people = ["Yann LeCun", "A. LeCun", "Müller, J.", "K. Müller", "van der Maaten, L.", "Hinton, G.", "Bengio", "Li Wei", "Ng, A."]
    def papers(start: int, count: int) -> list[Paper]:
        return [paper(f"w{i}", rng.sample(people, rng.randrange(0, 4)), f"Paper {i} on topic {i % 3}") for i in range(start, start + count)]

    with open_library(settings, tmp_path / "index", create=True) as library:
        stored = {p.id: p.authors for p in papers(0, 40)}
        ingest(library, [Paper(pid, f"Paper {pid}", f"Paper {pid} on topic.", authors=a) for pid, a in stored.items()])
        library.filter_columns()  # loaded now: the writes below patch it
        later = papers(30, 20)  # 10 of them re-authored (metadata only: nothing re-encoded), 10 new
        ingest(library, [Paper(p.id, f"Paper {p.id}", f"Paper {p.id} on topic.", authors=p.authors) for p in later])
        stored.update({p.id: p.authors for p in later})
        gone = [f"w{i}" for i in range(0, 50, 7)]
        delete(library, gone)
        for pid in gone:
            del stored[pid]
        columns = library.filter_columns()
        fresh = library.store.filter_columns()
        for field in ("pks", "author_offsets", "author_family", "author_initial"):
            assert np.array_equal(getattr(columns, field), getattr(fresh, field)), field
        pk_to_id = {pk: pid for pid, pk in library.store.pks_for_ids(stored).items()}
        for names in (["LeCun"], ["Y. LeCun"], ["muller"], ["J. Müller", "Hinton"], ["Maaten, L."], ["Wei"], ["Nobody"], ["Y. Bengio"]):
            got = {pk_to_id[pk] for pk in columns.allowed(make_filters(authors=names))}
            assert got == reference(stored, names), names
            # the same filter inside the keyword index (every paper holds "paper"), through the same writes
            inside = library.keywords.top([("paper", 1.0)], 1000, where=make_filters(authors=names))
            assert {pk_to_id[pk] for pk, _ in inside} == got, names


def test_an_older_file_learns_the_author_keys_of_its_papers(tmp_path: Path):
    """Migration 15: the packed author keys, filled for the papers already stored."""

    from paperlens.store import Store
    from test_store import _store_at_version

    path = tmp_path / "papers.sqlite"
    _store_at_version(path, 12, "INSERT INTO papers(id, title, abstract, authors, extra, text_hash, added_at, updated_at) VALUES "
                      "('p1', 't', 'a', '[\"Yann LeCun\", \"Bottou, L.\"]', '{}', 'x', '', ''), "
                      "('p2', 't', 'b', '[]', '{}', 'y', '', ''), ('p3', 't', 'c', '[\"Müller, K.\"]', '{}', 'z', '', '')")
    columns = Store(path).filter_columns()
    assert columns.allowed(make_filters(authors=["LeCun, Y."])).tolist() == [1]
    assert columns.allowed(make_filters(authors=["L. Bottou", "K. Muller"])).tolist() == [1, 3]
    assert columns.author_offsets.tolist() == [0, 2, 2, 3]


def test_a_narrow_filter_is_scored_exactly_on_an_approximate_layout(tmp_path: Path):
    """search.EXACT_FILTER_MAX: an HNSW index answers an author filter from the papers' stored vectors."""
    from paperlens.config import Settings
    from paperlens.search import rank_by_vector

    with open_library(Settings(show_progress=False, layout="hnsw"), tmp_path / "hnsw", create=True) as library:
        ingest(library, AUTHOR_PAPERS)
        assert library.index.layout == "hnsw"
        query = library.encoder.encode_query("convolutional networks for images")
        allowed = library.filter_columns().allowed(make_filters(authors=["LeCun"]))
        ranked = rank_by_vector(library, query, 5, allowed=allowed)
        pks, vectors = library.store.candidate_vectors(allowed.tolist(), library.manifest.dim)
        exact = sorted(zip(pks, (vectors @ query).tolist()), key=lambda item: -item[1])
        assert [pk for pk, _ in ranked] == [pk for pk, _ in exact] and len(ranked) == 2
        assert [s for _, s in ranked] == pytest.approx([s for _, s in exact], abs=1e-5)
        assert found(library, "LeCun, Y.") == {"p1"}


def columns_of(papers: dict[int, list[tuple[int, int]]]):
    """FilterColumns of pk → [(family hash, initial)], the other fields empty."""
    from paperlens.filters import FilterColumns

    pks = sorted(papers)
    entries = [entry for pk in pks for entry in papers[pk]]
    return FilterColumns(np.array(pks, dtype=np.int64), np.array([b""] * len(pks), dtype="S10"), np.zeros(len(pks)), {},
                         np.concatenate([[0], np.cumsum([len(papers[pk]) for pk in pks])]).astype(np.int64),
                         np.array([f for f, _ in entries], dtype=np.int64), np.array([i for _, i in entries], dtype=np.uint32))


def test_patching_splices_the_author_entries_of_many_papers_at_once():
    rng = random.Random(5)
    def entries() -> list[tuple[int, int]]:
        return [(rng.randrange(-50, 50), rng.randrange(0, 3)) for _ in range(rng.randrange(0, 5))]

    for _ in range(200):
        held = {pk: entries() for pk in rng.sample(range(1, 60), rng.randrange(0, 30))}
        fresh = {pk: entries() for pk in rng.sample(range(1, 70), rng.randrange(0, 8))}  # new papers and new versions
        removed = rng.sample(sorted(held), min(len(held), rng.randrange(0, 5)))
        expected = {pk: e for pk, e in held.items() if pk not in removed} | fresh
        patched = columns_of(held).patched(columns_of(fresh), removed)
        want = columns_of(expected)
        for field in ("pks", "author_offsets", "author_family", "author_initial"):
            assert np.array_equal(getattr(patched, field), getattr(want, field)), (field, held, fresh, removed)
