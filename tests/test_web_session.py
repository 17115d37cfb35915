"""The web page's session and forms through HTTP (web/session.py, web/__init__.py): a signed cookie,
CSRF tokens on every form, sign-in with a user's token when the server has keys."""

import logging
import re
import shutil
import stat

import pytest
from fastapi.testclient import TestClient

from paperlens import users as user_ops
from paperlens.api import create_app
from paperlens.config import Settings
from paperlens.web.session import COOKIE, SECRET_FILE

PAPER = "h10e3cad7e9bc49cb"


@pytest.fixture()
def folder(demo_index_dir, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(demo_index_dir, copy)
    return copy


@pytest.fixture()
def open_client(folder):
    with TestClient(create_app(Settings(index=folder))) as client:
        yield client


@pytest.fixture()
def keyed_client(folder):
    with TestClient(create_app(Settings(index=folder, api_key="admin-key"))) as client:
        yield client


def csrf_of(client, path="/sign-in") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def page_with(client, cookie: str, name: str = COOKIE, path: str = "/feed") -> str:
    client.cookies.clear()
    client.cookies.set(name, cookie)
    return client.get(path).text


def post(client, path, data, json=False, csrf=True):
    fields = {"csrf": csrf_of(client), **data} if csrf else data
    return client.post(path, data=fields, follow_redirects=False, headers={"Accept": "application/json"} if json else {})


def test_open_mode_starts_a_user_by_name_in_a_signed_http_only_session(open_client):
    page = open_client.get("/")
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    started = post(open_client, "/web/start", {"name": "Ada", "next": "/feed"})
    assert started.status_code == 303 and started.headers["location"] == "/feed"
    feed = open_client.get("/feed")
    assert 'id="user-name">Ada<' in feed.text and "popular in this index" in feed.text
    marked = post(open_client, "/web/mark", {"paper_id": PAPER, "kind": "like"}, json=True)
    assert marked.status_code == 200 and marked.json() == {"paper_id": PAPER, "kinds": ["like"]}
    assert post(open_client, "/web/mark", {"paper_id": PAPER, "kind": "dislike"}, json=True).json()["kinds"] == ["dislike"]
    assert post(open_client, "/web/mark", {"paper_id": PAPER, "kind": "dislike"}, json=True).json()["kinds"] == []
    assert post(open_client, "/web/mark", {"paper_id": PAPER, "kind": "like"}).status_code == 303  # without JavaScript
    assert "popular in this index" not in open_client.get("/feed").text


def test_a_bare_id_cookie_or_a_tampered_session_is_ignored(open_client):
    user = user_ops.create_user(open_client.app.state.library, "Ada")
    assert 'id="user-name"' not in page_with(open_client, str(user.id), "paperlens_user")
    post(open_client, "/web/sign-in", {"user_id": str(user.id)})
    signed = open_client.cookies[COOKIE]
    assert 'id="user-name">Ada<' in open_client.get("/feed").text
    tampered = signed[:5] + ("A" if signed[5] != "A" else "B") + signed[6:]  # a byte of the signed data
    for bad in (tampered, signed[:-2] + ("AA" if not signed.endswith("AA") else "BB"), "not-a-session"):
        assert 'id="user-name"' not in page_with(open_client, bad)
    other = TestClient(create_app(Settings(index=open_client.app.state.library.folder, session_secret="another-secret-of-enough-length")))
    with other:
        assert 'id="user-name"' not in page_with(other, signed)


def test_a_form_without_its_csrf_token_is_refused(open_client):
    post(open_client, "/web/start", {"name": "Ada"})
    for fields in ({}, {"csrf": "wrong"}):
        refused = open_client.post("/web/mark", data={"paper_id": PAPER, "kind": "like", **fields}, follow_redirects=False)
        assert refused.status_code == 403 and "CSRF" in refused.text and refused.headers["content-type"].startswith("text/html")
        assert 'name="next" value="/"' in refused.text and "/web/mark" not in refused.text.split("<main>")[0]  # its forms return to a page
    as_json = open_client.post("/web/sign-out", data={}, headers={"Accept": "application/json"})
    assert as_json.status_code == 403 and "CSRF" in as_json.json()["detail"]
    assert 'id="user-name">Ada<' in open_client.get("/").text  # still signed in
    assert open_client.get(f"/users/{1}/interactions").json()["interactions"] == []


def test_with_keys_the_page_signs_in_with_a_token_and_writes_through_the_session(keyed_client):
    library = keyed_client.app.state.library
    user = user_ops.create_user(library, "Grace")
    page = keyed_client.get("/")
    assert 'id="sign-in-link"' in page.text and 'id="user-form"' not in page.text
    refused = post(keyed_client, "/web/start", {"name": "Mallory"})
    assert refused.status_code == 403 and "paperlens user add" in refused.text
    wrong = post(keyed_client, "/web/sign-in", {"token": "not-the-token"})
    assert wrong.status_code == 403 and "that token does not belong to any user" in wrong.text
    assert post(keyed_client, "/web/sign-in", {"user_id": str(user.id)}).status_code == 403  # ids only in open mode
    signed = post(keyed_client, "/web/sign-in", {"token": user.token, "next": "/feed"})
    assert signed.status_code == 303 and signed.headers["location"] == "/feed"
    assert 'id="user-name">Grace<' in keyed_client.get("/feed").text
    assert post(keyed_client, "/web/mark", {"paper_id": PAPER, "kind": "save"}, json=True).json()["kinds"] == ["save"]
    assert post(keyed_client, "/web/collections/add", {"name": "reading", "paper_id": PAPER}).status_code == 303
    assert [(c.name, c.paper_ids) for c in user_ops.list_collections(library, user.id)] == [("reading", [PAPER])]
    shelf = keyed_client.get("/collections").text
    assert "reading" in shelf and f"/paper/{PAPER}" in shelf
    assert 'action="/web/collections/remove"' in keyed_client.get(f"/paper/{PAPER}").text
    assert post(keyed_client, "/web/collections/remove", {"name": "reading", "paper_id": PAPER}).status_code == 303
    assert post(keyed_client, "/web/collections/delete", {"name": "reading"}).status_code == 303
    assert user_ops.list_collections(library, user.id) == []
    assert post(keyed_client, "/web/sign-out", {}).status_code == 303
    assert 'id="user-name"' not in keyed_client.get("/feed").text
    refused = post(keyed_client, "/web/mark", {"paper_id": PAPER, "kind": "like"}, json=True)
    assert refused.status_code == 401 and refused.json()["detail"] == "sign in first"


def test_a_new_token_ends_the_sessions_made_with_the_old_one(keyed_client):
    from paperlens.security import issue_user_token

    library = keyed_client.app.state.library
    user = user_ops.create_user(library, "Grace")
    post(keyed_client, "/web/sign-in", {"token": user.token})
    assert 'id="user-name">Grace<' in keyed_client.get("/").text
    with library.store.transaction():
        issue_user_token(library.store.users, user.id)
    assert 'id="user-name"' not in keyed_client.get("/").text


def test_an_open_mode_session_by_id_counts_for_nothing_once_keys_are_on(folder):
    with TestClient(create_app(Settings(index=folder))) as client:
        user = user_ops.create_user(client.app.state.library, "Ada")
        post(client, "/web/sign-in", {"user_id": str(user.id)})
        by_id = client.cookies[COOKIE]
        post(client, "/web/start", {"name": "Bob"})
        by_token = client.cookies[COOKIE]
    with TestClient(create_app(Settings(index=folder, api_key="admin-key"))) as keyed:
        assert 'id="user-name"' not in page_with(keyed, by_id)
        assert 'id="user-name">Bob<' in page_with(keyed, by_token)  # it was made with Bob's token


def test_the_secret_is_kept_in_the_index_folder_so_sessions_survive_a_restart(folder, caplog):
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(Settings(index=folder))) as client:
        post(client, "/web/start", {"name": "Ada"})
        session = client.cookies[COOKIE]
    secret = folder / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with TestClient(create_app(Settings(index=folder))) as restarted:
        assert 'id="user-name">Ada<' in page_with(restarted, session)
    assert secret.read_text().strip() not in caplog.text
    configured = "a-configured-secret-of-enough-length"
    settings = Settings(index=folder, session_secret=configured)
    assert configured not in repr(settings) and configured not in str(settings.model_dump())


def test_the_cookie_is_secure_over_https(folder):
    with TestClient(create_app(Settings(index=folder)), base_url="https://testserver") as client:
        assert "Secure" in client.get("/").headers["set-cookie"]


def test_a_form_sends_the_browser_back_to_this_server_only(open_client):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil", "feed"):
        answer = post(open_client, "/web/sign-out", {"next": target})
        assert answer.status_code == 303 and answer.headers["location"] == "/", target
