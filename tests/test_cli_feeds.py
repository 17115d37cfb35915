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
