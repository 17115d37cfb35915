"""The web page: server-rendered Jinja2 templates, a stylesheet and a little plain JavaScript.

Pages read; the buttons write through the JSON API (``/users/...``) with fetch, so the page and
the API can never disagree. The current user is a cookie holding their id, nothing more: this is
a personal tool on a trusted network, not an account system.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .. import users as user_ops
from ..api_deps import LibraryDep
from ..errors import InvalidInput, PaperlensError, PaperNotFound, UserNotFound
from ..exports import templates
from ..feeds import user_feed
from ..library import Library, resolve_ids
from ..limits import check_paper_id
from ..search import search_text, similar_to_paper
from ..store import UserRow

STATIC = Path(__file__).resolve().parent / "static"
USER_COOKIE = "paperlens_user"
PAGE_K = 20


def current_user(library: Library, request: Request) -> UserRow | None:
    """The user named by the cookie, or None when it is missing, malformed or stale.

    A cookie with a bare user id is only safe in open mode (loopback, no API keys); when the
    server has keys, the page offers search and paper pages only, and feeds go through the API
    with the user's token."""
    if library.settings.api_keys():
        return None
    raw = request.cookies.get(USER_COOKIE, "")
    if not raw.isdigit():
        return None
    try:
        return user_ops.get_user(library, int(raw))
    except UserNotFound:
        return None


def _kinds_by_paper(library: Library, user: UserRow | None) -> dict[str, list[str]]:
    if user is None:
        return {}
    kinds: dict[str, list[str]] = {}
    for row in user_ops.list_interactions(library, user.id):
        kinds.setdefault(row.paper_id, []).append(row.kind)
    return kinds


def _render(library: Library, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    user = current_user(library, request)
    html = templates().get_template(name).render(
        user=user, kinds=_kinds_by_paper(library, user), papers_in_index=len(library),
        personal=not library.settings.api_keys(), **context
    )
    return HTMLResponse(html, status_code=status)


def search_page(library: LibraryDep, request: Request, q: str = "") -> HTMLResponse:
    error, hits = None, []
    if q.strip():
        try:
            hits = search_text(library, q, PAGE_K)
        except PaperlensError as exc:
            error = str(exc)
    return _render(library, request, "search.html", status=422 if error else 200, q=q, hits=hits, error=error)


def paper_page(library: LibraryDep, request: Request, paper_id: str) -> HTMLResponse:
    """The id is checked as api_deps.PaperId checks it, but a bad one gets a page, not JSON."""
    try:
        paper_id = check_paper_id(paper_id)
    except InvalidInput as exc:
        return _render(library, request, "message.html", status=422, message=str(exc))
    stored = library.store.get(resolve_ids(library, [paper_id]).get(paper_id, paper_id))
    if stored is None:
        return _render(library, request, "message.html", status=404, message=str(PaperNotFound(paper_id)))
    return _render(library, request, "paper.html", paper=stored.paper, similar=similar_to_paper(library, paper_id, 10))


def feed_page(library: LibraryDep, request: Request) -> HTMLResponse:
    user = current_user(library, request)
    items = user_feed(library, user.id, PAGE_K) if user else []
    return _render(library, request, "feed.html", items=items)


def add_api_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from files installed with the fastapi-offline package, not
    FastAPI's default CDN: the pages work on a machine without internet (create_app turns the
    default pages off)."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    assets = Path(fastapi_offline.__file__).resolve().parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    title = f"{app.title} API"

    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=title, swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css", swagger_favicon_url="/docs-assets/favicon.png")

    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=title, redoc_js_url="/docs-assets/redoc.standalone.js",
                              redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False)

    app.add_api_route("/docs", swagger_ui, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)


def add_web_routes(app: FastAPI) -> None:
    add_api_docs(app)
    app.add_api_route("/", search_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/feed", feed_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/paper/{paper_id:path}", paper_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
