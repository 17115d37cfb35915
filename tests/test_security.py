"""Access and bounds through the front door: API keys on writes, user tokens, body size, ids, names."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi import Depends
from fastapi.testclient import TestClient

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.errors import InvalidInput
from paperlens.limits import check_name, folder_under
from paperlens.security import issue_user_token, key_matches, require_user


@pytest.fixture()
def keyed(tmp_path):
    settings = Settings(index=tmp_path / "keyed", api_key="first-key, second-key", max_body_bytes=200_000)
    with TestClient(create_app(settings)) as client:
        yield client


def test_writes_need_one_of_the_keys(keyed):
    paper = topic_papers()[0].to_dict()
    missing = keyed.post("/papers", json=[paper])
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = keyed.post("/papers", json=[paper], headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and wrong.json()["detail"]
    for key in ("first-key", "second-key"):
        assert keyed.post("/papers", json={"papers": [paper]}, headers={"X-API-Key": key}).status_code == 201
    assert keyed.delete(f"/papers/{paper['id']}").status_code == 401
    assert keyed.delete(f"/papers/{paper['id']}", headers={"X-API-Key": "first-key"}).status_code == 200
    # reads stay open
    assert keyed.get("/health").status_code == 200


def test_key_comparison_checks_every_key():
    assert key_matches("b", ["a", "b"]) and not key_matches("c", ["a", "b"]) and not key_matches("", ["a"])


def test_bounds_give_4xx_not_5xx(keyed):
    assert keyed.post("/papers", json=[topic_papers()[0].to_dict()], headers={"X-API-Key": "first-key"}).status_code == 201
    assert keyed.get("/search", params={"q": "x", "k": 1_000_000}).status_code == 422
    assert keyed.get("/search", params={"q": "x" * 20_000}).status_code == 422
    big = keyed.post("/papers", content=b"[" + b" " * 300_000 + b"]", headers={"content-type": "application/json", "X-API-Key": "first-key"})
    assert big.status_code == 413 and "limit" in big.json()["detail"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(50):
            yield b" " * 10_000

    streamed = keyed.post("/papers", content=chunks(), headers={"content-type": "application/json", "X-API-Key": "first-key"})
    assert streamed.status_code == 413
    long_abstract = {"id": "2401.00009", "title": "t", "abstract": "word " * 12_000}
    assert keyed.post("/papers", json=[long_abstract], headers={"X-API-Key": "first-key"}).status_code == 422
    for bad in ("..%2Fetc%2Fpasswd", "a" * 300, "x%00y"):
        assert keyed.get(f"/papers/{bad}").status_code == 422, bad
    assert keyed.post("/recommend", json={"positive": ["../x"]}).status_code == 422
    assert keyed.post("/recommend", json={"positive": [{"id": "2401.00001", "weight": 1e300}]}).status_code == 422
    surrogate = b'[{"title": "bad \\ud800 text", "abstract": "fine", "popularity": 1e999}]'
    response = keyed.post("/papers", content=surrogate, headers={"content-type": "application/json", "X-API-Key": "first-key"})
    assert response.status_code == 422


def test_names_cannot_escape_their_folder(tmp_path):
    settings = Settings()
    assert folder_under(settings, tmp_path, "arxiv-2024") == (tmp_path / "arxiv-2024").resolve()
    for bad in ("..", "../x", "a/b", "a\x00b", ".hidden", "", "a\\b", "x" * 101):
        with pytest.raises(InvalidInput):
            check_name(settings, bad)


def test_user_token_or_admin_key(tmp_path):
    settings = Settings(index=tmp_path / "users", api_key="admin-key")
    app = create_app(settings)

    @app.get("/users/{user_id}/probe")
    def probe(user_id: int = Depends(require_user)) -> dict:
        return {"user": user_id}

    with TestClient(app) as client:
        store = app.state.library.store
        with store.transaction():
            alice, bob = store.users.add_user("alice").id, store.users.add_user("bob").id
            token = issue_user_token(store.users, alice)
        assert store.users.token_hash(alice) != token  # only the hash is kept
        assert client.get(f"/users/{alice}/probe", headers={"X-User-Token": token}).json() == {"user": alice}
        assert client.get(f"/users/{alice}/probe").status_code == 401
        assert client.get(f"/users/{bob}/probe", headers={"X-User-Token": token}).status_code == 403
        assert client.get("/users/999/probe", headers={"X-User-Token": token}).status_code == 403
        assert client.get(f"/users/{bob}/probe", headers={"X-API-Key": "admin-key"}).status_code == 200


def test_serve_refuses_public_address_without_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPERLENS_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--index", str(tmp_path / "x")])
    assert result.exit_code == 1 and "--allow-public" in result.output


def test_cli_applies_the_same_bounds(demo_index_dir):
    result = CliRunner().invoke(main, ["search", "protein", "-k", "1000000", "--index", str(demo_index_dir)])
    assert result.exit_code == 1 and "k must be between 1 and 1000" in result.output
