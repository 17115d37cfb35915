"""Secret feed URLs with API keys on: a feed reader (feedparser) reads /feeds/{secret}.atom with no
headers; making a new URL or revoking stops the old one; the store keeps only a hash."""

from __future__ import annotations

import json
import shutil
import sqlite3
from urllib.parse import urlsplit

import bibtexparser
import feedparser
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings

ADMIN = {"X-API-Key": "admin-key"}


@pytest.fixture(scope="module")
def folder(demo_index_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feed-urls") / "index"
    shutil.copytree(demo_index_dir, folder)
    return folder


@pytest.fixture(scope="module")
def client(folder):
    with TestClient(create_app(Settings(index=folder, api_key="admin-key"))) as client:
        yield client


@pytest.fixture(scope="module")
def user(client):
    made = client.post("/users", json={"name": "Ada"}, headers=ADMIN).json()
    headers = {"X-User-Token": made["token"]}
    paper = client.get("/search", params={"q": "video understanding", "k": 1}).json()["results"][0]["id"]
    assert client.post(f"/users/{made['id']}/interactions", json={"paper_id": paper, "kind": "like"}, headers=headers).status_code == 201
    client.put(f"/users/{made['id']}/collections/video", headers=headers)
    client.post(f"/users/{made['id']}/collections/video/papers", json={"paper_id": paper}, headers=headers)
    return made["id"], headers


def _path(url: str) -> str:
    """The URL's path, to ask the test client (the URL's host is the configured or test server's)."""
    return urlsplit(url).path


def test_a_feed_reader_reads_the_secret_url_with_keys_on(client, user):
    user_id, headers = user
    assert client.get(f"/users/{user_id}/feed.atom").status_code == 401  # the reason for secret URLs
    assert client.post(f"/users/{user_id}/feed-url").status_code == 401
    urls = client.post(f"/users/{user_id}/feed-url", headers=headers).json()
    assert urls["atom"].endswith(".atom") and urls["bibtex"].endswith(".bib")
    atom = client.get(_path(urls["atom"]), params={"k": 5})
    assert atom.status_code == 200 and atom.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(atom.content)
    assert not parsed.bozo and len(parsed.entries) == 5 and "because of" in parsed.entries[0].summary
    same = client.get(f"/users/{user_id}/feed.atom", params={"k": 5}, headers=headers)
    assert [e.title for e in feedparser.parse(same.content).entries] == [e.title for e in parsed.entries]
    bib = client.get(_path(urls["bibtex"]), params={"k": 3})
    assert bib.status_code == 200 and len(bibtexparser.parse_string(bib.text).entries) == 3


def test_collection_urls_and_revoking(client, user, folder):
    user_id, headers = user
    first = client.post(f"/users/{user_id}/collections/video/feed-url", headers=headers).json()["atom"]
    assert not feedparser.parse(client.get(_path(first)).content).bozo
    second = client.post(f"/users/{user_id}/collections/video/feed-url", headers=ADMIN).json()["atom"]
    assert client.get(_path(first)).status_code == 404 and client.get(_path(second)).status_code == 200
    assert client.post(f"/users/{user_id}/collections/nope/feed-url", headers=headers).status_code == 404
    assert client.delete(f"/users/{user_id}/collections/video/feed-url", headers=headers).json() == {"revoked": True}
    assert client.get(_path(second)).status_code == 404
    assert client.delete(f"/users/{user_id}/collections/video/feed-url", headers=headers).status_code == 404
    assert client.get("/feeds/not-a-secret.atom").json() == {"detail": "no feed at this address (it may have been revoked)"}
    secret = second.rsplit("/", 1)[1].removesuffix(".atom")
    with sqlite3.connect(folder / "papers.sqlite") as conn:
        stored = [row for row in conn.execute("SELECT * FROM feed_secrets")]
    assert stored and not any(secret in str(value) for row in stored for value in row)


def test_cli_makes_and_revokes_feed_urls(client, user, folder):
    user_id, _ = user
    runner = CliRunner()
    made = runner.invoke(main, ["user", "feed-url", str(user_id), "--index", str(folder), "--json"],
                         env={"PAPERLENS_PUBLIC_URL": "https://papers.example.org"})
    assert made.exit_code == 0, made.output
    urls = json.loads(made.output)
    assert urls["atom"].startswith("https://papers.example.org/feeds/")
    assert not feedparser.parse(client.get(_path(urls["atom"])).content).bozo
    revoked = runner.invoke(main, ["user", "feed-url", str(user_id), "--revoke", "--index", str(folder)])
    assert revoked.exit_code == 0 and client.get(_path(urls["atom"])).status_code == 404
    again = runner.invoke(main, ["user", "feed-url", str(user_id), "--revoke", "--index", str(folder)])
    assert again.exit_code == 1 and "no feed at this address" in again.output
