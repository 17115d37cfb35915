"""Papers out of paperlens: Atom feeds (feedgen), BibTeX (bibtexparser), HTML digest e-mails (Jinja2).

Each format is written by a library that knows its escaping rules, never by string concatenation:
a title with '&', '%' or '<' must not break a reference manager or a feed reader. Each writer also
passes its text through ``papers.clean_text``: ingest cleans new papers, but a paper stored before
it did may hold characters XML 1.0 forbids, which feedgen refuses and readers choke on.
``feed_document`` is the one place a feed becomes a document (for the API's feed routes, the
CLI's ``user feed``, ``user export`` and ``digest``), so each format has one title and one link.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import unicodedata
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .config import Settings
from .feeds import FeedItem, collection_feed, user_feed
from .filters import Filters
from .library import Library
from .papers import Paper, arxiv_base_id, author_count, author_line, clean_paper, clean_text
from .search import Hit
from .store import UserRow
from .users import get_user

TEMPLATES = Path(__file__).resolve().parent / "web" / "templates"
MEDIA_TYPES = {"json": "application/json", "atom": "application/atom+xml; charset=utf-8",
               "bibtex": "application/x-bibtex; charset=utf-8", "html": "text/html; charset=utf-8"}
FEED_FORMATS: tuple[str, ...] = tuple(MEDIA_TYPES)
FEED_SUFFIX = {"atom": ".atom", "bibtex": ".bib"}  # the route that serves a format: /users/{id}/feed.atom


@dataclass
class ExportItem:
    """One paper as exported: the full record, and why it was recommended when it was."""

    paper: Paper
    score: float | None = None
    reason: dict[str, Any] = field(default_factory=dict)


def export_items(library: Library, hits: list[Hit], reasons: list[dict[str, Any]] | None = None) -> list[ExportItem]:
    """Full records for a list of hits (search, similar, feed), in order, with their reasons."""
    stored = library.store.get_many(library.store.pks_for_ids(hit.id for hit in hits).values())
    papers = {sp.paper.id: sp.paper for sp in stored.values()}
    reasons = reasons or [{} for _ in hits]
    return [ExportItem(papers[h.id], h.score, r) for h, r in zip(hits, reasons) if h.id in papers]


def link_base(settings: Settings, request_base: str | None = None) -> str:
    """Where links point: PAPERLENS_PUBLIC_URL when set (a proxy's address), else the base URL the
    request came to, else (outside a request: the CLI) the address 'paperlens serve' listens on."""
    return (settings.public_url or request_base or f"http://{settings.host}:{settings.port}").rstrip("/")


def paper_link(paper: Paper, base: str) -> str:
    return paper.url or f"{base}/paper/{paper.id}"


def _day(paper: Paper) -> dt.datetime | None:
    if not paper.date:
        return None
    return dt.datetime.fromisoformat(paper.date).replace(tzinfo=dt.timezone.utc)


def reason_text(reason: dict[str, Any]) -> str:
    """'because you liked “X” (0.71), your interest “Y” (0.55)': the reason as one readable line."""
    parts = []
    for item in reason.get("because", []):
        if "interest" in item:
            parts.append(f"your interest “{item['interest']}” ({item['similarity']:.2f})")
        else:
            parts.append(f"“{item['title']}” ({item['similarity']:.2f})")
    if parts:
        return "because of " + ", ".join(parts)
    return reason.get("note", "")


def atom_feed(items: list[ExportItem], title: str, feed_id: str, link: str, base: str) -> bytes:
    """An Atom 1.0 document; entries keep the feed's order, each with its reason in the summary."""
    from feedgen.feed import FeedGenerator

    generator = FeedGenerator()
    generator.id(clean_text(feed_id))
    generator.title(clean_text(title))
    generator.link(href=clean_text(link), rel="alternate")
    generator.author({"name": "paperlens"})
    generator.generator("paperlens")
    now = dt.datetime.now(dt.timezone.utc)
    generator.updated(now)
    for item in items:
        paper = clean_paper(item.paper)
        entry = generator.add_entry(order="append")
        entry.id(paper_link(paper, base))
        entry.title(paper.title or paper.id)
        entry.link(href=paper_link(paper, base))
        summary = paper.abstract
        if item.reason:
            summary = clean_text(f"{reason_text(item.reason)}\n\n{summary}".strip())
        entry.summary(summary)
        for name in paper.authors:
            entry.author({"name": name})
        for category in paper.categories:
            entry.category(term=category)
        day = _day(paper)
        if day:
            entry.published(day)
        entry.updated(day or now)
    return generator.atom_str(pretty=True)


def _key_part(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]", "", ascii_text)


def citation_key(paper: Paper, taken: set[str]) -> str:
    """'smith2024protein': surname, year, first long title word; a letter added when taken."""
    surname = _key_part(paper.authors[0].split()[-1]).lower() if paper.authors and paper.authors[0].split() else ""
    year = (paper.date or "")[:4]
    word = next((_key_part(w).lower() for w in paper.title.split() if len(_key_part(w)) > 3), "")
    base = (surname + year + word) or _key_part(paper.id) or "paper"
    key, suffix = base, 0
    while key in taken:
        suffix += 1
        key = f"{base}{chr(ord('a') + (suffix - 1) % 26)}{'' if suffix <= 26 else suffix}"
    taken.add(key)
    return key


def _balanced(text: str) -> str:
    """BibTeX values are brace-delimited: unbalanced braces in a title would end the value early."""
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            break
    return text if depth == 0 else text.replace("{", "(").replace("}", ")")


VERBATIM_FIELDS = ("url", "eprint")


def bibtex(papers: list[Paper]) -> str:
    """One @misc (or @article-like arXiv e-print) entry per paper, LaTeX-escaped by bibtexparser."""
    import bibtexparser
    from bibtexparser.library import Library as BibLibrary
    from bibtexparser.middlewares import LatexEncodingMiddleware
    from bibtexparser.model import Entry, Field

    library = BibLibrary()
    taken: set[str] = set()
    for paper in map(clean_paper, papers):
        fields = [Field("title", _balanced(paper.title or paper.id))]
        if paper.authors:
            fields.append(Field("author", _balanced(" and ".join(paper.authors))))
        if paper.date:
            fields.append(Field("year", paper.date[:4]))
            if len(paper.date) >= 7:
                fields.append(Field("month", str(int(paper.date[5:7]))))
        if paper.abstract:
            fields.append(Field("abstract", _balanced(paper.abstract)))
        if paper.url:
            fields.append(Field("url", _balanced(paper.url)))
        if arxiv_base_id(paper.id) == paper.id:
            fields += [Field("eprint", paper.id), Field("archivePrefix", "arXiv")]
        if paper.categories:
            fields.append(Field("keywords", ", ".join(paper.categories)))
        library.add(Entry("misc", citation_key(paper, taken), fields))
    class LatexExceptVerbatim(LatexEncodingMiddleware):
        """biblatex reads url and eprint verbatim: escaping them for LaTeX, or wrapping a URL in
        \\url{} as the middleware does, gives a field that is not a link ('url = {\\url{…}}')."""

        def transform_entry(self, entry: Entry, library: BibLibrary) -> Entry:
            verbatim = [f for f in entry.fields if f.key in VERBATIM_FIELDS]
            for f in verbatim:
                entry.pop(f.key)
            entry = super().transform_entry(entry, library)
            for f in verbatim:
                entry.set_field(f)
            return entry

    return bibtexparser.write_string(library, prepend_middleware=[LatexExceptVerbatim(keep_math=True)])


def display_authors(item: Hit | Paper) -> str:
    """A hit's or a paper's authors as the page shows them ('A, B and C', '4 authors')."""
    if isinstance(item, Paper):
        return author_line(item.authors, author_count(item))
    return author_line(item.authors, item.author_count)


def _clean_printed(value: Any) -> Any:
    from markupsafe import Markup

    if isinstance(value, Markup):  # already escaped (|safe): cleaned, still not escaped again
        return Markup(clean_text(str(value)))
    return clean_text(value) if isinstance(value, str) else value


def templates() -> Any:
    """The Jinja2 environment of the web page and the digest, autoescaping HTML; every value it
    prints is cleaned of the characters XML forbids (papers stored before ingest cleaned them)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "xml"]),
                      finalize=_clean_printed)
    env.filters["reason_text"] = reason_text
    env.filters["authors"] = display_authors
    return env


def digest_html(user_name: str, items: list[ExportItem], base: str) -> str:
    links = [paper_link(item.paper, base) for item in items]
    return templates().get_template("digest.html").render(
        user_name=user_name, items=list(zip(items, links)), public_url=base,
        date=dt.date.today().isoformat(),
    )


def send_email(html: str, subject: str, to: str, settings: Settings) -> None:
    """Through ``settings.smtp_host``; STARTTLS and login only when configured."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.smtp_from
    message["To"] = to
    message.set_content("This digest is HTML; open it in a mail reader that shows HTML.")
    message.add_alternative(html, subtype="html")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


# --- feeds as documents ----------------------------------------------------------------------------


@dataclass
class FeedDocument:
    """A user's feed (or a collection's) in one format: ``body`` is a JSON-ready dict for json,
    BibTeX or HTML text, or Atom as UTF-8 bytes; ``count`` is how many papers it holds."""

    user: UserRow
    title: str
    link: str
    format: str
    items: list[FeedItem]
    body: dict[str, Any] | str | bytes
    count: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def text(self) -> str:
        return self.body.decode() if isinstance(self.body, bytes) else str(self.body)


def feed_title(user: UserRow, collection: str | None = None) -> str:
    return f"paperlens: more like the collection {collection}" if collection else f"paperlens feed of {user.name}"


def feed_link(settings: Settings, user_id: int, format: str = "json", filters: Filters | None = None,
              mode: str | None = None, collection: str | None = None, base: str | None = None) -> str:
    """Where the API serves this feed, under ``link_base``: the link of a feed written outside a request."""
    path = f"/users/{user_id}" + (f"/collections/{quote(collection, safe='')}" if collection else "")
    query = [("since", filters.since), ("until", filters.until), *(("category", c) for c in filters.categories),
             ("min_popularity", filters.min_popularity), *(("author", a) for a in filters.authors)] if filters else []
    query = [(key, value) for key, value in [*query, ("mode", mode)] if value is not None]
    return f"{base or link_base(settings)}{path}/feed{FEED_SUFFIX.get(format, '')}" + (f"?{urlencode(query)}" if query else "")


def secret_feed_urls(base: str, secret: str) -> dict[str, str]:
    """Where a secret feed is served under ``link_base``, by format: /feeds/{secret}.atom and .bib."""
    return {format: f"{base}/feeds/{secret}{suffix}" for format, suffix in FEED_SUFFIX.items()}


def feed_document(library: Library, user_id: int, k: int, format: str = "json", filters: Filters | None = None,
                  link: str | None = None, mode: str | None = None, collection: str | None = None,
                  request_base: str | None = None) -> FeedDocument:
    """The user's feed, or more like one of their collections, as json / atom / bibtex / html (the digest).

    ``link`` is the URL that serves the document (the request's, in the API); by default ``feed_link``.
    Papers link under ``link_base`` (``request_base``: the base URL of the request, in the API)."""
    if format not in MEDIA_TYPES:
        raise ValueError(f"unknown feed format {format!r}")
    user = get_user(library, user_id)
    if collection is None:
        items = user_feed(library, user_id, k, filters, mode)
    else:
        items = collection_feed(library, user_id, collection, k, filters, mode)
    title = feed_title(user, collection)
    base = link_base(library.settings, request_base)
    link = link or feed_link(library.settings, user_id, format, filters, mode, collection, base)
    if format == "json":
        results = [{**item.hit.__dict__, "reason": item.reason, "interest": item.interest} for item in items]
        return FeedDocument(user, title, link, format, items, {"user": user_id, "results": results}, len(items))
    exported = export_items(library, [item.hit for item in items], [item.reason for item in items])
    body: str | bytes
    if format == "atom":
        body = atom_feed(exported, title, link, link, base)
    elif format == "bibtex":
        body = bibtex([item.paper for item in exported])
    else:
        body = digest_html(user.name, exported, base)
    return FeedDocument(user, title, link, format, items, body, len(exported))
