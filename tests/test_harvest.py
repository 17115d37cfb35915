"""OAI-PMH harvests against a local server (tests/oaiserver.py): pages, 503s, deletions, new
versions, incremental and interrupted runs, the schedule, and digests for every user."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from oaiserver import OaiRecord, OaiServer, serve
from paperlens.api import create_app
from paperlens.cli import main
from paperlens.config import Settings
from paperlens.errors import HarvestFailed, InvalidInput
from paperlens.harvest import Source, default_pause, harvest, parse_interval, run_every
from paperlens.library import open_library
from paperlens.papers import oai_paper

TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


def records() -> list[OaiRecord]:
    """Three pages of two: five papers, then a deletion of one of them and of one never held."""
    return [
        OaiRecord("2401.00001", "2024-01-03", "Protein folding with deep networks", "Attention predicts protein structure from sequence."),
        OaiRecord("2401.00002", "2024-01-03", "Galaxy rotation curves and dark matter", "Spiral galaxies have dark matter halos."),
        OaiRecord("2401.00003", "2024-01-04", "Robot grasping with reinforcement learning", "A robot arm learns to grasp objects.",
                  categories="cs.RO cs.LG"),
        OaiRecord("2401.00004", "2024-01-04", "Sim-to-real transfer for manipulation", "Policies trained in simulation transfer to robots."),
        OaiRecord("2401.00005", "2024-01-05", "Speech recognition with transformers", "End-to-end models transcribe speech."),
        OaiRecord("2401.00002", "2024-01-05", deleted=True),
        OaiRecord("hep-th/9901001", "2024-01-05", deleted=True),
    ]


@pytest.fixture()
def oai():
    server = OaiServer(records())
    httpd, thread = serve(server)
    yield server
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def held(index) -> dict[str, str]:
    with open_library(Settings(index=index)) as library:
        return {stored.paper.id: stored.paper.abstract for stored in library.store.get_many(range(1, 100)).values()}


def test_harvest_pages_waits_out_a_503_deletes_and_then_asks_only_for_what_is_new(oai, tmp_path):
    index = tmp_path / "ix"
    oai.busy = {1: 1}  # one 503 (Retry-After: 1) before the second page
    first = run("harvest", oai.url, "--index", index, "--set", "cs", "--json", "--quiet")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert (summary["records"], summary["pages"], summary["added"], summary["deleted"], summary["unknown_deleted"]) == (7, 4, 5, 1, 1)
    assert summary["from"] is None and summary["total"] == 4 and summary["seconds"] >= 1.0
    assert [r.get("resumptionToken") for r in oai.requests] == [None, "||2", "||2", "||4", "||6"]  # page 2 asked twice
    assert oai.requests[0] == {"verb": "ListRecords", "metadataPrefix": "arXiv", "set": "cs"}
    papers = held(index)
    assert set(papers) == {"2401.00001", "2401.00003", "2401.00004", "2401.00005"}  # 2401.00002 was deleted
    with open_library(Settings(index=index)) as library:
        stored = library.store.get("2401.00003").paper
        assert stored.categories == ["cs.RO", "cs.LG"] and stored.date == "2024-01-02" and stored.authors == ["Ada Lovelace"]
        assert library.index is not None and len(library.index) == 4

    second = run("harvest", oai.url, "--index", index, "--set", "cs", "--json", "--quiet")
    again = json.loads(second.output)
    assert second.exit_code == 0 and oai.requests[-1]["from"] == TODAY  # the day the first run's server answered
    assert (again["records"], again["added"], again["pages"], again["from"]) == (0, 0, 0, TODAY)  # noRecordsMatch

    oai.records.append(OaiRecord("2401.00001", TODAY, "Protein folding with deep networks",
                                 "Version 2: diffusion models now predict protein structure."))
    third = json.loads(run("harvest", oai.url, "--index", index, "--set", "cs", "--json", "--quiet").output)
    assert (third["records"], third["updated"], third["added"]) == (1, 1, 0)
    assert held(index)["2401.00001"] == "Version 2: diffusion models now predict protein structure."
    found = json.loads(run("search", "diffusion models for protein structure", "-k", 1, "--index", index, "--json").output)
    assert found["results"][0]["id"] == "2401.00001"

    # From the same day again (inclusive: a record changed later that day would come too): unchanged.
    text = run("harvest", oai.url, "--index", index, "--set", "cs", "--quiet")  # a line, not JSON
    assert text.exit_code == 0 and "1 records in 1 pages" in text.output and "1 unchanged" in text.output
    assert "4 papers in the index" in text.output


def test_a_killed_harvest_keeps_its_pages_and_goes_on_from_the_last_one(oai, tmp_path):
    index = tmp_path / "ix"
    env = {**os.environ, "PAPERLENS_CRASH_AT": "harvest:page-committed"}
    killed = subprocess.run([sys.executable, "-m", "paperlens.cli", "harvest", oai.url, "--index", str(index), "--quiet"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert set(held(index)) == {"2401.00001", "2401.00002"}  # the first page, committed before the kill
    asked = len(oai.requests)
    resumed = run("harvest", oai.url, "--index", index, "--json", "--quiet")
    summary = json.loads(resumed.output)
    assert resumed.exit_code == 0 and summary["resumed"] is True, resumed.output
    assert oai.requests[asked]["resumptionToken"] == "||2"  # the page after the committed one, not the first again
    assert (summary["records"], summary["added"], summary["deleted"]) == (5, 3, 1)
    assert set(held(index)) == {"2401.00001", "2401.00003", "2401.00004", "2401.00005"}
    assert json.loads(run("harvest", oai.url, "--index", index, "--json", "--quiet").output)["from"] == TODAY


def test_an_expired_resumption_token_starts_the_run_again(oai, tmp_path, settings):
    settings = settings.model_copy(update={"index": tmp_path / "ix"})
    source = Source(oai.url)
    with open_library(settings, create=True) as library:
        oai.busy = {1: 2}
        with pytest.raises(HarvestFailed, match="503"):
            harvest(library, source, max_retries=1)  # one page committed, then the server stays busy
        assert library.store.harvests.state(*source.key).token == "||2"
        oai.expired.add("||2")
        asked = len(oai.requests)
        report = harvest(library, source)
        assert report.resumed and oai.requests[asked].get("resumptionToken") == "||2" and "resumptionToken" not in oai.requests[asked + 1]
        assert (report.records, report.unchanged, report.added) == (7, 2, 3)  # the first page again: nothing re-encoded
        assert [(t.runs_ok, t.runs_failed, t.added) for t in library.store.harvests.totals()] == [(1, 1, 5)]


def test_requests_keep_the_pause_between_them(oai, tmp_path, settings):
    assert default_pause("https://oaipmh.arxiv.org/oai") == default_pause("http://export.arxiv.org/oai2") == 3.0
    assert default_pause(oai.url) == default_pause("https://notarxiv.org/oai") == 0.0
    oai.busy = {1: 1}  # the retry keeps the pause too (and the longer Retry-After)
    with open_library(settings.model_copy(update={"index": tmp_path / "ix"}), create=True) as library:
        report = harvest(library, Source(oai.url), pause=0.4)
    gaps = [later - earlier for earlier, later in zip(oai.times, oai.times[1:])]
    assert report.pages == 4 and len(gaps) == 4 and min(gaps) >= 0.4 and gaps[1] >= 1.0


def test_a_retry_after_given_as_a_date_is_waited_out(oai, tmp_path, settings):
    from email.utils import format_datetime

    oai.busy = {0: 1}
    oai.retry_after = lambda: format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2), usegmt=True)
    with open_library(settings.model_copy(update={"index": tmp_path / "ix"}), create=True) as library:
        report = harvest(library, Source(oai.url), retry_after=60)
    assert report.added == 5 and 1.0 <= oai.times[1] - oai.times[0] < 10  # the date, not the 60 s default


def test_a_server_that_stays_busy_is_a_one_line_error(oai, tmp_path):
    oai.busy = {0: 5}
    result = run("harvest", oai.url, "--index", tmp_path / "ix", "--max-retries", 1, "--quiet")
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "answered 503 (busy) to every retry" in result.output


@pytest.mark.parametrize("args, message", [
    (("--from", "yesterday"), "--from must be a day"),
    (("--from", "2024-02-01", "--until", "2024-01-01"), "is after --until"),
    (("--every", "5x"), "give a positive number with a unit"),
    (("--every", "1h", "--until", "2024-01-01"), "leave out --until"),
    (("--digest",), "set PAPERLENS_SMTP_HOST"),
])
def test_bad_harvest_options_are_one_line_errors(oai, tmp_path, args, message):
    result = run("harvest", oai.url, "--index", tmp_path / "ix", *args, env={"PAPERLENS_SMTP_HOST": ""})
    assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1, result.output


def test_an_unreachable_server_is_an_error_not_a_traceback(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("harvest", f"http://127.0.0.1:{port}/oai", "--index", tmp_path / "ix", "--quiet")
    assert result.exit_code == 1 and "could not reach" in result.output


def test_intervals_and_the_schedule(caplog):
    assert [parse_interval(text) for text in ("90s", "15m", "24h", "1.5d")] == [90, 900, 86400, 129600]
    for bad in ("", "24", "0h", "-1h", "h"):
        with pytest.raises(InvalidInput):
            parse_interval(bad)
    clock, slept, calls = [0.0], [], []

    def job():
        calls.append(clock[0])
        clock[0] += 10  # each run takes 10 s
        if len(calls) == 1:
            raise ConnectionError("server down")

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    with caplog.at_level(logging.ERROR, logger="paperlens.harvest"):
        run_every(job, 60, sleep=sleep, clock=lambda: clock[0], runs=3)
    assert calls == [0, 60, 120] and slept == [50, 50]  # start to start; the failed run did not end the schedule
    assert [r.getMessage() for r in caplog.records] == ["scheduled run failed: server down"]


RAW = """<record xmlns="http://www.openarchives.org/OAI/2.0/"><header><identifier>oai:arXiv.org:0704.0001</identifier>
<datestamp>2008-11-13</datestamp></header><metadata><arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"><id>0704.0001</id>
<submitter>Pavel Nadolsky</submitter><version version="v1"><date>Mon, 2 Apr 2007 19:18:42 GMT</date><size>37kb</size></version>
<version version="v2"><date>Tue, 24 Jul 2007 20:10:27 GMT</date><size>37kb</size></version>
<title>Calculation of prompt diphoton production cross sections</title><authors>C. Bal\\'azs, E. L. Berger and C.-P. Yuan</authors>
<categories>hep-ph</categories><doi>10.1103/PhysRevD.76.013009</doi><abstract>A fully differential calculation.</abstract>
</arXivRaw></metadata></record>"""

DC = """<record xmlns="http://www.openarchives.org/OAI/2.0/"><header><identifier>oai:arXiv.org:0704.0002</identifier>
<datestamp>2008-12-13</datestamp></header><metadata><oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Sparsity-certifying Graph Decompositions</dc:title>
<dc:creator>Streinu, Ileana</dc:creator><dc:creator>Theran, Louis</dc:creator><dc:subject>Mathematics - Combinatorics</dc:subject>
<dc:description>We describe a new algorithm.</dc:description><dc:date>2007-03-30</dc:date><dc:date>2008-12-13</dc:date>
<dc:identifier>http://arxiv.org/abs/0704.0002</dc:identifier></oai_dc:dc></metadata></record>"""


def test_arxivraw_and_dublin_core_records_are_read_as_papers():
    raw = oai_paper(ET.fromstring(RAW))
    assert (raw.id, raw.date, raw.categories, raw.extra["version"], raw.extra["doi"]) == (
        "0704.0001", "2007-04-02", ["hep-ph"], "v2", "10.1103/PhysRevD.76.013009")
    assert raw.authors == ["C. Bal\\'azs", "E. L. Berger", "C.-P. Yuan"]
    dc = oai_paper(ET.fromstring(DC))
    assert (dc.id, dc.date, dc.authors, dc.abstract) == ("0704.0002", "2007-03-30", ["Streinu, Ileana", "Theran, Louis"],
                                                         "We describe a new algorithm.")


def test_digests_for_every_user_with_an_address_after_a_harvest(oai, tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    index = tmp_path / "ix"
    assert run("harvest", oai.url, "--index", index, "--quiet").exit_code == 0
    for name in ("Ada", "Bob"):
        run("user", "add", name, "--index", index)
    run("user", "like", 1, "2401.00003", "--index", index)
    assert run("user", "set-email", 1, "not an address", "--index", index).exit_code == 1
    assert "ada@example.org" in run("user", "set-email", 1, "ada@example.org", "--index", index).output
    smtp = {"PAPERLENS_SMTP_HOST": "127.0.0.1", "PAPERLENS_SMTP_PORT": str(port), "PAPERLENS_SMTP_FROM": "feeds@paperlens.test"}
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        oai.records.append(OaiRecord("2411.00001", TODAY, "Grasping deformable objects with a robot hand",
                                     "A robot learns to grasp cloth and cables.", created=TODAY))
        harvested = run("harvest", oai.url, "--index", index, "--digest", "--json", "--quiet", env=smtp)
        assert harvested.exit_code == 0, harvested.output
        digests = json.loads(harvested.output)["digests"]
        assert (digests["sent"], digests["no_address"], digests["nothing_new"]) == (1, 1, 0)  # the first: the top of the feed
        html = next(p for p in received[0].walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
        assert received[0]["To"] == "ada@example.org" and "Grasping deformable objects" in html and "Sim-to-real" in html
        # An old paper (dated 2023) harvested only now is new to the index: it is in the next digest,
        # and what the first one sent is not.
        oai.records.append(OaiRecord("2312.00009", TODAY, "Tactile sensing for robot grasping",
                                     "Touch sensors help a robot hand grasp fragile objects.", created="2023-12-01"))
        assert json.loads(run("harvest", oai.url, "--index", index, "--json", "--quiet").output)["added"] == 1
        again = run("digest", "--all", "--index", index, "--json", env=smtp)
        assert again.exit_code == 0 and len(received) == 2 and json.loads(again.output)["papers"] == 1, again.output
        html = next(p for p in received[1].walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
        assert "Tactile sensing for robot grasping" in html and "Grasping deformable" not in html and "Sim-to-real" not in html
    finally:
        controller.stop()
    done = json.loads(run("digest", "--all", "--index", index, "--json", env=smtp).output)
    assert (done["sent"], done["nothing_new"], done["no_address"]) == (0, 1, 1)
    assert run("digest", "--all", "--index", index, env={"PAPERLENS_SMTP_HOST": ""}).exit_code == 1
    assert "give a USER" in run("digest", "--index", index).output


def test_the_email_address_through_the_api(tmp_path, small_library):
    with TestClient(create_app(Settings(index=small_library.folder, api_key="admin-key"), library=small_library)) as client:
        created = client.post("/users", json={"name": "Ada"}, headers={"X-API-Key": "admin-key"}).json()
        token = {"X-User-Token": created["token"]}
        assert client.put("/users/1/email", json={"email": "ada@example.org"}).status_code == 401
        assert client.put("/users/1/email", json={"email": "ada@example.org"}, headers={"X-User-Token": "x"}).status_code == 403
        put = client.put("/users/1/email", json={"email": " ada@example.org "}, headers=token)
        assert put.status_code == 200 and put.json() == {"email": "ada@example.org"}
        assert client.get("/users/1/email", headers=token).json() == {"email": "ada@example.org"}
        bad = client.put("/users/1/email", json={"email": "Ada <ada@example.org>, bob@example.org"}, headers=token)
        assert bad.status_code == 422 and "not an e-mail address" in bad.json()["detail"]
        assert client.delete("/users/1/email", headers=token).json() == {"email": None}
        assert client.get("/users/1/email", headers={"X-API-Key": "admin-key"}).json() == {"email": None}
