"""The CLI through click's runner, on real index folders."""

import json
import socket
import sys

import pytest
from click.testing import CliRunner

from conftest import topic_papers, write_jsonl
from paperlens.cli import main
from serverproc import free_port


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.fixture()
def papers_file(tmp_path):
    return write_jsonl(tmp_path / "papers.jsonl", [p.to_dict() for p in topic_papers()] + ["{broken"])


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def test_ingest_reports_skipped_lines_and_is_idempotent(runner, papers_file, tmp_path):
    index = tmp_path / "ix"
    result = run(runner, "ingest", papers_file, "--index", index, "--quiet")
    assert result.exit_code == 0, result.output
    assert "6 added" in result.output and "line 7" in result.output
    again = json.loads(run(runner, "ingest", papers_file, "--index", index, "--json").output.strip().splitlines()[-1])
    assert (again["added"], again["unchanged"], again["total"]) == (0, 6, 6)
    assert again["files"][0]["skipped"][0]["line"] == 7


def test_search_similar_recommend_delete_info(runner, papers_file, tmp_path):
    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    hits = json.loads(run(runner, "search", "protein structure", "-k", "2", "--index", index, "--json").output)["results"]
    assert {h["id"] for h in hits} == {"2401.00001", "2401.00002"}
    table = run(runner, "search", "robot grasping", "-k", "1", "--index", index)
    assert table.exit_code == 0 and "2403.00005" in table.output
    similar = json.loads(run(runner, "similar", "2401.00001", "-k", "1", "--index", index, "--json").output)["results"]
    assert similar[0]["id"] == "2401.00002"
    pasted = json.loads(run(runner, "similar", "--text", "dark matter in galaxies", "-k", "1", "--index", index, "--json").output)
    assert pasted["results"][0]["id"].startswith("2402")
    rec = json.loads(run(runner, "recommend", "--like", "2403.00005", "--dislike", "2401.00001", "-k", "1", "--index", index, "--json").output)
    assert rec["results"][0]["id"] == "2403.00006"
    assert run(runner, "delete", "2403.00006", "--index", index).exit_code == 0
    info = json.loads(run(runner, "info", "--index", index, "--json").output)
    assert info["papers"] == 5 and info["layout"] == "flat"


def test_errors_are_messages_not_tracebacks(runner, papers_file, tmp_path):
    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    cases = [
        ("search", "", "--index", index),
        ("search", "x", "-k", "0", "--index", index),
        ("similar", "nope", "--index", index),
        ("similar", "--index", index),
        ("recommend", "--like", "nope", "--index", index),
        ("delete", "nope", "--index", index),
        ("info", "--index", tmp_path / "missing"),
        ("ingest", tmp_path / "missing.jsonl", "--index", index),
        ("search", "x", "--since", "someday", "--index", index),
    ]
    for args in cases:
        result = run(runner, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "error:" in result.output and "Traceback" not in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{broken\n")
    result = run(runner, "ingest", empty, "--index", index)
    assert result.exit_code == 1 and "nothing could be read" in result.output
    assert json.loads(run(runner, "info", "--index", index, "--json").output)["papers"] == 6


def test_demo_corpus_ingests(runner, tmp_path):
    result = run(runner, "ingest", "--demo", "--index", tmp_path / "demo", "--quiet")
    assert result.exit_code == 0 and "53 added" in result.output


def test_a_setting_out_of_range_is_a_message(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLENS_TITLE_WEIGHT", "0.5")
    result = runner.invoke(main, ["info", "--index", str(tmp_path / "none")])
    assert result.exit_code == 1 and "PAPERLENS_TITLE_WEIGHT" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_check_rebuilds_a_damaged_or_missing_manifest_from_the_store(runner, papers_file, tmp_path, damage):
    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    manifest = index / "manifest.json"
    if damage == "missing":
        manifest.unlink()
    else:
        manifest.write_text('{"model": "sentence-transf')
        broken = run(runner, "search", "protein", "--index", index)
        assert broken.exit_code == 1 and "unreadable" in broken.output and "paperlens check" in broken.output
    checked = run(runner, "check", "--index", index)
    assert checked.exit_code == 0, checked.output
    assert "recovered from the store" in checked.output and checked.output.strip().endswith("ok")
    assert json.loads(manifest.read_text())["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    hits = json.loads(run(runner, "search", "protein structure", "-k", "2", "--index", index, "--json").output)["results"]
    assert {h["id"] for h in hits} == {"2401.00001", "2401.00002"}
    again = run(runner, "ingest", papers_file, "--index", index, "--quiet")
    assert again.exit_code == 0 and "6 unchanged" in again.output


def test_an_hnsw_graph_built_with_older_parameters_is_advice_and_rebuilt_only_when_asked(runner, papers_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLENS_LAYOUT", "hnsw")
    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    manifest = index / "manifest.json"
    assert json.loads(manifest.read_text())["index_params"]["ef_construction"] == 200
    assert "advice" not in run(runner, "check", "--index", index).output
    # As an index folder written before graphs were built with efConstruction 200 records it.
    old = json.loads(manifest.read_text())
    old["index_params"]["ef_construction"] = 80
    manifest.write_text(json.dumps(old))
    before = json.loads(run(runner, "search", "protein structure", "-k", "3", "--index", index, "--json").output)["results"]
    info = run(runner, "info", "--index", index)
    assert "ef_construction=80" in info.output and "efConstruction 80" in info.output and "--rebuild-index" in info.output
    checked = run(runner, "check", "--index", index)
    assert checked.exit_code == 0 and "advice: the HNSW graph was built with efConstruction 80" in checked.output
    assert json.loads(manifest.read_text())["index_params"]["ef_construction"] == 80  # advice only: nothing rebuilt
    rebuilt = run(runner, "check", "--rebuild-index", "--index", index)
    assert rebuilt.exit_code == 0 and "rebuilt vectors.faiss from the stored vectors" in rebuilt.output, rebuilt.output
    assert json.loads(manifest.read_text())["index_params"]["ef_construction"] == 200
    assert json.loads(run(runner, "info", "--index", index, "--json").output)["advice"] is None
    after = json.loads(run(runner, "search", "protein structure", "-k", "3", "--index", index, "--json").output)["results"]
    assert [h["id"] for h in after] == [h["id"] for h in before]


def test_serve_refuses_a_folder_that_is_not_an_index(runner, tmp_path):
    typo = tmp_path / "indexes" / "demoo"
    result = run(runner, "serve", "--index", typo, "--port", free_port())
    assert result.exit_code == 1 and f"no index at {typo}" in result.output and "--create" in result.output
    assert not typo.exists()


def test_serve_on_a_busy_port_is_one_line(runner, papers_file, tmp_path):
    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(runner, "serve", "--index", index, "--port", port, "--create")
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"


def test_serve_sets_how_long_a_thread_keeps_the_gil(runner, papers_file, tmp_path, monkeypatch):
    """Settings.gil_switch_ms reaches the interpreter before the server runs (uvicorn's run is
    replaced here, so nothing listens)."""
    import uvicorn

    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    seen = []

    def record(self, sockets=None):
        seen.append(sys.getswitchinterval())
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", record)
    monkeypatch.setenv("PAPERLENS_GIL_SWITCH_MS", "0.25")
    before = sys.getswitchinterval()
    try:
        result = run(runner, "serve", "--index", index, "--port", free_port())
    finally:
        sys.setswitchinterval(before)
    assert result.exit_code == 0, result.output
    assert seen == [pytest.approx(0.00025)]


def test_ingest_names_the_encoding_of_a_file_that_is_not_utf8(runner, tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps({"title": "Café résumé of naïve methods", "abstract": "Naïve ideas."}, ensure_ascii=False)
                     .encode("latin-1") + b"\n")
    result = run(runner, "ingest", path, "--index", tmp_path / "ix", "--quiet")
    assert result.exit_code == 0 and "not UTF-8: decoded as cp1252" in result.output
    hits = json.loads(run(runner, "search", "naïve methods", "--index", tmp_path / "ix", "--json").output)["results"]
    assert hits[0]["title"] == "Café résumé of naïve methods"


def test_ingest_of_a_csv_without_a_usable_column_is_one_error(runner, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("heading,body_text\n" + "x,y\n" * 5)
    result = run(runner, "ingest", path, "--index", tmp_path / "ix")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "no title or abstract column (found: heading, body_text)" in result.output


def test_the_table_shows_authors_as_people_read_them(runner, papers_file, tmp_path):
    index = tmp_path / "ix"
    run(runner, "ingest", papers_file, "--index", index, "--quiet")
    table = run(runner, "search", "robot grasping", "-k", "1", "--index", index)
    assert "A. Author and B." in table.output  # the column may cut it short
    hit = json.loads(run(runner, "search", "robot grasping", "-k", "1", "--index", index, "--json").output)["results"][0]
    assert (hit["authors"], hit["author_count"]) == (["A. Author", "B. Author"], 2)


def test_every_command_resolves_ids_as_the_api_does(runner, tmp_path):
    """arXiv ids with a version or an 'arXiv:' prefix, and DOIs in any spelling, name the stored paper."""
    from fastapi.testclient import TestClient

    from paperlens.api import create_app
    from paperlens.config import Settings

    records = [{**p.to_dict(), "doi": f"10.1000/Topic.{i}"} for i, p in enumerate(topic_papers())]
    index = tmp_path / "ix"
    assert run(runner, "ingest", write_jsonl(tmp_path / "p.jsonl", records), "--index", index, "--quiet").exit_code == 0
    for given in ("2401.00001v2", "arXiv:2401.00001", "10.1000/topic.0", "doi:10.1000/TOPIC.0", "https://doi.org/10.1000/topic.0"):
        result = run(runner, "similar", given, "-k", "1", "--index", index, "--json")
        assert result.exit_code == 0, (given, result.output)
        assert json.loads(result.output)["results"][0]["id"] == "2401.00002"
    rec = json.loads(run(runner, "recommend", "--like", "arXiv:2403.00005v3", "--like", "10.1000/topic.5", "-k", "1",
                         "--index", index, "--json").output)
    assert rec["results"] and {"2403.00005", "2403.00006"}.isdisjoint(hit["id"] for hit in rec["results"])
    assert run(runner, "user", "add", "Ada", "--index", index).exit_code == 0
    liked = json.loads(run(runner, "user", "like", "1", "arXiv:2402.00003v1", "--index", index, "--json").output)
    assert liked["paper_id"] == "2402.00003"
    with TestClient(create_app(Settings(index=index))) as client:
        assert client.get("/papers/doi:10.1000/topic.1").json()["id"] == "2401.00002"
        assert client.post("/users/1/interactions", json={"paper_id": "10.1000/topic.3", "kind": "save"}).json()["paper_id"] == "2402.00004"
    deleted = run(runner, "delete", "arXiv:2402.00004v2", "nope", "--index", index, "--json")
    assert deleted.exit_code == 1 and json.loads(deleted.output) == {"deleted": ["2402.00004"], "missing": ["nope"]}
