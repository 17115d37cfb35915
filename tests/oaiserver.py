"""A small OAI-PMH server for the harvest tests: arXiv-style ListRecords pages over http.server.

It serves what the test puts in ``records`` (arXiv metadata, or a deleted header), ``page_size``
records a page joined by resumption tokens, filters by ``from``/``until`` on the datestamp, answers
'noRecordsMatch' when nothing matches, and answers 503 with Retry-After as often as ``busy`` says
before the page with that number (0-based). Every request's parameters are kept in ``requests``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')


@dataclass
class OaiRecord:
    id: str
    datestamp: str
    title: str = ""
    abstract: str = ""
    created: str = "2024-01-02"
    categories: str = "cs.LG"
    authors: tuple[tuple[str, str], ...] = (("Lovelace", "Ada"),)
    deleted: bool = False

    def xml(self) -> str:
        status = ' status="deleted"' if self.deleted else ""
        header = (f"<header{status}><identifier>oai:arXiv.org:{self.id}</identifier>"
                  f"<datestamp>{self.datestamp}</datestamp><setSpec>cs</setSpec></header>")
        if self.deleted:
            return f"<record>{header}</record>"
        authors = "".join(f"<author><keyname>{escape(k)}</keyname><forenames>{escape(f)}</forenames></author>" for k, f in self.authors)
        return (f"<record>{header}<metadata><arXiv xmlns=\"http://arxiv.org/OAI/arXiv/\"><id>{self.id}</id>"
                f"<created>{self.created}</created><authors>{authors}</authors><title>{escape(self.title)}</title>"
                f"<categories>{self.categories}</categories><abstract>{escape(self.abstract)}</abstract></arXiv></metadata></record>")


@dataclass
class OaiServer:
    records: list[OaiRecord] = field(default_factory=list)
    page_size: int = 2
    busy: dict[int, int] = field(default_factory=dict)  # page number → 503s still to answer before it
    retry_after: Callable[[], str] = lambda: "1"  # the 503's Retry-After: seconds, or an HTTP date
    expired: set[str] = field(default_factory=set)  # tokens to answer badResumptionToken to, once each
    requests: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each request
    url: str = ""

    def page(self, params: dict[str, str]) -> tuple[int, dict[str, str], str]:
        self.requests.append(params)
        self.times.append(time.monotonic())
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = f"{HEAD}<responseDate>{now}</responseDate><request verb=\"ListRecords\">{self.url}</request>"
        if params.get("verb") != "ListRecords":
            return 200, {}, f'{head}<error code="badVerb">only ListRecords here</error></OAI-PMH>'
        token = params.get("resumptionToken")
        if token is not None:
            try:
                start, until, offset = token.split("|")
                offset_n = int(offset)
            except ValueError:
                start = until = ""
                offset_n = -1
            if token in self.expired or offset_n < 0:
                self.expired.discard(token)
                return 200, {}, f'{head}<error code="badResumptionToken">unknown token</error></OAI-PMH>'
        else:
            start, until, offset_n = params.get("from", ""), params.get("until", ""), 0
        number = offset_n // self.page_size
        if self.busy.get(number, 0) > 0:
            self.busy[number] -= 1
            return 503, {"Retry-After": self.retry_after()}, "busy"
        matching = [r for r in self.records if (not start or r.datestamp >= start) and (not until or r.datestamp <= until)]
        if not matching:
            return 200, {}, f'{head}<error code="noRecordsMatch">nothing in that range</error></OAI-PMH>'
        chunk = matching[offset_n:offset_n + self.page_size]
        after = offset_n + self.page_size
        next_token = f"{start}|{until}|{after}" if after < len(matching) else ""
        body = "".join(record.xml() for record in chunk)
        resumption = (f'<resumptionToken cursor="{offset_n}" completeListSize="{len(matching)}">{next_token}</resumptionToken>'
                      if next_token or offset_n else "")
        return 200, {}, f"{head}<ListRecords>{body}{resumption}</ListRecords></OAI-PMH>"


def serve(server: OaiServer) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start ``server`` on a free loopback port (its ``url`` set); stop with ``httpd.shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            params = {key: values[-1] for key, values in parse_qs(urlparse(self.path).query).items()}
            status, headers, body = server.page(params)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}/oai"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
