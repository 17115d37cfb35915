"""Users, feeds, collections and exports through the HTTP API, on a writable copy of the demo index."""

import shutil
import xml.etree.ElementTree as ET

import bibtexparser
import pytest
from fastapi.testclient import TestClient

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.config import Settings

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def client(demo_index_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feeds-api") / "index"
    shutil.copytree(demo_index_dir, folder)
    with TestClient(create_app(Settings(index=folder))) as client:
        yield client


def top(client, query, k=2):
    return [hit["id"] for hit in client.get("/search", params={"q": query, "k": k}).json()["results"]]


@pytest.fixture(scope="module")
def two_topic_user(client):
    """The acceptance case: likes the top two of a video query and the top two of an LLM-safety query."""
    user = client.post("/users", json={"name": "Ada"})
    assert user.status_code == 201 and user.json()["name"] == "Ada"
    video, safety = top(client, "video understanding"), top(client, "LLM safety")
    for paper_id in video + safety:
        assert client.post(f"/users/{user.json()['id']}/interactions", json={"paper_id": paper_id, "kind": "like"}).status_code == 201
    return user.json()["id"], video, safety


def test_feed_has_both_topics_no_liked_papers_and_a_reason_on_every_item(client, two_topic_user):
    user_id, video, safety = two_topic_user
    results = client.get(f"/users/{user_id}/feed", params={"k": 10}).json()["results"]
    assert len(results) == 10
    assert not {r["id"] for r in results} & set(video + safety)
    assert all(r["reason"]["because"] for r in results)
    reasons = {r["reason"]["because"][0]["paper_id"] for r in results}
    assert reasons & set(video) and reasons & set(safety)
    assert {r["interest"] for r in results} == {0, 1}
    titles = " ".join(r["title"].lower() for r in results)
    assert "video" in titles and ("jailbreak" in titles or "toxic" in titles or "harm" in titles or "detox" in titles)


def test_atom_feed_is_well_formed(client, two_topic_user):
    user_id, _, _ = two_topic_user
    response = client.get(f"/users/{user_id}/feed.atom", params={"k": 5})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(response.content)
    entries = root.findall(f"{ATOM}entry")
    assert root.tag == f"{ATOM}feed" and len(entries) == 5
    assert all(e.find(f"{ATOM}title").text and e.find(f"{ATOM}id").text for e in entries)
    assert "because of" in entries[0].find(f"{ATOM}summary").text
    same = client.get(f"/users/{user_id}/feed", params={"k": 5, "format": "atom"})
    assert ET.fromstring(same.content).tag == f"{ATOM}feed"


def test_bibtex_exports_parse(client, two_topic_user):
    user_id, video, _ = two_topic_user
    for path, params in ((f"/users/{user_id}/feed.bib", {"k": 4}), (f"/users/{user_id}/feed", {"k": 4, "format": "bibtex"}),
                         ("/search.bib", {"q": "video", "k": 3}), (f"/papers/{video[0]}/similar.bib", {"k": 3})):
        response = client.get(path, params=params)
        assert response.status_code == 200 and "bibtex" in response.headers["content-type"], path
        library = bibtexparser.parse_string(response.text)
        assert not library.failed_blocks and len(library.entries) == params["k"], path
        assert len({e.key for e in library.entries}) == params["k"]
        assert all(e.fields_dict["title"].value for e in library.entries)


def test_user_lifecycle_interactions_and_interests(client):
    user_id = client.post("/users", json={"name": "Bo"}).json()["id"]
    paper = top(client, "code generation", 1)[0]
    client.post(f"/users/{user_id}/interactions", json={"paper_id": paper, "kind": "save"})
    client.post(f"/users/{user_id}/interactions", json={"paper_id": paper, "kind": "seen"})
    listed = client.get(f"/users/{user_id}/interactions").json()["interactions"]
    assert {(i["paper_id"], i["kind"]) for i in listed} == {(paper, "save"), (paper, "seen")}
    assert len(client.get(f"/users/{user_id}/interactions", params={"kind": "seen"}).json()["interactions"]) == 1
    assert client.delete(f"/users/{user_id}/interactions/{paper}", params={"kind": "seen"}).json() == {"deleted": 1}
    assert client.delete(f"/users/{user_id}/interactions/{paper}", params={"kind": "seen"}).status_code == 404
    assert client.put(f"/users/{user_id}/interests", json={"interests": ["sparse autoencoders"]}).status_code == 200
    body = client.get(f"/users/{user_id}").json()
    assert body["interactions"] == 1 and body["interests"] == ["sparse autoencoders"]
    feed = client.get(f"/users/{user_id}/feed", params={"k": 5}).json()["results"]
    assert any("interest" in b for r in feed for b in r["reason"]["because"])
    assert client.delete(f"/users/{user_id}").json() == {"deleted": user_id}
    assert client.get(f"/users/{user_id}").status_code == 404
    assert client.get(f"/users/{user_id}/feed").status_code == 404


def test_collections(client):
    user_id = client.post("/users", json={"name": "Cy"}).json()["id"]
    base = f"/users/{user_id}/collections/reading list"
    assert client.put(base).status_code == 201 and client.put(base).status_code == 200
    video = top(client, "video question answering", 2)
    assert client.post(f"{base}/papers", json={"paper_id": video[0]}).json()["papers"] == [video[0]]
    client.post(f"{base}/papers", json={"paper_id": video[1]})
    feed = client.get(f"{base}/feed", params={"k": 5}).json()["results"]
    assert len(feed) == 5 and not {r["id"] for r in feed} & set(video)
    assert all(b["paper_id"] in video for r in feed for b in r["reason"]["because"])
    assert ET.fromstring(client.get(f"{base}/feed.atom").content).tag == f"{ATOM}feed"
    assert bibtexparser.parse_string(client.get(f"{base}/feed.bib", params={"k": 2}).text).entries
    assert client.delete(f"{base}/papers/{video[1]}").json()["papers"] == [video[0]]
    assert [c["name"] for c in client.get(f"/users/{user_id}/collections").json()["collections"]] == ["reading list"]
    assert client.delete(base).status_code == 200 and client.get(base).status_code == 404


@pytest.mark.parametrize("method, path, body, status", [
    ("get", "/users/99999", None, 404),
    ("get", "/users/x", None, 422),
    ("post", "/users", {"name": ""}, 422),
    ("post", "/users", {"name": "a\x00b"}, 422),
    ("post", "/users/99999/interactions", {"paper_id": "h10e3cad7e9bc49cb", "kind": "like"}, 404),
    ("post", "/users/{u}/interactions", {"paper_id": "no-such-paper", "kind": "like"}, 404),
    ("post", "/users/{u}/interactions", {"paper_id": "h10e3cad7e9bc49cb", "kind": "love"}, 422),
    ("get", "/users/{u}/interactions?kind=love", None, 422),
    ("put", "/users/{u}/collections/a..b", None, 422),
    ("put", "/users/{u}/collections/a%00b", None, 422),
    ("put", "/users/{u}/collections/" + "x" * 101, None, 422),
    ("get", "/users/{u}/collections/missing", None, 404),
    ("post", "/users/{u}/collections/missing/papers", {"paper_id": "h10e3cad7e9bc49cb"}, 404),
    ("get", "/users/{u}/feed?k=0", None, 422),
    ("get", "/users/{u}/feed?since=yesterday", None, 422),
    ("get", "/users/{u}/feed?format=pdf", None, 422),
    ("put", "/users/{u}/interests", {"interests": ["x"] * 21}, 422),
    ("put", "/users/{u}/interests", {"interests": [""]}, 422),
    ("get", "/papers/no-such-paper/similar.bib", None, 404),
    ("get", "/papers/" + "x" * 300 + "/similar.bib", None, 422),
    ("get", "/papers/a%00b/similar.bib", None, 422),
    ("get", "/papers/h10e3cad7e9bc49cb/similar.bib?since=yesterday", None, 422),
    ("get", "/papers/h10e3cad7e9bc49cb/similar.bib?mode=fuzzy", None, 422),
    ("get", "/search.bib?q=video&until=tomorrow", None, 422),
    ("get", "/search.bib?q=video&mode=fuzzy", None, 422),
    ("get", "/search.bib?q=video&min_popularity=nan", None, 422),
    ("delete", "/users/{u}/interactions/" + "x" * 300, None, 422),
    ("delete", "/users/{u}/collections/c/papers/a%00b", None, 422),
    ("put", "/users/{u}/collections/a%2Fb", None, 422),
    ("get", "/users/{u}/collections/a%2Fb/feed", None, 422),
    ("post", "/users/{u}/collections/a%2Fb/papers", {"paper_id": "h10e3cad7e9bc49cb"}, 422),
])
def test_bad_input_is_404_or_422_with_a_message(client, method, path, body, status):
    user_id = client.post("/users", json={"name": "Err"}).json()["id"]
    response = getattr(client, method)(path.replace("{u}", str(user_id)), **({"json": body} if body is not None else {}))
    assert response.status_code == status and response.json()["detail"]


def test_the_page_serves_a_search_form(client):
    page = client.get("/")
    assert page.status_code == 200 and 'name="q"' in page.text and "/static/style.css" in page.text
    results = client.get("/", params={"q": "video question answering"})
    assert "Temporal" in results.text and "/paper/" in results.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/paper/no-such-paper").status_code == 404
    bad = client.get("/paper/" + "x" * 300)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html") and "invalid paper id" in bad.text


def test_with_api_keys_users_need_their_token(demo_index_dir, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(demo_index_dir, folder)
    with TestClient(create_app(Settings(index=folder, api_key="admin-key"))) as keyed:
        assert keyed.post("/users", json={"name": "Ada"}).status_code == 401
        created = keyed.post("/users", json={"name": "Ada"}, headers={"X-API-Key": "admin-key"})
        assert created.status_code == 201 and created.json()["token"]
        user_id, token = created.json()["id"], created.json()["token"]
        assert keyed.get(f"/users/{user_id}/feed").status_code == 401
        assert keyed.get(f"/users/{user_id}/feed", headers={"X-User-Token": "wrong"}).status_code == 403
        liked = keyed.post(f"/users/{user_id}/interactions", json={"paper_id": "h10e3cad7e9bc49cb", "kind": "like"},
                           headers={"X-User-Token": token})
        assert liked.status_code == 201
        feed = keyed.get(f"/users/{user_id}/feed", params={"k": 3}, headers={"X-User-Token": token})
        assert feed.status_code == 200 and len(feed.json()["results"]) == 3
        assert keyed.get(f"/users/{user_id}", headers={"X-API-Key": "admin-key"}).json()["token"] is None
        assert keyed.get("/users", headers={"X-User-Token": token}).status_code == 401
        listed = keyed.get("/users", headers={"X-API-Key": "admin-key"}).json()["users"]
        assert [(u["id"], u["name"], u["interactions"]) for u in listed] == [(user_id, "Ada", 1)] and "token" not in listed[0]
        keyed.cookies.set("paperlens_user", str(user_id))
        page = keyed.get("/feed")
        assert page.status_code == 200 and "Signed in" not in page.text and 'id="user-form"' not in page.text


@pytest.fixture()
def topic_client(small_library):
    """Six papers with arXiv ids, dates, categories and popularity: BibTeX entries carry the id as eprint."""
    with TestClient(create_app(small_library.settings, small_library)) as client:
        yield client


def bib_ids(response) -> list[str]:
    assert response.status_code == 200 and "bibtex" in response.headers["content-type"], response.text
    library = bibtexparser.parse_string(response.text)
    assert not library.failed_blocks
    return [entry.fields_dict["eprint"].value for entry in library.entries]


@pytest.mark.parametrize("path, params", [("/search", {"q": "protein structure"}), ("/papers/2401.00001/similar", {})])
@pytest.mark.parametrize("extra", [{}, {"mode": "bm25"}, {"mode": "dense", "category": "cs"}, {"since": "2024-02", "until": "2025-03-01"},
                                   {"min_popularity": 2, "category": ["q-bio", "astro-ph"]}])
def test_bib_twins_apply_the_filters_and_mode_of_their_json_routes(topic_client, path, params, extra):
    query = {"k": 6, **params, **extra}
    ids = [hit["id"] for hit in topic_client.get(path, params=query).json()["results"]]
    assert bib_ids(topic_client.get(f"{path}.bib", params=query)) == ids
    if extra:  # each case filters or ranks differently from the defaults
        assert ids != [hit["id"] for hit in topic_client.get(path, params={"k": 6, **params}).json()["results"]]


def test_a_filter_that_excludes_everything_gives_an_empty_bib(topic_client):
    for path, params in (("/search.bib", {"q": "protein"}), ("/papers/2401.00001/similar.bib", {})):
        assert bib_ids(topic_client.get(path, params={**params, "since": "2030-01-01"})) == []
        assert bib_ids(topic_client.get(path, params={**params, "category": "q-bio", "min_popularity": 100})) == []
        unknown = topic_client.get(path, params={**params, "category": "hep-th"})
        assert unknown.status_code == 422 and unknown.json()["detail"] == (
            "no paper in this index has the category 'hep-th'; its categories: astro-ph.GA, cs.LG, cs.RO, q-bio.BM")


def test_similar_bib_takes_a_versioned_arxiv_id_as_similar_does(topic_client):
    ids = [hit["id"] for hit in topic_client.get("/papers/2401.00001v3/similar", params={"k": 3}).json()["results"]]
    assert ids and bib_ids(topic_client.get("/papers/2401.00001v3/similar.bib", params={"k": 3})) == ids


def test_feeds_take_every_filter(topic_client):
    user_id = topic_client.post("/users", json={"name": "Ada"}).json()["id"]
    topic_client.post(f"/users/{user_id}/interactions", json={"paper_id": "2401.00001", "kind": "like"})
    by_id = {p.id: p for p in topic_papers()}
    for params, keep in (({"until": "2023-12-31"}, lambda p: p.date <= "2023-12-31"),
                         ({"min_popularity": 10}, lambda p: p.popularity >= 10),
                         ({"category": ["astro-ph", "cs.RO"]}, lambda p: p.categories[0] in ("astro-ph.GA", "cs.RO"))):
        feed = topic_client.get(f"/users/{user_id}/feed", params={"k": 5, **params}).json()["results"]
        expected = {p.id for p in by_id.values() if keep(p)} - {"2401.00001"}
        assert {r["id"] for r in feed} == expected, params
        assert bib_ids(topic_client.get(f"/users/{user_id}/feed.bib", params={"k": 5, **params})) == [r["id"] for r in feed]


def test_bibtex_urls_are_verbatim(topic_client):
    paper = {"id": "2409.00001", "title": "Verbatim links", "abstract": "A paper whose link has & and _ in it.",
             "url": "https://example.org/paper?id=1&part=a_b"}
    assert topic_client.post("/papers", json=[paper]).status_code == 201
    bib = topic_client.get("/search.bib", params={"q": "verbatim links", "k": 1}).text
    assert "url = {https://example.org/paper?id=1&part=a_b}" in bib and "\\url" not in bib
    assert bibtexparser.parse_string(bib).entries[0]["url"] == paper["url"]


def test_atom_links_follow_the_request_or_the_public_url(small_library):
    """Not the default port: entries link where the feed was fetched, or under PAPERLENS_PUBLIC_URL."""
    with TestClient(create_app(small_library.settings, small_library), base_url="http://papers.local:8751") as client:
        user = client.post("/users", json={"name": "Ada"}).json()["id"]
        client.post(f"/users/{user}/interactions", json={"paper_id": "2401.00001", "kind": "like"})
        feed = ET.fromstring(client.get(f"/users/{user}/feed.atom", params={"k": 2}).content)
        assert feed.find(f"{ATOM}id").text == f"http://papers.local:8751/users/{user}/feed.atom?k=2"
        entries = [e.find(f"{ATOM}link").get("href") for e in feed.iter(f"{ATOM}entry")]
        assert entries and all(href.startswith("http://papers.local:8751/paper/") for href in entries)
        small_library.settings.public_url = "https://papers.example.org/lens/"
        feed = ET.fromstring(client.get(f"/users/{user}/feed.atom", params={"k": 2}).content)
        assert feed.find(f"{ATOM}id").text == f"https://papers.example.org/lens/users/{user}/feed.atom?k=2"
        assert all(e.find(f"{ATOM}link").get("href").startswith("https://papers.example.org/lens/paper/")
                   for e in feed.iter(f"{ATOM}entry"))
