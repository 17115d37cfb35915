"""User, feed, export and digest commands through click's runner; the digest through a real SMTP server."""

import json
import socket
import xml.etree.ElementTree as ET

import bibtexparser
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from conftest import topic_papers, write_jsonl
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings


@pytest.fixture()
def index(tmp_path):
    papers = write_jsonl(tmp_path / "papers.jsonl", [p.to_dict() for p in topic_papers()])
    folder = tmp_path / "ix"
    assert CliRunner().invoke(main, ["ingest", str(papers), "--index", str(folder), "--quiet"]).exit_code == 0
    return folder


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def test_user_add_like_dislike_feed(index):
    added = run("user", "add", "Ada", "--index", index).output.splitlines()
    assert added[0] == "user 1: Ada" and added[1].startswith("token: ") and len(added[1]) > 40
    assert run("user", "like", 1, "2401.00001", "--index", index).exit_code == 0
    assert run("user", "like", 1, "2402.00003", "--index", index).exit_code == 0
    assert run("user", "dislike", 1, "2403.00005", "--index", index).exit_code == 0
    result = run("user", "feed", 1, "-k", 3, "--index", index, "--json")
    feed = json.loads(result.output)["results"]
    assert {r["id"] for r in feed[:2]} == {"2401.00002", "2402.00004"} and feed[-1]["id"] == "2403.00006"
    assert all(r["reason"]["because"] for r in feed)
    text = run("user", "feed", 1, "-k", 2, "--index", index).output
    assert "because of “Protein folding with deep networks”" in text or "because of “Galaxy rotation" in text


def test_exports(index, tmp_path):
    run("user", "add", "Ada", "--index", index)
    run("user", "like", 1, "2401.00001", "--index", index)
    atom = run("user", "export", 1, "--format", "atom", "--index", index)
    assert atom.exit_code == 0 and ET.fromstring(atom.output.encode()).tag.endswith("feed")
    out = tmp_path / "feed.bib"
    assert run("user", "export", 1, "--format", "bibtex", "-k", 3, "-o", out, "--index", index).exit_code == 0
    entries = bibtexparser.parse_string(out.read_text()).entries
    assert len(entries) == 3 and entries[0].fields_dict["eprint"].value == "2401.00002"


def test_a_user_added_by_the_cli_has_a_token_that_the_api_accepts(index):
    """With API keys on, 'user add' makes the user and their token together, and prints the token once."""
    added = run("user", "add", "Ada", "--index", index, "--json", env={"PAPERLENS_API_KEY": "admin-key"})
    user = json.loads(added.output)
    assert added.exit_code == 0 and user["id"] == 1 and user["token"]
    assert run("user", "like", 1, "2401.00001", "--index", index).exit_code == 0
    with TestClient(create_app(Settings(index=index, api_key="admin-key"))) as client:
        assert client.get("/users/1/feed").status_code == 401
        assert client.get("/users/1/feed", headers={"X-User-Token": "wrong"}).status_code == 403
        feed = client.get("/users/1/feed", params={"k": 2}, headers={"X-User-Token": user["token"]})
        assert feed.status_code == 200 and len(feed.json()["results"]) == 2
        assert client.get("/users/1", headers={"X-User-Token": user["token"]}).json()["token"] is None


@pytest.mark.parametrize("args, message", [
    (("user", "like", 7, "2401.00001"), "no user with id 7"),
    (("user", "like", 1, "no-such-paper"), "no paper with id 'no-such-paper'"),
    (("user", "feed", "ada"), "numeric id"),
    (("user", "export", 9, "--format", "atom"), "no user with id 9"),
    (("digest", 9), "no user with id 9"),
])
def test_errors_are_a_message_and_exit_1(index, args, message):
    run("user", "add", "Ada", "--index", index)
    result = run(*args, "--index", index)
    assert result.exit_code == 1 and message in result.output


def test_digest_writes_html_without_smtp(index, tmp_path):
    run("user", "add", "Ada", "--index", index)
    run("user", "like", 1, "2403.00005", "--index", index)
    out = tmp_path / "digest.html"
    result = run("digest", 1, "--to", "ada@example.org", "-o", out, "--index", index, env={"PAPERLENS_SMTP_HOST": ""})
    assert result.exit_code == 0 and "nothing was sent" in result.output
    html = out.read_text()
    assert "Papers for Ada" in html and "Sim-to-real transfer" in html and "because of" in html
    assert result.output.count("PAPERLENS_PUBLIC_URL is not set") == 1 and 'href="http://127.0.0.1:8000/feed"' in html
    linked = run("digest", 1, "-o", out, "--index", index, env={"PAPERLENS_SMTP_HOST": "", "PAPERLENS_PUBLIC_URL": "https://papers.example.org/"})
    assert "PAPERLENS_PUBLIC_URL" not in linked.output and 'href="https://papers.example.org/feed"' in out.read_text()
    as_json = run("digest", 1, "-o", out, "--index", index, "--json", env={"PAPERLENS_SMTP_HOST": ""})
    assert json.loads(as_json.stdout) == {"wrote": str(out), "papers": json.loads(as_json.stdout)["papers"], "sent": None}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_digest_is_sent_over_smtp(index):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    port = _free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        run("user", "add", "Ada", "--index", index)
        run("user", "like", 1, "2402.00003", "--index", index)
        env = {"PAPERLENS_SMTP_HOST": "127.0.0.1", "PAPERLENS_SMTP_PORT": str(port), "PAPERLENS_SMTP_FROM": "feeds@paperlens.test"}
        result = run("digest", 1, "--to", "ada@example.org", "--index", index, env=env)
    finally:
        controller.stop()
    assert result.exit_code == 0 and "sent" in result.output, result.output
    assert len(received) == 1
    message = received[0]
    assert message["To"] == "ada@example.org" and message["From"] == "feeds@paperlens.test"
    html = next(part for part in message.walk() if part.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "Dark matter halos in dwarf galaxies" in html


def test_digest_reports_an_unreachable_smtp_server(index):
    run("user", "add", "Ada", "--index", index)
    env = {"PAPERLENS_SMTP_HOST": "127.0.0.1", "PAPERLENS_SMTP_PORT": str(_free_port())}
    result = run("digest", 1, "--to", "ada@example.org", "--index", index, env=env)
    assert result.exit_code == 1 and "could not send the digest" in result.output


def assert_one_line_error(result, message):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1 and message in result.output, result.output


def ids(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [r["id"] for r in json.loads(result.output)["results"]]


def test_user_interests_show_set_and_clear(index):
    run("user", "add", "Ada", "--index", index)
    assert run("user", "interests", 1, "--index", index).output == "user 1 has no interests\n"
    result = run("user", "interests", 1, "dark matter in galaxies", "robot arms", "--index", index)
    assert result.exit_code == 0 and result.output.splitlines() == ["dark matter in galaxies", "robot arms"]
    shown = run("user", "interests", 1, "--index", index, "--json")
    assert json.loads(shown.output) == {"interests": ["dark matter in galaxies", "robot arms"]}
    feed = ids(run("user", "feed", 1, "-k", 4, "--index", index, "--json"))
    assert set(feed) == {"2402.00003", "2402.00004", "2403.00005", "2403.00006"}
    assert run("user", "interests", 1, "--clear", "--index", index).output == "user 1 has no interests\n"
    assert json.loads(run("user", "interests", 1, "--json", "--index", index).output) == {"interests": []}


@pytest.mark.parametrize("args, message", [
    (("user", "interests", 1, *["x"] * 21), "at most 20 interests"),
    (("user", "interests", 1, " "), "interest is empty"),
    (("user", "interests", 1, "x" * 501), "interest"),
    (("user", "interests", 1, "x", "--clear"), "not both"),
    (("user", "interests", 9), "no user with id 9"),
    (("user", "interests", "ada"), "numeric id"),
])
def test_user_interests_bad_input(index, args, message):
    run("user", "add", "Ada", "--index", index)
    assert_one_line_error(run(*args, "--index", index), message)


def test_user_collections_from_create_to_delete(index, tmp_path):
    run("user", "add", "Ada", "--index", index)
    assert run("user", "collection", "list", 1, "--index", index).output == "user 1 has no collections\n"
    assert run("user", "collection", "create", 1, "space", "--index", index).output == "created space\n"
    assert run("user", "collection", "create", 1, "space", "--index", index).output == "already there: space\n"
    for paper in ("2402.00003", "2401.00001"):
        assert run("user", "collection", "add", 1, "space", paper, "--index", index).exit_code == 0
    assert run("user", "collection", "remove", 1, "space", "2401.00001", "--index", index).exit_code == 0
    shown = json.loads(run("user", "collection", "show", 1, "space", "--index", index, "--json").output)
    assert shown["name"] == "space" and shown["papers"] == ["2402.00003"]
    text = run("user", "collection", "show", 1, "space", "--index", index).output
    assert "2402.00003  Galaxy rotation curves and dark matter" in text
    listed = json.loads(run("user", "collection", "list", 1, "--index", index, "--json").output)
    assert [(c["name"], c["papers"]) for c in listed["collections"]] == [("space", ["2402.00003"])]

    feed = run("user", "collection", "feed", 1, "space", "-k", 2, "--index", index)
    assert feed.output.startswith("  1. Dark matter halos in dwarf galaxies [2402.00004]") and "because of “Galaxy rotation" in feed.output
    robots = ids(run("user", "collection", "feed", 1, "space", "--category", "cs.RO", "--index", index, "--json"))
    assert set(robots) == {"2403.00005", "2403.00006"}
    out = tmp_path / "space.bib"
    assert run("user", "collection", "feed", 1, "space", "-k", 1, "--format", "bibtex", "-o", out, "--index", index).exit_code == 0
    assert [e.fields_dict["eprint"].value for e in bibtexparser.parse_string(out.read_text()).entries] == ["2402.00004"]
    atom = run("user", "collection", "feed", 1, "space", "-k", 1, "--format", "atom", "--index", index)
    assert ET.fromstring(atom.output.encode()).find("{http://www.w3.org/2005/Atom}title").text == "paperlens: more like the collection space"

    assert run("user", "collection", "delete", 1, "space", "--index", index).output == "deleted space\n"
    assert_one_line_error(run("user", "collection", "show", 1, "space", "--index", index), "no collection named 'space'")


@pytest.mark.parametrize("args, message", [
    (("user", "collection", "add", 1, "missing", "2401.00001"), "create it with: paperlens user collection create 1 missing"),
    (("user", "collection", "add", 1, "c", "no-such-paper"), "no paper with id 'no-such-paper'"),
    (("user", "collection", "remove", 1, "c", "2401.00001"), "no paper with id '2401.00001'"),
    (("user", "collection", "remove", 1, "c", "../x"), "invalid paper id"),
    (("user", "collection", "create", 1, "a/b"), "collection name"),
    (("user", "collection", "create", 1, "x" * 101), "collection name"),
    (("user", "collection", "delete", 1, "missing"), "no collection named 'missing'"),
    (("user", "collection", "feed", 1, "missing"), "no collection named 'missing'"),
    (("user", "collection", "feed", 1, "c", "--since", "yesterday"), "YYYY-MM-DD"),
    (("user", "collection", "list", 9), "no user with id 9"),
])
def test_user_collection_bad_input(index, args, message):
    run("user", "add", "Ada", "--index", index)
    run("user", "collection", "create", 1, "c", "--index", index)
    assert_one_line_error(run(*args, "--index", index), message)


def test_feed_filters_and_mode_match_the_api(index):
    run("user", "add", "Ada", "--index", index)
    run("user", "like", 1, "2401.00001", "--index", index)
    run("user", "collection", "create", 1, "c", "--index", index)
    run("user", "collection", "add", 1, "c", "2403.00005", "--index", index)
    cases = [{"category": ["astro-ph"]}, {"since": "2025-01-01"}, {"until": "2023-12-31"}, {"min_popularity": 10.0},
             {"mode": "bm25"}, {"mode": "dense", "category": ["cs", "q-bio"]}]

    def cli_args(params):
        args = []
        for key, value in params.items():
            for item in value if isinstance(value, list) else [value]:
                args += [f"--{key.replace('_', '-')}", item]
        return args

    cli = [ids(run("user", "feed", 1, "-k", 5, *cli_args(p), "--index", index, "--json")) for p in cases]
    cli_collection = [ids(run("user", "collection", "feed", 1, "c", "-k", 5, *cli_args(p), "--index", index, "--json")) for p in cases]
    cli_bib = run("user", "export", 1, "--format", "bibtex", "-k", 3, "--category", "cs", "--mode", "dense", "--index", index).output
    cli_atom = run("user", "export", 1, "--format", "atom", "-k", 3, "--since", "2024-01-01", "--index", index).output
    assert cli[0] and all(i.startswith("2402") for i in cli[0]) and set(cli[3]) == {"2402.00003", "2403.00005"}
    # the API links to the address it was asked at; the CLI, without PAPERLENS_PUBLIC_URL, to serve's
    with TestClient(create_app(Settings(index=index)), base_url="http://127.0.0.1:8000") as client:
        for params, feed, collection in zip(cases, cli, cli_collection):
            assert feed == [r["id"] for r in client.get("/users/1/feed", params={"k": 5, **params}).json()["results"]], params
            api = client.get("/users/1/collections/c/feed", params={"k": 5, **params}).json()["results"]
            assert collection == [r["id"] for r in api], params
        assert cli_bib.rstrip("\n") == client.get("/users/1/feed.bib", params={"k": 3, "category": "cs", "mode": "dense"}).text.rstrip("\n")
        api_atom = ET.fromstring(client.get("/users/1/feed.atom", params={"k": 3, "since": "2024-01-01"}).content)
    cli_root = ET.fromstring(cli_atom.encode())
    atom = "{http://www.w3.org/2005/Atom}"
    assert cli_root.find(f"{atom}title").text == api_atom.find(f"{atom}title").text == "paperlens feed of Ada"
    assert [e.find(f"{atom}id").text for e in cli_root.iter(f"{atom}entry")] == [e.find(f"{atom}id").text for e in api_atom.iter(f"{atom}entry")]
    assert cli_root.find(f"{atom}id").text == "http://127.0.0.1:8000/users/1/feed.atom?since=2024-01-01"


@pytest.mark.parametrize("args, message", [
    (("user", "feed", 1, "--since", "yesterday"), "YYYY-MM-DD"),
    (("user", "feed", 1, "--since", "2025", "--until", "2024"), "is after until"),
    (("user", "feed", 1, "-k", 0), "k must be between 1 and"),
    (("user", "export", 1, "--format", "atom", "-k", 100000), "k must be between 1 and"),
    (("user", "export", 1, "--format", "bibtex", "--until", "soon"), "YYYY-MM-DD"),
    (("digest", 1, "--category", "cs", "--since", "whenever"), "YYYY-MM-DD"),
    (("digest", 1, "-k", -1), "k must be between 1 and"),
])
def test_feed_options_bad_input(index, args, message):
    run("user", "add", "Ada", "--index", index)
    assert_one_line_error(run(*args, "--index", index), message)


def test_digest_takes_the_feed_filters(index, tmp_path):
    run("user", "add", "Ada", "--index", index)
    run("user", "like", 1, "2403.00005", "--index", index)
    out = tmp_path / "digest.html"
    assert run("digest", 1, "--category", "astro-ph", "-k", 2, "-o", out, "--index", index).exit_code == 0
    html = out.read_text()
    assert "Galaxy rotation curves" in html and "Sim-to-real" not in html and "Protein" not in html


def test_user_list_shows_every_user(index):
    assert "no users" in run("user", "list", "--index", index).output
    run("user", "add", "Ada", "--index", index)
    run("user", "add", "Bo", "--index", index)
    run("user", "like", 2, "2403.00005", "--index", index)
    listed = run("user", "list", "--index", index)
    assert listed.exit_code == 0 and "Ada" in listed.output and "Bo  (1 interactions" in listed.output
    users = json.loads(run("user", "list", "--index", index, "--json").output)["users"]
    assert [(u["id"], u["name"], u["interactions"]) for u in users] == [(1, "Ada", 0), (2, "Bo", 1)]
