"""Importing a reference manager's library (imports.py) through the API, the CLI and the web page,
on real export files (tests/data/library/) against a small real index."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import topic_papers
from paperlens import users as user_ops
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.errors import InvalidInput, PayloadTooLarge
from paperlens.imports import decode, detect_format, import_library, read_references
from paperlens.library import ingest, open_library
from paperlens.papers import Paper, arxiv_id_in

FILES = Path(__file__).resolve().parent / "data" / "library"
GNN = Paper(id="h6e1b0c0c0a0b0c01", title="Graph neural networks for molecule property prediction",
            abstract="Message passing networks on molecular graphs predict quantum chemical properties of small molecules.",
            date="2021-04-01", extra={"doi": "10.5555/gnn.2021.42"})
NEWS = Paper(id="h6e1b0c0c0a0b0c02", title="Attention-based summarisation of news articles",
             abstract="A neural attention model writes headline summaries of news articles word by word.", date="2015-09-01")
# What library.bib names: by arXiv id (eprint, and a URL with a version), by DOI, by title alone.
LIBRARY_BIB = {"folding2024": ("arxiv", "2401.00001"), "scale2024": ("arxiv", "2401.00002"), "gnn2021": ("doi", GNN.id),
               "grasping": ("title", "2403.00005"), "news": ("title", NEWS.id)}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("import-index") / "index"
    with open_library(Settings(index=folder, show_progress=False), create=True) as library:
        ingest(library, [*topic_papers(), GNN, NEWS])
    return folder


@pytest.fixture()
def folder(index_dir, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    return copy


@pytest.fixture()
def client(folder):
    with TestClient(create_app(Settings(index=folder, max_body_bytes=200_000))) as client:
        yield client


def state(client: TestClient, user_id: int) -> tuple:
    """What an import may change: the papers held, the user's interactions (with their times), collections."""
    papers = client.get("/health").json()["papers"]
    interactions = client.get(f"/users/{user_id}/interactions").json()["interactions"]
    return papers, interactions, client.get(f"/users/{user_id}/collections").json()


def test_arxiv_ids_are_found_in_every_field_a_reference_writes_them_in():
    for text in ("2401.00001v3", "arXiv:2401.00001", "arXiv preprint arXiv:2401.00001v2", "https://arxiv.org/abs/2401.00001v3",
                 "http://arxiv.org/pdf/2401.00001v2.pdf", "10.48550/arXiv.2401.00001"):
        assert arxiv_id_in(text) == "2401.00001", text
    assert arxiv_id_in("arXiv:hep-th/9901001v2") == "hep-th/9901001"
    assert arxiv_id_in("https://arxiv.org/abs/math.GT/0309136") == "math.GT/0309136"
    for text in ("pages 1234.5678", "Proc. 2401.00001", "arXiv:2401.000011", "https://example.org/2401.00001"):
        assert arxiv_id_in(text) is None, text


def test_bibtex_arxiv_ids_come_from_eprints_dblp_volumes_and_urls_not_other_archives():
    text = """@article{a, title={A}, eprint={2401.00001v2}, eprinttype={arxiv}}
@article{b, title={B}, eprint={2401.00002}, archivePrefix={HAL}}
@article{c, title={C}, journal={CoRR}, volume={abs/1810.04805}}
@article{d, title={D}, eprint={https://arxiv.org/abs/2401.00003v1}}
@article{e, title={E}, note={arXiv preprint arXiv:hep-th/9901001v3}, doi={10.1103/PhysRevD.59.1}}
"""
    refs, _ = read_references(text, "bibtex")
    assert [(ref.key, ref.arxiv) for ref in refs] == [("a", "2401.00001"), ("b", None), ("c", "1810.04805"), ("d", "2401.00003"),
                                                      ("e", "hep-th/9901001")]
    assert refs[-1].doi == "10.1103/PhysRevD.59.1"


def read(name: str, fmt: str | None = None):
    text = decode((FILES / name).read_bytes())
    return read_references(text, fmt or detect_format(text, name))


def test_the_format_is_told_by_the_file_name_else_by_the_content():
    for name, fmt in (("library.bib", "bibtex"), ("broken.bib", "bibtex"), ("zotero.json", "csl-json"), ("mendeley.ris", "ris")):
        text = decode((FILES / name).read_bytes())
        assert detect_format(text) == fmt and detect_format(text, "export.txt") == fmt  # library.bib opens with a comment
        assert detect_format(text, name) == fmt
    assert detect_format("@misc{x, title={y}}", "My Library.RIS") == "ris"  # a name that says so wins
    assert detect_format("<?xml version='1.0'?><rdf:RDF/>") == "zotero-rdf"


def test_each_format_is_read_with_its_ids_names_and_skips():
    refs, skipped = read("library.bib")
    by_key = {ref.key: ref for ref in refs}
    assert list(by_key) == [*LIBRARY_BIB, "coral2026", "unindexed"] and not skipped
    assert by_key["folding2024"].arxiv == "2401.00001" and by_key["scale2024"].arxiv == "2401.00002"
    assert by_key["gnn2021"].doi == "10.5555/GNN.2021.42" and by_key["gnn2021"].arxiv is None
    assert by_key["grasping"].title == "Reinforcement Learning for Robot-Grasping"  # braces and LaTeX gone
    assert by_key["coral2026"].authors == ["José Müller", "Anaïs Østergaard"] and by_key["coral2026"].date == "2026-03-01"

    refs, skipped = read("broken.bib")
    assert [ref.key for ref in refs] == ["first", "last"] and [ref.arxiv for ref in refs] == ["2402.00004", "2402.00003"]
    assert [(s.key, s.match) for s in skipped] == [("broken", "skipped")]
    assert skipped[0].reason.startswith("unparseable entry at line 6:")

    refs, skipped = read("zotero.json")
    assert [ref.arxiv for ref in refs[:2]] == ["2403.00006", "2402.00004"] and refs[2].doi == "10.5555/gnn.2021.42"
    assert refs[-1].authors == ["Søren Ødegård", "Begoña Núñez"] and refs[-1].date == "2023-07-14"
    assert [s.reason for s in skipped] == ["unparseable entry: expected an object, got str"]

    refs, skipped = read("mendeley.ris")
    assert [ref.arxiv for ref in refs[:3]] == ["2401.00001", None, "2403.00005"] and refs[1].doi == "10.5555/gnn.2021.42"
    assert refs[-1].authors == ["Gülşen Çelik", "Jiří Dvořák"]
    assert len(skipped) == 1 and "without its end" in skipped[0].reason


@pytest.mark.parametrize(("data", "fmt", "message"), [
    (b"", None, "the file is empty"),
    (b"  \n\n", "bibtex", "the file is empty"),
    ((FILES / "zotero.json").read_bytes(), "bibtex", "no BibTeX entries in the file (it looks like CSL-JSON)"),
    ((FILES / "library.bib").read_bytes(), "csl-json", "not valid CSL-JSON"),
    ((FILES / "library.bib").read_bytes(), "ris", "no RIS entries in the file (it looks like BibTeX)"),
    (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"></rdf:RDF>', None, "Zotero RDF is not read"),
    ("@article{x, title={Caf\u00e9}}".encode("latin-1"), None, "the file is not UTF-8 (line 1: byte 0xe9"),
    (b"@article{x, title = {never closed,\n", "bibtex", "none of the 1 entries of the file could be read as BibTeX"),
])
def test_a_file_that_is_not_what_it_claims_is_refused_with_a_reason(data, fmt, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        read_references(decode(data), fmt or detect_format(decode(data)))


def test_bibtex_through_the_api_likes_five_adds_one_and_feeds_on_them(client):
    """The acceptance path: a new user, a BibTeX file naming five indexed papers and two others."""
    user_id = client.post("/users", json={"name": "Ada"}).json()["id"]
    before = state(client, user_id)
    body = (FILES / "library.bib").read_bytes()
    answer = client.post(f"/users/{user_id}/import", content=body, headers={"Content-Type": "application/x-bibtex"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["counts"] == {"doi": 1, "arxiv": 2, "title": 2, "added": 1, "unmatched": 1, "skipped": 0}
    assert report["recorded"] == 6 and report["papers_added"] == 1 and report["target"] == "like"
    entries = {entry["key"]: entry for entry in report["entries"]}
    assert {key: (entries[key]["match"], entries[key]["paper_id"]) for key in LIBRARY_BIB} == LIBRARY_BIB
    added = entries["coral2026"]["paper_id"]
    assert entries["coral2026"]["match"] == "added" and added.startswith("h")
    assert entries["unindexed"] == {"position": 7, "key": "unindexed", "title": "A Handbook Nobody Indexed", "match": "unmatched", "paper_id": None,
                                    "reason": "no DOI/arXiv id/title in the index and no abstract"}
    paper = client.get(f"/papers/{added}").json()
    assert paper["authors"] == ["José Müller", "Anaïs Østergaard"] and paper["source"] == "import:bibtex"
    imported = {entry["paper_id"] for entry in report["entries"] if entry["paper_id"]}
    likes = client.get(f"/users/{user_id}/interactions").json()["interactions"]
    assert {row["paper_id"] for row in likes} == imported and {row["kind"] for row in likes} == {"like"}
    assert client.get("/health").json()["papers"] == before[0] + 1

    feed = client.get(f"/users/{user_id}/feed", params={"k": 3}).json()["results"]
    assert feed and not imported & {item["id"] for item in feed}
    because = {reason["paper_id"] for item in feed for reason in item["reason"]["because"]}
    assert because and because <= imported

    after = state(client, user_id)
    again = client.post(f"/users/{user_id}/import", content=body, headers={"Content-Type": "application/x-bibtex"}).json()
    assert again["recorded"] == 0 and again["papers_added"] == 0 and again["counts"]["added"] == 0
    assert {e["key"]: e["paper_id"] for e in again["entries"]} == {e["key"]: e["paper_id"] for e in report["entries"]}
    assert state(client, user_id) == after  # not a paper, an interaction or a time changed


def test_broken_oversized_or_mislabelled_files_are_4xx_and_change_nothing(client):
    user_id = client.post("/users", json={"name": "Bo"}).json()["id"]
    before = state(client, user_id)
    url = f"/users/{user_id}/import"
    for params, body, status, words in (
        ({}, b"", 422, "empty"),
        ({"format": "csl-json"}, b'[{"title": "x"', 422, "not valid CSL-JSON"),
        ({"format": "bibtex"}, (FILES / "zotero.json").read_bytes(), 422, "looks like CSL-JSON"),
        ({"format": "zotero-rdf"}, b"<rdf:RDF/>", 422, "Zotero RDF is not read"),
        ({"format": "endnote"}, b"@article{x, title={y}}", 422, None),
        ({"as": "collection"}, (FILES / "library.bib").read_bytes(), 422, "name the collection"),
        ({"as": "collection", "collection": "../x"}, (FILES / "library.bib").read_bytes(), 422, "may not contain"),
        ({}, b"@comment{" + b"x" * 300_000 + b"}", 413, None),
    ):
        answer = client.post(url, params=params, content=body)
        assert answer.status_code == status, (params, answer.text)
        assert words is None or words in answer.json()["detail"]
    assert client.post("/users/999/import", content=(FILES / "library.bib").read_bytes()).status_code == 404
    assert state(client, user_id) == before


def test_csl_json_as_a_multipart_upload_fills_a_collection_once(client):
    user_id = client.post("/users", json={"name": "Cy"}).json()["id"]
    upload = {"file": ("My Library.json", (FILES / "zotero.json").read_bytes(), "application/octet-stream")}
    answer = client.post(f"/users/{user_id}/import", params={"collection": "reading group"}, files=upload)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["format"] == "csl-json" and report["target"] == "collection" and report["collection"] == "reading group"
    assert report["counts"] == {"doi": 1, "arxiv": 2, "title": 1, "added": 1, "unmatched": 1, "skipped": 1}
    assert next(e for e in report["entries"] if e["key"] == "FFFF")["paper_id"] == "10.5555/ICE.2023.7"  # its DOI as its id
    members = client.get(f"/users/{user_id}/collections/reading group").json()["papers"]
    assert sorted(members) == sorted({"2403.00006", "2402.00004", GNN.id, "2402.00003", "10.5555/ICE.2023.7"})
    assert client.get(f"/users/{user_id}/interactions").json()["interactions"] == []  # a collection, not likes
    after = state(client, user_id)
    assert client.post(f"/users/{user_id}/import", params={"collection": "reading group"}, files=upload).json()["recorded"] == 0
    assert state(client, user_id) == after
    assert client.get("/papers/doi:10.5555/ice.2023.7").json()["title"] == "Sea ice thinning in the Arctic summer"


def test_import_needs_the_users_token_when_the_server_has_keys(folder):
    with TestClient(create_app(Settings(index=folder, api_key="admin-key"))) as keyed:
        user = keyed.post("/users", json={"name": "Ada"}, headers={"X-API-Key": "admin-key"}).json()
        body = (FILES / "mendeley.ris").read_bytes()
        assert keyed.post(f"/users/{user['id']}/import", content=body).status_code == 401
        assert keyed.post(f"/users/{user['id']}/import", content=body, headers={"X-User-Token": "wrong"}).status_code == 403
        answer = keyed.post(f"/users/{user['id']}/import", content=body, params={"as": "save"}, headers={"X-User-Token": user["token"]})
        assert answer.status_code == 200 and answer.json()["format"] == "ris" and answer.json()["recorded"] == 5


def test_a_failure_after_the_papers_are_written_rolls_the_whole_import_back(folder, monkeypatch):
    with open_library(Settings(index=folder, show_progress=False)) as library:
        user = user_ops.create_user(library, "Di")
        count, held = library.store.count(), len(library)

        def fail(*_args, **_kwargs):
            raise InvalidInput("the user went away")

        monkeypatch.setattr(user_ops, "record_interactions", fail)
        with pytest.raises(InvalidInput, match="went away"):
            import_library(library, user.id, (FILES / "library.bib").read_bytes(), filename="library.bib")
        assert (library.store.count(), len(library)) == (count, held)  # the coral paper is in neither the store nor the caches
        assert user_ops.list_interactions(library, user.id) == []
        with pytest.raises(PayloadTooLarge):
            import_library(library, user.id, b"@comment{" + b"x" * library.settings.max_body_bytes + b"}")


def test_cli_imports_ris_as_saves_prints_a_summary_and_refuses_oversized_files(folder, tmp_path):
    runner = CliRunner()
    index = ["--index", str(folder)]
    user = runner.invoke(main, ["user", "add", "Eve", *index, "--json"])
    user_id = str(json.loads(user.output)["id"])
    result = runner.invoke(main, ["user", "import", user_id, str(FILES / "mendeley.ris"), "--as", "save", *index])
    assert result.exit_code == 0, result.output
    assert "ris file imported as saves: 5 new; papers added to the index: 1" in result.output
    assert "doi: 1  arxiv: 2  title: 1  added: 1  unmatched: 0  skipped: 1" in result.output
    assert "Glacier retreat measured from space" in result.output and "without its end" in result.output
    again = json.loads(runner.invoke(main, ["user", "import", user_id, str(FILES / "mendeley.ris"), "--as", "save", *index, "--json"]).output)
    assert again["recorded"] == 0 and again["papers_added"] == 0 and again["counts"]["title"] == 2  # the glacier paper is now held
    assert [e["key"] for e in again["entries"]] == ["folding", "record 2", "record 3", "record 4", "entry 5", "record 6"]  # file order

    huge = tmp_path / "huge.bib"
    with huge.open("wb") as handle:  # 50 MB without writing them: refused by its size before it is read
        handle.truncate(50_000_000)
    for args, message in (
        ([str(huge)], "huge.bib is 50,000,000 bytes; the limit is 10,000,000"),
        ([str(FILES / "zotero.json"), "--format", "ris"], "no RIS entries in the file (it looks like CSL-JSON)"),
        ([str(FILES / "library.bib"), "--as", "collection"], "name the collection"),
        ([str(tmp_path / "missing.bib")], "no such file"),
    ):
        failed = runner.invoke(main, ["user", "import", user_id, *args, *index])
        assert failed.exit_code == 1 and message in failed.output and "Traceback" not in failed.output, failed.output
    collected = runner.invoke(main, ["user", "import", user_id, str(FILES / "broken.bib"), "--collection", "galaxies", *index, "--json"])
    assert json.loads(collected.output)["counts"] == {"doi": 0, "arxiv": 2, "title": 0, "added": 0, "unmatched": 0, "skipped": 1}
    assert [e["key"] for e in json.loads(collected.output)["entries"]] == ["first", "broken", "last"]
    shown = json.loads(runner.invoke(main, ["user", "collection", "show", user_id, "galaxies", *index, "--json"]).output)
    assert sorted(shown["papers"]) == ["2402.00003", "2402.00004"]


def test_the_web_page_imports_an_uploaded_file_with_its_csrf_token(client):
    page = client.get("/feed").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    client.post("/web/start", data={"csrf": csrf, "name": "Fay", "next": "/feed"})
    page = client.get("/feed").text
    assert 'id="import-form"' in page and 'enctype="multipart/form-data"' in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # a new session's token
    upload = {"file": ("library.bib", (FILES / "library.bib").read_bytes(), "application/x-bibtex")}
    refused = client.post("/web/import", data={"csrf": "wrong", "as": "like"}, files=upload)
    assert refused.status_code == 403
    answer = client.post("/web/import", data={"csrf": csrf, "as": "like"}, files=upload)
    assert answer.status_code == 200 and 'id="import-summary"' in answer.text
    assert "6 new likes; papers added to the index: 1" in answer.text and "Reinforcement Learning for Robot-Grasping" in answer.text
    user_id = int(re.search(r'<span class="muted">#(\d+)</span>', answer.text).group(1))
    assert len(client.get(f"/users/{user_id}/interactions").json()["interactions"]) == 6
    empty = client.post("/web/import", data={"csrf": csrf, "as": "like"}, files={"file": ("empty.bib", b"", "text/plain")})
    assert empty.status_code == 422 and "the file is empty" in empty.text


def test_likes_replace_dislikes_and_an_oversized_abstract_skips_only_its_entry(folder):
    with open_library(Settings(index=folder, show_progress=False, max_abstract_chars=200)) as library:
        user = user_ops.create_user(library, "Gil")
        user_ops.record_interaction(library, user.id, "2401.00001", "dislike")
        items = [{"id": "long", "title": "A very long abstract", "abstract": "word " * 100},
                 {"id": "short", "title": "Tidal energy from ocean currents", "abstract": "Turbines on the sea floor turn tidal currents into power."},
                 {"id": "known", "title": "Protein folding with deep networks", "URL": "https://arxiv.org/abs/2401.00001v1"}]
        report = import_library(library, user.id, json.dumps(items).encode(), fmt="csl-json")
        outcome = {entry.key: (entry.match, entry.reason) for entry in report.entries}
        assert outcome["long"] == ("skipped", "abstract is 499 characters; the limit is 200")
        assert outcome["short"][0] == "added" and outcome["known"] == ("arxiv", None)
        kinds = {(row.paper_id, row.kind) for row in user_ops.list_interactions(library, user.id)}
        assert ("2401.00001", "like") in kinds and ("2401.00001", "dislike") not in kinds and len(kinds) == 2
