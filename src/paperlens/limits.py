"""Bounds on what a request may ask for, read from Settings and shared by the API and the CLI.

Every check raises InvalidInput (or PayloadTooLarge) with a message that names the limit, so the
API answers 4xx and the CLI prints one line and exits 1; nothing oversized reaches the encoder.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import InvalidInput
from .papers import PAPERLENS, InvalidRecord, Paper, Skipped, lookup_keys

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def check_paper_id(paper_id: str) -> str:
    """A path or query id must be one the store could hold: '../x', NUL or 500 characters are 422, not 404."""
    try:
        scheme, value = lookup_keys(paper_id)[0]
    except InvalidRecord as exc:
        raise InvalidInput(str(exc)) from None
    # an external id (a DOI) may hold characters no stored id does: it is looked up as it was given
    return value if scheme == PAPERLENS else paper_id.strip()


def check_paper_sizes(settings: Settings, papers: list[Paper]) -> None:
    """Refuse the whole batch if one text is over the limits: the caller trims and resends."""
    for number, paper in enumerate(papers, start=1):
        oversized = paper_size_problem(settings, paper)
        if oversized:
            raise InvalidInput(f"{paper_label(number, paper)}: {oversized}")


def check_paper_count(settings: Settings, count: int) -> None:
    """Per request (API); the CLI reads files of any length."""
    if count > settings.max_papers_per_request:
        raise InvalidInput(f"{count} papers in one request; the limit is {settings.max_papers_per_request}")


def skip_oversized(settings: Settings, papers: list[Paper]) -> tuple[list[Paper], list[Skipped]]:
    """For files: an oversized record is skipped and reported like an unreadable one, the rest go in."""
    kept, skipped = [], []
    for number, paper in enumerate(papers, start=1):
        problem = paper_size_problem(settings, paper)
        if problem:
            skipped.append(Skipped(None, f"{paper_label(number, paper)}: {problem}"))
        else:
            kept.append(paper)
    return kept, skipped


def paper_label(number: int, paper: Paper) -> str:
    """'paper 2 (“Title…”)': where the sender finds it, by position (1-based) and title; not the
    id, which for a paper without one is a hash the sender never saw."""
    title = paper.title[:60] + ("…" if len(paper.title) > 60 else "")
    return f"paper {number}" + (f" (“{title}”)" if title else "")


def paper_size_problem(settings: Settings, paper: Paper) -> str | None:
    """Why this paper is too big to ingest, or None: the CLI skips such records, the API refuses them."""
    if len(paper.title) > settings.max_title_chars:
        return f"title is {len(paper.title)} characters; the limit is {settings.max_title_chars}"
    if len(paper.abstract) > settings.max_abstract_chars:
        return f"abstract is {len(paper.abstract)} characters; the limit is {settings.max_abstract_chars}"
    return None


def check_example_count(settings: Settings, count: int, what: str) -> None:
    if count > settings.max_examples:
        raise InvalidInput(f"at most {settings.max_examples} {what} papers, got {count}")


def check_name(settings: Settings, name: str, what: str = "index name") -> str:
    """A name that becomes one folder or file under a root: no separators, no '..', no NUL, no hidden files."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{what} is empty")
    if len(name) > settings.max_name_chars:
        raise InvalidInput(f"{what} is {len(name)} characters; the limit is {settings.max_name_chars}")
    if any(bad in name for bad in ("/", "\\", "\x00")) or name.startswith(".") or ".." in name:
        raise InvalidInput(f"{what} {name[:80]!r} may not contain '/', '\\\\', '..', NUL or start with '.'")
    if any(ord(ch) < 32 for ch in name):
        raise InvalidInput(f"{what} {name[:80]!r} contains control characters")
    return name


def folder_under(settings: Settings, root: Path, name: str, what: str = "index name") -> Path:
    """root/name, checked twice: by the name's alphabet, then by where the resolved path lands."""
    folder = (Path(root) / check_name(settings, name, what)).resolve()
    if folder.parent != Path(root).resolve():
        raise InvalidInput(f"{what} {name!r} points outside {root}")
    return folder


class BodyLimit:
    """ASGI middleware: 413 before a body over ``max_bytes`` is read whole.

    Content-Length is checked before the app runs; a chunked body is counted as it streams and cut
    off at the limit, so a client cannot make the server buffer more than ``max_bytes``.
    """

    def __init__(self, app: Callable, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        state = {"received": 0, "refused": False, "started": False}

        async def counted_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refused"] = True
                    if not state["started"]:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 has gone out; whatever the app answers to the cut-off body is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body is over the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
