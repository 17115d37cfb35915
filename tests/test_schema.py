"""Schemathesis over the OpenAPI schema: generated requests of every operation (writes included,
against a throwaway index) never get a 5xx, and every response matches its documented schema."""

from __future__ import annotations

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from conftest import topic_papers
from paperlens.api import create_app
from paperlens.config import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 150  # 9 operations: ~1,350 requests


def test_generated_requests_get_no_5xx_and_match_the_schema(tmp_path):
    app = create_app(Settings(index=tmp_path / "fuzzed", max_body_bytes=200_000))
    with TestClient(app) as client:
        client.post("/papers", json=[p.to_dict() for p in topic_papers()])
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        sent = 0
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def run(case) -> None:
                nonlocal sent
                sent += 1
                case.call_and_validate(checks=CHECKS)

            run()
        assert sent >= 1000
