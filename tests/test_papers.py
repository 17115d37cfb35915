import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SHARED_DATA, write_jsonl
from paperlens.errors import InvalidInput
from paperlens.papers import arxiv_base_id, content_id, detect_format, read_papers

SEED = SHARED_DATA.parent / "seeds" / "000_ac7b75b8e9eeede0.txt"


def test_arxiv_ids_lose_their_version():
    assert arxiv_base_id("2301.01234v2") == "2301.01234"
    assert arxiv_base_id("arXiv:2301.01234") == "2301.01234"
    assert arxiv_base_id("hep-th/9901001v3") == "hep-th/9901001"
    assert arxiv_base_id("not an id") is None


def test_content_id_ignores_case_space_and_punctuation():
    assert content_id("A Title", "Some  abstract.") == content_id("a title", "some abstract")
    assert content_id("A Title", "Some abstract") != content_id("A Title", "Other abstract")


def test_jsonl_skips_bad_lines_with_line_numbers(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "2301.00001v1", "title": "Good", "abstract": "Fine.", "authors": "Ada Lovelace, Alan Turing", "date": "2023-01-02"},
        "{broken json",
        {"id": "x1", "title": "", "abstract": ""},
        {"id": "x2", "title": ["not", "a", "string"], "abstract": "a"},
        {"title": "No id", "abstract": "Gets a hash id.", "categories": "cs.CL cs.LG", "upvotes": "7"},
    ])
    result = read_papers(path)
    assert result.format == "jsonl"
    assert [p.id for p in result.papers] == ["2301.00001", content_id("No id", "Gets a hash id.")]
    assert result.papers[0].authors == ["Ada Lovelace", "Alan Turing"]
    assert result.papers[0].url == "https://arxiv.org/abs/2301.00001"
    assert result.papers[1].categories == ["cs.CL", "cs.LG"] and result.papers[1].popularity == 7
    assert [s.line for s in result.skipped] == [2, 3, 4]
    assert "broken JSON" in result.skipped[0].reason and "no title" in result.skipped[1].reason


def test_csv_reader(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('id,title,abstract,date,categories\n2302.11111,A csv paper,"An abstract, with a comma",2023-02-01,cs.IR\n,,,,\n')
    result = read_papers(path)
    assert result.format == "csv"
    assert result.papers[0].abstract == "An abstract, with a comma" and result.papers[0].categories == ["cs.IR"]
    assert len(result.skipped) == 1 and result.skipped[0].line == 3


def test_parquet_reader(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": ["a1", "a2"], "title": ["T1", None], "abstract": ["x", None]}), path)
    result = read_papers(path)
    assert result.format == "parquet" and [p.id for p in result.papers] == ["a1"] and len(result.skipped) == 1


def test_beir_folder(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "d1", "title": "", "text": "Evidence abstract."}])
    result = read_papers(tmp_path)
    assert result.format == "beir" and result.papers[0].id == "d1" and result.papers[0].abstract == "Evidence abstract."


def test_arxiv_snapshot_versions_are_one_paper(tmp_path):
    record = {"id": "0704.0001", "title": "Calculation of prompt diphoton production", "abstract": " A fully differential calculation. ",
              "authors": "C. Balázs, E. L. Berger", "categories": "hep-ph", "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"}],
              "update_date": "2008-11-13", "doi": "10.1103/PhysRevD.76.013009"}
    path = write_jsonl(tmp_path / "arxiv.json", [record, {**record, "id": "0704.0001v2"}])
    result = read_papers(path)
    assert result.format == "arxiv"
    assert {p.id for p in result.papers} == {"0704.0001"}
    paper = result.papers[0]
    assert paper.date == "2007-04-02" and paper.categories == ["hep-ph"] and paper.extra["doi"].startswith("10.1103")
    assert paper.abstract == "A fully differential calculation."


OAI = """<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><ListRecords>
<record><header><identifier>oai:arXiv.org:2101.00001</identifier><datestamp>2021-01-05</datestamp></header>
<metadata><arXiv xmlns="http://arxiv.org/OAI/arXiv/"><id>2101.00001</id><created>2021-01-01</created>
<authors><author><keyname>Curie</keyname><forenames>Marie</forenames></author></authors>
<title>Radioactivity revisited</title><categories>physics.hist-ph</categories><abstract>We revisit radioactivity.</abstract></arXiv></metadata></record>
<record><header status="deleted"><identifier>oai:arXiv.org:2101.00002</identifier></header></record>
</ListRecords></OAI-PMH>"""


def test_oai_pmh_xml(tmp_path):
    path = tmp_path / "oai.xml"
    path.write_text(OAI)
    result = read_papers(path)
    assert result.format == "oai"
    paper = result.papers[0]
    assert (paper.id, paper.title, paper.authors, paper.date) == ("2101.00001", "Radioactivity revisited", ["Marie Curie"], "2021-01-01")
    assert len(result.skipped) == 1 and "deleted" in result.skipped[0].reason


def test_truncated_xml_keeps_what_was_read(tmp_path):
    path = tmp_path / "cut.xml"
    path.write_text(OAI[: OAI.index("<record><header status")] + "<record><head")
    result = read_papers(path)
    assert len(result.papers) == 1 and "broken XML" in result.skipped[-1].reason


@pytest.mark.skipif(not SEED.exists(), reason="the seed listing is in ../shared/seeds, beside the checkout; a user's clone has none")
def test_seed_listing_has_53_papers_with_metadata():
    result = read_papers(SEED)
    assert result.format == "listing" and len(result.papers) == 53
    first = result.papers[0]
    assert first.title.startswith("FinDPO") and first.date == "2025-07-24" and first.extra["author_count"] == 3
    assert any(p.extra.get("organisation") == "NVIDIA" for p in result.papers)
    assert sum(p.popularity for p in result.papers) > 0


def test_format_override_and_errors(tmp_path):
    path = write_jsonl(tmp_path / "data.txt", [{"title": "T", "abstract": "A"}])
    assert read_papers(path, "jsonl").papers[0].title == "T"
    with pytest.raises(InvalidInput, match="unknown format"):
        read_papers(path, "docx")
    with pytest.raises(InvalidInput, match="no such file"):
        read_papers(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInput, match="not a BEIR folder"):
        detect_format(tmp_path)


def test_json_list_and_wrapper(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"papers": [{"title": "T", "abstract": "A"}]}))
    assert len(read_papers(tmp_path / "a.json").papers) == 1


LATIN1_TITLE = "Café résumé of naïve methods"


@pytest.mark.parametrize("name, body", [
    ("latin1.jsonl", json.dumps({"id": "2401.00011", "title": LATIN1_TITLE, "abstract": "Naïve Bayes über alles."},
                                ensure_ascii=False) + "\n"),
    ("latin1.csv", f"id,title,abstract\n2401.00011,{LATIN1_TITLE},Naïve Bayes über alles.\n"),
])
def test_a_latin1_file_keeps_its_accents_and_names_its_encoding(tmp_path, name, body):
    path = tmp_path / name
    path.write_bytes(body.encode("latin-1"))
    result = read_papers(path)
    assert result.encoding == "cp1252" and not result.skipped
    paper = result.papers[0]
    assert (paper.title, paper.abstract) == (LATIN1_TITLE, "Naïve Bayes über alles.")
    assert "\ufffd" not in paper.title + paper.abstract


def test_utf8_with_a_byte_order_mark_is_utf8(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(f"title,abstract\n{LATIN1_TITLE},x\n".encode("utf-8-sig"))
    result = read_papers(path)
    assert result.encoding == "utf-8" and result.papers[0].title == LATIN1_TITLE


def test_bytes_that_fit_no_encoding_are_refused_with_their_line_and_byte(tmp_path):
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"title": "fine", "abstract": "ok"}\n' + bytes(range(256)) * 4 + b"\n")  # a newline at byte 10: line 3
    with pytest.raises(InvalidInput, match=r"line 3: byte 0x80 is not UTF-8"):
        read_papers(path)


def test_a_lone_surrogate_is_refused_never_stored_as_a_replacement_character(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", ['{"title": "ok \\ud800", "abstract": "x"}', {"title": "fine", "abstract": "y"}])
    result = read_papers(path)
    assert [p.title for p in result.papers] == ["fine"]
    assert "unpaired surrogate" in result.skipped[0].reason and result.skipped[0].line == 1


def test_tsv_with_other_header_names_is_read_and_says_which_columns(tmp_path):
    path = tmp_path / "export.tsv"
    path.write_text("Paper ID\tName\tSummary\tYear\tNotes\n"
                    "2401.00021\tSparse attention, revisited\tWe revisit sparse attention; it works.\t2024\tread later\n")
    result = read_papers(path)
    paper = result.papers[0]
    assert (paper.id, paper.title, paper.abstract, paper.date) == (
        "2401.00021", "Sparse attention, revisited", "We revisit sparse attention; it works.", "2024-01-01")
    assert paper.extra == {"notes": "read later"}
    assert result.layout == "tab-separated; id from 'Paper ID', title from 'Name', abstract from 'Summary', date from 'Year'"


def test_semicolons_are_sniffed(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('title;abstract\n"A, B and C";"One, two; three"\n')
    result = read_papers(path)
    assert (result.papers[0].title, result.papers[0].abstract) == ("A, B and C", "One, two; three")


def test_a_csv_without_a_usable_column_fails_once_naming_its_columns(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("heading,body_text\nx,y\nz,w\n")
    with pytest.raises(InvalidInput) as error:
        read_papers(path)
    message = str(error.value)
    assert "found: heading, body_text" in message and "title: title, paper_title, name" in message
    assert "abstract: abstract, summary" in message and "line 2" not in message
