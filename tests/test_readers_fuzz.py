"""Property tests: the readers take any bytes and any JSON value; they skip bad records and raise
nothing but InvalidInput."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paperlens.errors import InvalidInput
from paperlens.papers import FORMATS, Paper, papers_from_records, read_papers

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
record_keys = st.sampled_from(["id", "title", "abstract", "authors", "date", "categories", "popularity", "url", "extra", "tags", "versions", "update_date"])
records = st.dictionaries(record_keys, json_values, max_size=8) | json_values

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def read_any(path: Path, fmt: str | None) -> None:
    try:
        result = read_papers(path, fmt)
    except InvalidInput:
        return
    assert all(isinstance(p, Paper) and (p.title or p.abstract) for p in result.papers)
    for paper in result.papers:
        json.dumps(paper.to_dict(), allow_nan=False)
        paper.text.encode("utf-8")  # no unpaired surrogates reach SQLite or the tokenizer


@FUZZ
@given(data=st.binary(max_size=2000), fmt=st.sampled_from((None, *FORMATS)))
def test_any_bytes_in_any_format(tmp_path_factory, data, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "input.dat"
    path.write_bytes(data)
    read_any(path, fmt)


@FUZZ
@given(lines=st.lists(records, max_size=6), fmt=st.sampled_from(("jsonl", "json", "arxiv", "beir", None)))
def test_json_records_of_any_shape(tmp_path_factory, lines, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "papers.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    read_any(path, fmt)


@FUZZ
@given(body=st.lists(records, max_size=6))
def test_api_records_of_any_shape(body):
    papers, skipped = papers_from_records(body)
    assert len(papers) + len(skipped) == len(body)
    for paper in papers:
        json.dumps(paper.to_dict(), allow_nan=False)
        paper.text.encode("utf-8")


def test_deep_nesting_and_surrogates_are_skipped(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "\n" + '{"title": "ok \\ud800", "abstract": "x", "popularity": 1e999}\n')
    result = read_papers(path, "jsonl")
    assert len(result.skipped) == 2 and not result.papers
