"""The web page: server-rendered Jinja2 templates, a stylesheet and a little plain JavaScript.

Pages read; their forms write, posting to ``/web/...`` with the session's CSRF token, and the
handlers call the same users.py functions as the JSON API. Like / dislike / save post with fetch
(the page keeps its place); without JavaScript every form still works, answered by a redirect.
Who is signed in is the session (session.py): a signed cookie, never a bare id. In open mode a
visitor makes a user by typing a name (or picks one by id); with API keys they sign in with the
token ``paperlens user add`` printed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import users as user_ops
from ..api_deps import LibraryDep
from ..errors import Forbidden, InvalidInput, PaperlensError, PaperNotFound, Unauthorized
from ..exports import templates
from ..feeds import user_feed
from ..imports import ImportReport, import_library
from ..library import Library, resolve_id, resolve_ids
from ..limits import check_paper_id
from ..search import search_text, similar_to_paper
from ..security import session_proof
from ..store import UserRow
from ..trending import front_page
from .session import Session, sign_in_with_token, signed_in_user

STATIC = Path(__file__).resolve().parent / "static"
PAGE_K = 20
TRENDING_K = 5
PAGE_KINDS = ("like", "dislike", "save")

# Form fields default to "" so a missing one is the page's own message, not FastAPI's JSON 422.
FormText = Annotated[str, Form(max_length=10_000)]
Back = Annotated[str, Form(alias="next", max_length=2_000)]  # the page to return to


def _kinds_by_paper(library: Library, user: UserRow | None) -> dict[str, list[str]]:
    if user is None:
        return {}
    kinds: dict[str, list[str]] = {}
    for row in user_ops.list_interactions(library, user.id):
        kinds.setdefault(row.paper_id, []).append(row.kind)
    return kinds


def _render(library: Library, request: Request, name: str, status: int = 200, session: Session | None = None,
            here: str | None = None, **context: Any) -> HTMLResponse:
    """``here``: where the page's forms come back to (this page, unless it answers a form)."""
    session = session or Session(request)
    user = signed_in_user(library, session)
    here = here or request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = templates().get_template(name).render(
        user=user, kinds=_kinds_by_paper(library, user), papers_in_index=len(library),
        personal=not library.settings.api_keys(), csrf=session.csrf, here=here, **context
    )
    # The page holds the form token and the user's own marks: no shared cache keeps it.
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    return session.save(response)


def search_page(library: LibraryDep, request: Request, q: str = "") -> HTMLResponse:
    """Search results, or with no query the front page: what is trending (trending.front_page)."""
    error, hits, trend = None, [], None
    if q.strip():
        try:
            hits = search_text(library, q, PAGE_K)
        except PaperlensError as exc:
            error = str(exc)
    elif len(library):
        trend = front_page(library, TRENDING_K)
    return _render(library, request, "search.html", status=422 if error else 200, q=q, hits=hits, error=error, trend=trend)


def paper_page(library: LibraryDep, request: Request, paper_id: str) -> HTMLResponse:
    """The id is checked as api_deps.PaperId checks it, but a bad one gets a page, not JSON."""
    try:
        paper_id = check_paper_id(paper_id)
    except InvalidInput as exc:
        return _render(library, request, "message.html", status=422, message=str(exc))
    stored = library.store.get(resolve_ids(library, [paper_id]).get(paper_id, paper_id))
    if stored is None:
        return _render(library, request, "message.html", status=404, message=str(PaperNotFound(paper_id)))
    session = Session(request)
    user = signed_in_user(library, session)
    collections = user_ops.list_collections(library, user.id) if user else []
    return _render(library, request, "paper.html", session=session, paper=stored.paper, similar=similar_to_paper(library, paper_id, 10),
                   collections=collections, in_collections=[c.name for c in collections if stored.paper.id in c.paper_ids])


def feed_page(library: LibraryDep, request: Request) -> HTMLResponse:
    session = Session(request)
    user = signed_in_user(library, session)
    items = user_feed(library, user.id, PAGE_K) if user else []
    return _render(library, request, "feed.html", session=session, items=items)


def collections_page(library: LibraryDep, request: Request) -> HTMLResponse:
    session = Session(request)
    user = signed_in_user(library, session)
    shelves = []
    for collection in user_ops.list_collections(library, user.id) if user else []:
        papers = [(pid, stored.paper.title if (stored := library.store.get(pid)) else pid) for pid in collection.paper_ids]
        shelves.append((collection.name, papers))
    return _render(library, request, "collections.html", session=session, shelves=shelves)


def sign_in_page(library: LibraryDep, request: Request) -> HTMLResponse:
    return _render(library, request, "sign-in.html")


# --- forms -------------------------------------------------------------------------------------


def _local(target: str) -> str:
    """Where a form sends the browser back: a path on this server, never another site."""
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or "\\" in target or parts.scheme or parts.netloc or not target.isprintable():
        return "/"
    return target


def _form(library: Library, request: Request, csrf: str, back: str, action: Callable[[Session, UserRow | None], Any],
          needs_user: bool = True, error_page: str = "message.html", answer: bool = True) -> Any:
    """Check the CSRF token (and that someone is signed in), run the action, and answer: JSON to
    the page's fetch, else a redirect back; a refusal is a page (or JSON) with its message.
    Without ``answer``, the action's result for the caller to answer with (a refusal is still answered here)."""
    session = Session(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        session.check_csrf(csrf)
        user = signed_in_user(library, session)
        if needs_user and user is None:
            raise Unauthorized("sign in first" if library.settings.api_keys() else "enter your name first")
        result = action(session, user)
    except PaperlensError as exc:
        if wants_json:
            return session.save(JSONResponse({"detail": str(exc)}, status_code=exc.status_code))
        return _render(library, request, error_page, status=exc.status_code, session=session, here=_local(back), message=str(exc))
    if not answer:
        return result
    if wants_json:
        return session.save(JSONResponse(result or {}))
    return session.save(RedirectResponse(_local(back), status_code=303))


def start_form(library: LibraryDep, request: Request, name: FormText = "", csrf: FormText = "", back: Back = "/") -> Response:
    """Open mode: a new user by name, signed in with the token made for them."""
    def start(session: Session, _user: UserRow | None) -> None:
        if library.settings.api_keys():
            raise Forbidden("on this server users are made by its admin ('paperlens user add NAME'); sign in with your token")
        new = user_ops.create_user(library, name)
        session.sign_in(new.id, session_proof(library.store.users.token_hash(new.id) or ""))

    return _form(library, request, csrf, back, start, needs_user=False)


def sign_in_form(library: LibraryDep, request: Request, token: FormText = "", user_id: FormText = "", csrf: FormText = "",
                 back: Back = "/") -> Response:
    """With the user's token; in open mode also by id (a proof-less session, void once keys are on)."""
    def sign_in(session: Session, _user: UserRow | None) -> None:
        if token.strip() or library.settings.api_keys():
            sign_in_with_token(library, session, token)
        elif user_id.strip().isdigit() and len(user_id.strip()) < 19:
            session.sign_in(user_ops.get_user(library, int(user_id)).id, "")
        else:
            raise InvalidInput("enter your token, or a user id")

    return _form(library, request, csrf, back, sign_in, needs_user=False, error_page="sign-in.html")


def sign_out_form(library: LibraryDep, request: Request, csrf: FormText = "", back: Back = "/") -> Response:
    return _form(library, request, csrf, back, lambda session, _user: session.sign_out(), needs_user=False)


def mark_form(library: LibraryDep, request: Request, paper_id: FormText = "", kind: FormText = "", csrf: FormText = "",
              back: Back = "/") -> Response:
    """Toggle one mark on a paper (like and dislike replace each other); answers the paper's marks."""
    def mark(_session: Session, user: UserRow | None) -> dict[str, Any]:
        if kind not in PAGE_KINDS:
            raise InvalidInput(f"unknown mark {kind[:40]!r}; choose one of {', '.join(PAGE_KINDS)}")
        stored_id = resolve_id(library, check_paper_id(paper_id))
        marks = {row.kind for row in user_ops.list_interactions(library, user.id) if row.paper_id == stored_id}
        if kind in marks:
            user_ops.remove_interaction(library, user.id, stored_id, kind)
        else:
            user_ops.record_interaction(library, user.id, stored_id, kind)
        now = [row.kind for row in user_ops.list_interactions(library, user.id) if row.paper_id == stored_id]
        return {"paper_id": stored_id, "kinds": now}

    return _form(library, request, csrf, back, mark)


def collect_form(library: LibraryDep, request: Request, name: FormText = "", paper_id: FormText = "", csrf: FormText = "",
                 back: Back = "/") -> Response:
    """Add a paper to a collection, making the collection when it is new."""
    def collect(_session: Session, user: UserRow | None) -> None:
        stored_id = resolve_id(library, check_paper_id(paper_id))
        user_ops.put_collection(library, user.id, name)
        user_ops.add_to_collection(library, user.id, name, stored_id)

    return _form(library, request, csrf, back, collect)


def uncollect_form(library: LibraryDep, request: Request, name: FormText = "", paper_id: FormText = "", csrf: FormText = "",
                   back: Back = "/") -> Response:
    def uncollect(_session: Session, user: UserRow | None) -> None:
        user_ops.remove_from_collection(library, user.id, name, check_paper_id(paper_id))

    return _form(library, request, csrf, back, uncollect)


def delete_collection_form(library: LibraryDep, request: Request, name: FormText = "", csrf: FormText = "",
                           back: Back = "/collections") -> Response:
    return _form(library, request, csrf, back, lambda _session, user: user_ops.delete_collection(library, user.id, name))


def import_form(library: LibraryDep, request: Request, file: Annotated[UploadFile | None, File()] = None, csrf: FormText = "",
                as_: Annotated[str, Form(alias="as", max_length=20)] = "like", collection: FormText = "", back: Back = "/feed") -> Response:
    """A reference file (imports.py) as the signed-in user's likes, saves or a collection; answers with what each entry became."""
    def run(_session: Session, user: UserRow | None) -> ImportReport:
        if file is None or not file.filename:
            raise InvalidInput("choose a file to import")
        return import_library(library, user.id, file.file.read(), filename=file.filename, target=as_,
                              collection=collection.strip() if as_ == "collection" else None, limit_new=True)

    report = _form(library, request, csrf, back, run, answer=False)
    if not isinstance(report, ImportReport):
        return report
    return _render(library, request, "imported.html", here="/feed", report=report, filename=file.filename)


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
    app.add_api_route("/collections", collections_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/sign-in", sign_in_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    for path, form in (("/web/start", start_form), ("/web/sign-in", sign_in_form), ("/web/sign-out", sign_out_form),
                       ("/web/mark", mark_form), ("/web/collections/add", collect_form),
                       ("/web/collections/remove", uncollect_form), ("/web/collections/delete", delete_collection_form),
                       ("/web/import", import_form)):
        app.add_api_route(path, form, methods=["POST"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
