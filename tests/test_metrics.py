"""GET /metrics: Prometheus text that counts the requests before it by route template, times the
encoder, and reports papers, the index generation and the harvests recorded in the store."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from oaiserver import OaiServer, serve
from paperlens.api import create_app
from paperlens.config import Settings
from paperlens.harvest import Source, harvest
from test_harvest import records


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_by_route_and_report_the_index_and_its_harvests(small_library):
    server = OaiServer(records())
    httpd, _thread = serve(server)
    try:
        harvest(small_library, Source(server.url, "cs"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    with TestClient(create_app(Settings(index=small_library.folder), library=small_library)) as client:
        # texts no other test asks for: the process remembers query vectors (Settings.query_cache)
        for query in (f"protein structure {uuid.uuid4().hex}", f"dark matter {uuid.uuid4().hex}"):
            assert client.get("/search", params={"q": query}).status_code == 200
        assert client.get("/papers/2401.00001").status_code == 200
        assert client.get("/papers/2409.99999").status_code == 404
        assert client.get("/no/such/route").status_code == 404
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    def requests(route: str, status: str) -> float:
        return found.get(("paperlens_http_requests_total", (("method", "GET"), ("route", route), ("status", status))), 0)

    assert requests("/search", "200") == 2
    assert requests("/papers/{paper_id:path}", "200") == 1 and requests("/papers/{paper_id:path}", "404") == 1
    assert requests("unmatched", "404") == 1 and requests("/metrics", "200") == 0  # counted once answered
    assert found[("paperlens_http_request_duration_seconds_count", (("method", "GET"), ("route", "/search")))] == 2
    assert found[("paperlens_encode_seconds_count", ())] >= 2 and found[("paperlens_encoded_texts_total", ())] >= 2
    assert found[("paperlens_papers", ())] == 8  # six; five harvested, two of them new versions of held ones; one deleted
    assert found[("paperlens_index_generation", ())] == small_library.store.generation() > 0
    source = {"source": server.url, "set": "cs", "prefix": "arXiv"}

    def harvested(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted({**source, **labels}.items())))]

    assert harvested("paperlens_harvest_runs_total", outcome="ok") == 1
    assert harvested("paperlens_harvest_runs_total", outcome="failed") == 0
    assert [harvested("paperlens_harvest_records_total", result=r) for r in ("added", "updated", "deleted")] == [3, 2, 1]
    assert harvested("paperlens_harvest_last_success_timestamp_seconds") > 1.7e9


def test_metrics_need_the_admin_key_when_the_server_has_keys(small_library):
    settings = Settings(index=small_library.folder, api_key="admin-key")
    with TestClient(create_app(settings, library=small_library)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 403
        created = client.post("/users", json={"name": "Ada"}, headers={"X-API-Key": "admin-key"}).json()
        assert client.get("/metrics", headers={"X-User-Token": created["token"]}).status_code == 401  # a user is not an admin
        answer = client.get("/metrics", headers={"X-API-Key": "admin-key"})
    assert answer.status_code == 200
    found = samples(answer.text)
    key = (("method", "GET"), ("route", "/metrics"))
    assert found[("paperlens_http_requests_total", (*key, ("status", "401")))] == 2
    assert found[("paperlens_http_requests_total", (*key, ("status", "403")))] == 1
