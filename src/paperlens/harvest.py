"""New papers every day: harvest an OAI-PMH interface (arXiv's by default) into an index.

The protocol is sickle's (requests, resumption tokens, 503 with Retry-After); each record goes
through the OAI-PMH reader of papers.py (``oai_paper``) and the normal ``ingest``, so ids, versions,
duplicates, categories and dates are as for an OAI-PMH file. A record whose header says
``status="deleted"`` deletes its paper.

Incremental and resumable: the index remembers, per source URL, set and metadata prefix
(store.HarvestStore), the day the next run asks ``from`` (the response date of the last complete
run), and, while a run is under way, the resumption token of its last committed page. Each page is
committed as one ingest, so a harvest killed halfway keeps its pages and the next run asks for the
page after the last one committed (or, when the server no longer knows that token, starts the same
run again: pages already held come back unchanged and cost no encoding).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import requests
from lxml import etree
from sickle import Sickle, oaiexceptions
from sickle.iterator import OAIResponseIterator

from .errors import HarvestFailed, InvalidInput
from .faults import crash_point
from .library import Library, delete, ingest
from .limits import skip_oversized
from .papers import InvalidRecord, Paper, normalise_id, oai_paper
from .store import HarvestRun, HarvestState
from .store.db import now

log = logging.getLogger(__name__)

# arXiv's OAI-PMH interface since 2025 (https://info.arxiv.org/help/oa/index.html); the older
# http://export.arxiv.org/oai2 answers too. Its metadata formats: arXiv, arXivRaw, oai_dc.
ARXIV_OAI = "https://oaipmh.arxiv.org/oai"
PREFIXES = ("arXiv", "arXivRaw", "oai_dc")
OAI_NS = "{http://www.openarchives.org/OAI/2.0/}"
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


ARXIV_PAUSE = 3.0  # arXiv's terms for its APIs: at most one request every three seconds


class PacedSickle(Sickle):
    """sickle, with at least ``pause`` seconds from one request to the next (its retries included)."""

    def __init__(self, *args: Any, pause: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pause = pause
        self._last = -float("inf")

    def get_retry_after(self, http_response: requests.Response) -> int:
        """Retry-After in seconds or as an HTTP date (sickle reads only seconds, and fails on a date)."""
        value = http_response.headers.get("retry-after", "").strip()
        if value.isdigit():
            return int(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return self.default_retry_after
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return max(0, math.ceil((when - dt.datetime.now(dt.timezone.utc)).total_seconds()))

    def _request(self, kwargs: dict[str, str]) -> requests.Response:
        wait = self._last + self.pause - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return super()._request(kwargs)
        finally:
            self._last = time.monotonic()


def default_pause(url: str) -> float:
    """arXiv asks for three seconds between requests; other servers say so with 503 and Retry-After."""
    host = urlparse(url).hostname or ""
    return ARXIV_PAUSE if host == "arxiv.org" or host.endswith(".arxiv.org") else 0.0


@dataclass(frozen=True)
class Source:
    """What an index harvests from: the interface, a set (None: all) and the metadata format."""

    url: str = ARXIV_OAI
    set_spec: str | None = None
    prefix: str = "arXiv"

    @property
    def key(self) -> tuple[str, str, str]:
        return self.url, self.set_spec or "", self.prefix


@dataclass
class HarvestReport:
    """One run, as ``--json`` prints it (``as_dict``) and /metrics counts it (store.harvest_runs)."""

    url: str
    set_spec: str | None
    prefix: str
    from_: str | None = None
    until: str | None = None
    resumed: bool = False  # went on from the last committed page of a killed or failed run
    records: int = 0  # every record the server sent, deleted and unreadable ones included
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0  # records of papers held under another id (duplicates.py)
    deleted: int = 0
    unknown_deleted: int = 0  # deleted records of papers this index never held
    skipped: list[str] = field(default_factory=list)  # unreadable or oversized records: why
    pages: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "set": self.set_spec, "metadata_prefix": self.prefix, "from": self.from_, "until": self.until,
                "resumed": self.resumed, "records": self.records, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "merged": self.merged, "deleted": self.deleted,
                "unknown_deleted": self.unknown_deleted, "skipped": len(self.skipped), "pages": self.pages,
                "seconds": round(self.seconds, 3)}


def check_day(value: str | None, name: str) -> str | None:
    """OAI-PMH's day granularity, YYYY-MM-DD (every repository supports it)."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise InvalidInput(f"--{name} must be a day, YYYY-MM-DD; got {value[:40]!r}") from None


def check_range(from_: str | None, until: str | None) -> tuple[str | None, str | None]:
    from_, until = check_day(from_, "from"), check_day(until, "until")
    if from_ and until and from_ > until:
        raise InvalidInput(f"--from {from_} is after --until {until}")
    return from_, until


def parse_interval(text: str) -> float:
    """'90s', '15m', '24h', '7d' → seconds."""
    match = _INTERVAL.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(f"interval {str(text)[:40]!r}: give a positive number with a unit s, m, h or d (e.g. 24h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def harvest(library: Library, source: Source, from_: str | None = None, until: str | None = None,
            on_page: Callable[[int], None] | None = None, max_retries: int = 5, retry_after: int = 60,
            timeout: float = 60.0, pause: float | None = None) -> HarvestReport:
    """Harvest ``source`` into the library, page by page; ``on_page(records)`` after each committed page.

    Without ``from_`` a run asks from the day the index's last complete run of this source began
    (nothing remembered: everything). A run with ``until`` leaves that day as it is, since it stops
    short of the present. A 503 is retried ``max_retries`` times after the server's Retry-After
    (else ``retry_after`` seconds); HarvestFailed when that is not enough or the server cannot be
    read, with every page committed before kept. Requests are ``pause`` seconds apart (by default
    three at arXiv, as it asks, none elsewhere)."""
    if source.prefix not in PREFIXES:
        raise InvalidInput(f"unknown metadata prefix {source.prefix!r}; choose one of {', '.join(PREFIXES)}")
    from_, until = check_range(from_, until)
    store = library.store.harvests
    state = store.state(*source.key)
    resume = bool(state.token) and from_ in (None, state.run_from) and until == state.run_until
    report = HarvestReport(source.url, source.set_spec, source.prefix, until=until, resumed=resume,
                           from_=state.run_from if resume else from_ or state.next_from)
    started, clock = now(), time.perf_counter()
    run = HarvestState(next_from=state.next_from, run_from=report.from_, run_until=until,
                       run_response_day=state.run_response_day if resume else None, token=state.token if resume else None)
    client = PacedSickle(source.url, iterator=OAIResponseIterator, max_retries=max_retries, retry_status_codes=(503,),
                         default_retry_after=retry_after, timeout=timeout,
                         pause=default_pause(source.url) if pause is None else pause)
    params = {"metadataPrefix": source.prefix, **({"set": source.set_spec} if source.set_spec else {}),
              **({"from": report.from_} if report.from_ else {}), **({"until": until} if until else {})}
    try:
        for page in _pages(client, params, run.token):
            xml = page.xml  # parsed on each access: once per page
            run.run_response_day = run.run_response_day or _response_day(xml)
            records = list(xml.iterfind(f".//{OAI_NS}record"))
            _store_page(library, records, report)
            token = _next_token(xml)
            with library.store.transaction():
                store.put_state(*source.key, HarvestState(run.next_from, run.run_from, run.run_until, run.run_response_day, token))
            crash_point("harvest:page-committed")
            report.pages += 1
            report.records += len(records)
            if on_page:
                on_page(len(records))
    except (oaiexceptions.OAIError, requests.RequestException, etree.XMLSyntaxError, ValueError) as exc:
        message = _failure(source, exc)
        report.seconds = time.perf_counter() - clock
        with library.store.transaction():
            store.add_run(_run_row(source, report, started, message))
        raise HarvestFailed(message) from None
    report.seconds = time.perf_counter() - clock
    # Complete: the next run asks from the day this one began (the server's day, inclusive: a
    # record changed later that day comes again, unchanged or newer).
    next_from = run.next_from if until else (run.run_response_day or run.next_from)
    with library.store.transaction():
        store.put_state(*source.key, HarvestState(next_from=next_from))
        store.add_run(_run_row(source, report, started))
    return report


def _pages(client: Sickle, params: dict[str, str], token: str | None):
    """The run's pages (sickle follows the resumption tokens): from ``token`` when resuming, else
    from the start. 'noRecordsMatch' is no pages; a token the server no longer knows starts over."""
    try:
        if token:
            try:
                yield from client.ListRecords(resumptionToken=token)
                return
            except oaiexceptions.BadResumptionToken:
                log.warning("the server no longer knows resumption token %r: harvesting the run again from its start", token)
        yield from client.ListRecords(**params)
    except oaiexceptions.NoRecordsMatch:
        return


def _response_day(xml: etree._Element) -> str | None:
    stamp = xml.findtext(f"{OAI_NS}responseDate")
    return stamp.strip()[:10] if stamp else None


def _next_token(xml: etree._Element) -> str | None:
    """The page's resumption token; an empty one (or none) marks the last page."""
    text = xml.findtext(f".//{OAI_NS}resumptionToken")
    return text.strip() if text and text.strip() else None


def _store_page(library: Library, records: list, report: HarvestReport) -> None:
    """One page as one ingest, then its deletes. Of several records of one paper the last counts."""
    latest: dict[str, Paper | None] = {}
    for element in records:
        header = element.find(f"{OAI_NS}header")
        identifier = (header.findtext(f"{OAI_NS}identifier") if header is not None else None) or ""
        try:
            if header is not None and header.get("status") == "deleted":
                paper_id = normalise_id(identifier.rsplit(":", 1)[-1])
                latest.pop(paper_id, None)
                latest[paper_id] = None
                continue
            # The reader is papers.py's, over the standard library's tree, as for a file.
            paper = oai_paper(ET.fromstring(etree.tostring(element)))
        except (InvalidRecord, ET.ParseError) as exc:
            report.skipped.append(f"{identifier or 'a record'}: {exc}")
            continue
        latest.pop(paper.id, None)
        latest[paper.id] = paper
    papers, oversized = skip_oversized(library.settings, [paper for paper in latest.values() if paper is not None])
    report.skipped.extend(skip.reason for skip in oversized)
    if papers:
        ingested = ingest(library, papers)
        report.added += len(ingested.added)
        report.updated += len(ingested.updated)
        report.unchanged += len(ingested.unchanged)
        report.merged += len(ingested.merged)
    gone = [paper_id for paper_id, paper in latest.items() if paper is None]
    if gone:
        deleted = delete(library, gone)
        report.deleted += len(deleted)
        report.unknown_deleted += len(gone) - len(deleted)


def _failure(source: Source, exc: Exception) -> str:
    where = source.url
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 503:
            return f"{where} answered 503 (busy) to every retry; try again later or raise --max-retries"
        return f"{where} answered HTTP {status}"
    if isinstance(exc, requests.RequestException):
        return f"could not reach {where}: {exc.__class__.__name__}"
    if isinstance(exc, oaiexceptions.OAIError):
        return f"{where} refused the request ({exc.__class__.__name__}: {str(exc)[:200] or 'no detail'})"
    if isinstance(exc, etree.XMLSyntaxError):
        return f"{where} answered with broken XML: {exc}"
    return f"harvesting {where} failed: {exc}"


def _run_row(source: Source, report: HarvestReport, started: str, error: str | None = None) -> HarvestRun:
    return HarvestRun(*source.key, started_at=started, finished_at=now(), ok=error is None, records=report.records,
                      added=report.added, updated=report.updated, deleted=report.deleted, unchanged=report.unchanged,
                      pages=report.pages, seconds=report.seconds, error=error)


def run_every(job: Callable[[], Any], every: float, sleep: Callable[[float], Any] = time.sleep,
              clock: Callable[[], float] = time.monotonic, runs: int | None = None) -> None:
    """Run ``job`` every ``every`` seconds (start to start; at once when a run took longer), ``runs``
    times or until interrupted. A failed run logs one line and the schedule goes on."""
    done = 0
    while runs is None or done < runs:
        start = clock()
        try:
            job()
        except Exception as exc:  # one bad run (a server down, a full disk) must not end the schedule
            log.error("scheduled run failed: %s", exc)
        done += 1
        if runs is None or done < runs:
            sleep(max(0.0, start + every - clock()))
