"""HTTP routes of personal feeds: users, interactions, interests, collections and their feeds,
and imports of a reference manager's library.

Thin handlers over users.py, feeds.py, imports.py and exports.py (``feed_document``: the same feed as the CLI
writes), added to the app by ``add_feed_routes``, with the web page. Shared parameters and their checks: api_deps.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from . import imports
from . import users as user_ops
from .api_deps import (
    ATOM_DOC,
    BIBTEX_DOC,
    FiltersDep,
    KQuery,
    LibraryDep,
    ModeQuery,
    PaperId,
    WriteAccess,
    request_link_base,
)
from .errors import InvalidInput
from .exports import feed_document
from .library import Library
from .search import Filters, Hit
from .security import require_user
from .store import CollectionRow, InteractionRow

FEED_DOC = {200: {"content": {"application/atom+xml": {"schema": {"type": "string"}},
                              "application/x-bibtex": {"schema": {"type": "string"}}},
                  "description": "the feed as JSON, or as Atom / BibTeX with format=atom / format=bibtex"}}


# --- models ------------------------------------------------------------------------------------


class UserIn(BaseModel):
    name: str = Field(..., min_length=1, max_length=user_ops.MAX_NAME_CHARS)


@dataclass
class UserOut(user_ops.UserSummary):
    token: str | None = None  # only in the answer to POST /users: send it as X-User-Token; it is not stored


class InteractionIn(BaseModel):
    paper_id: str = Field(..., min_length=1, max_length=200)
    kind: str = Field(..., description="like, dislike, save, seen or not_interested")


class InteractionOut(BaseModel):
    paper_id: str
    kind: str
    created_at: str


class Interactions(BaseModel):
    interactions: list[InteractionOut]


class InterestsIn(BaseModel):
    interests: list[str] = Field(..., max_length=user_ops.MAX_INTERESTS, description="free text, e.g. 'video question answering'")


class InterestsOut(BaseModel):
    interests: list[str]


class CollectionOut(BaseModel):
    name: str
    created_at: str
    papers: list[str]


class Collections(BaseModel):
    collections: list[CollectionOut]


class CollectionPaperIn(BaseModel):
    paper_id: str = Field(..., min_length=1, max_length=200)


class Deleted(BaseModel):
    deleted: int | str


@dataclass
class FeedEntry(Hit):
    """A hit plus why it is in the feed: {"because": [{"paper_id", "title", "similarity"} | {"interest", "similarity"}]},
    and which of the user's interests (clusters) it was picked for."""

    reason: dict[str, Any] = field(default_factory=dict)
    interest: int = 0


class Feed(BaseModel):
    user: int
    results: list[FeedEntry]


# --- helpers ---------------------------------------------------------------------------------------


Format = Literal["json", "bibtex", "atom"]


def _user_out(library: Library, user_id: int) -> UserOut:
    return UserOut(**user_ops.summarise_user(library, user_id).__dict__)


def _interaction_out(row: InteractionRow) -> InteractionOut:
    return InteractionOut(paper_id=row.paper_id, kind=row.kind, created_at=row.created_at)


def _collection_out(row: CollectionRow) -> CollectionOut:
    return CollectionOut(name=row.name, created_at=row.created_at, papers=row.paper_ids)


def feed_response(library: Library, request: Request, user_id: int, k: int, fmt: Format, filters: Filters,
                  mode: str | None, collection: str | None = None) -> Any:
    """JSON (checked against ``Feed``) or the Atom / BibTeX text, linked to the URL that was asked for."""
    base = request_link_base(library, request)
    link = base + request.url.path.removeprefix(request.scope.get("root_path", "")) + (f"?{request.url.query}" if request.url.query else "")
    document = feed_document(library, user_id, k, fmt, filters, link, mode, collection, request_base=base)
    return document.body if fmt == "json" else Response(document.body, media_type=document.media_type)


# --- routes ----------------------------------------------------------------------------------------


# Access (security.py): creating a user is a write (X-API-Key when the server has keys); everything
# under /users/{user_id} needs that user's X-User-Token or an admin key. Open mode lets all through.
router = APIRouter()
user_router = APIRouter(dependencies=[Depends(require_user)])


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"], dependencies=WriteAccess)
def create_user(library: LibraryDep, body: UserIn) -> UserOut:
    user = user_ops.create_user(library, body.name)
    out = _user_out(library, user.id)
    out.token = user.token
    return out


class Users(BaseModel):
    users: list[user_ops.UserSummary]


@router.get("/users", response_model=Users, tags=["users"], dependencies=WriteAccess)
def list_users(library: LibraryDep) -> Users:
    """Every user (without tokens); an admin key when the server has keys, as creating one."""
    return Users(users=user_ops.list_users(library))


@user_router.get("/users/{user_id}", response_model=UserOut, tags=["users"])
def get_user(library: LibraryDep, user_id: int) -> UserOut:
    return _user_out(library, user_id)


@user_router.delete("/users/{user_id}", response_model=Deleted, tags=["users"])
def delete_user(library: LibraryDep, user_id: int) -> Deleted:
    user_ops.delete_user(library, user_id)
    return Deleted(deleted=user_id)


@user_router.post("/users/{user_id}/interactions", response_model=InteractionOut, status_code=201, tags=["users"])
async def add_interaction(library: LibraryDep, user_id: int, body: InteractionIn) -> InteractionOut:
    # async, its write on the thread pool: one hand-over a request (api.py's writes say why)
    return _interaction_out(await run_in_threadpool(user_ops.record_interaction, library, user_id, body.paper_id, body.kind))


@user_router.get("/users/{user_id}/interactions", response_model=Interactions, tags=["users"])
def list_interactions(library: LibraryDep, user_id: int, kind: str | None = None) -> Interactions:
    return Interactions(interactions=[_interaction_out(r) for r in user_ops.list_interactions(library, user_id, kind)])


@user_router.delete("/users/{user_id}/interactions/{paper_id:path}", response_model=Deleted, tags=["users"])
def delete_interaction(library: LibraryDep, user_id: int, paper_id: PaperId, kind: str | None = None) -> Deleted:
    return Deleted(deleted=user_ops.remove_interaction(library, user_id, paper_id, kind))


@user_router.put("/users/{user_id}/interests", response_model=InterestsOut, tags=["users"])
def put_interests(library: LibraryDep, user_id: int, body: InterestsIn) -> InterestsOut:
    return InterestsOut(interests=user_ops.set_interests(library, user_id, body.interests))


@user_router.get("/users/{user_id}/interests", response_model=InterestsOut, tags=["users"])
def get_interests(library: LibraryDep, user_id: int) -> InterestsOut:
    return InterestsOut(interests=[i.text for i in user_ops.get_interests(library, user_id)])


class EmailIn(BaseModel):
    email: str = Field(..., min_length=1, max_length=2 * user_ops.MAX_EMAIL_CHARS, description="one address, e.g. ada@example.org")


class EmailOut(BaseModel):
    email: str | None  # None: no digests ('paperlens digest --all' skips the user)


@user_router.get("/users/{user_id}/email", response_model=EmailOut, tags=["users"])
def get_email(library: LibraryDep, user_id: int) -> EmailOut:
    return EmailOut(email=user_ops.get_email(library, user_id))


@user_router.put("/users/{user_id}/email", response_model=EmailOut, tags=["users"])
def put_email(library: LibraryDep, user_id: int, body: EmailIn) -> EmailOut:
    """Where the user's digests go ('paperlens digest --all' and 'paperlens harvest --digest')."""
    return EmailOut(email=user_ops.set_email(library, user_id, body.email))


@user_router.delete("/users/{user_id}/email", response_model=EmailOut, tags=["users"])
def delete_email(library: LibraryDep, user_id: int) -> EmailOut:
    return EmailOut(email=user_ops.set_email(library, user_id, None))


@user_router.get("/users/{user_id}/feed", tags=["feeds"], response_model=Feed, responses=FEED_DOC)
def get_feed(library: LibraryDep, request: Request, filters: FiltersDep, user_id: int, k: KQuery = 10,
             format: Format = "json", mode: ModeQuery = None) -> Feed | Response:
    """Ranked for the user; ``format=bibtex`` or ``atom`` for the same list in those formats."""
    return feed_response(library, request, user_id, k, format, filters, mode)


@user_router.get("/users/{user_id}/feed.atom", tags=["feeds"], response_class=Response, responses=ATOM_DOC)
def get_feed_atom(library: LibraryDep, request: Request, filters: FiltersDep, user_id: int, k: KQuery = 20,
                  mode: ModeQuery = None) -> Response:
    return feed_response(library, request, user_id, k, "atom", filters, mode)


@user_router.get("/users/{user_id}/feed.bib", tags=["feeds"], response_class=Response, responses=BIBTEX_DOC)
def get_feed_bib(library: LibraryDep, request: Request, filters: FiltersDep, user_id: int, k: KQuery = 10,
                 mode: ModeQuery = None) -> Response:
    return feed_response(library, request, user_id, k, "bibtex", filters, mode)


@user_router.get("/users/{user_id}/collections", response_model=Collections, tags=["collections"])
def list_collections(library: LibraryDep, user_id: int) -> Collections:
    return Collections(collections=[_collection_out(c) for c in user_ops.list_collections(library, user_id)])


@user_router.put("/users/{user_id}/collections/{name}", response_model=CollectionOut, tags=["collections"],
                 responses={201: {"model": CollectionOut, "description": "the collection was created"}})
def put_collection(library: LibraryDep, user_id: int, name: str, response: Response) -> CollectionOut:
    collection, created = user_ops.put_collection(library, user_id, name)
    response.status_code = 201 if created else 200
    return _collection_out(collection)


@user_router.get("/users/{user_id}/collections/{name}", response_model=CollectionOut, tags=["collections"])
def get_collection(library: LibraryDep, user_id: int, name: str) -> CollectionOut:
    return _collection_out(user_ops.get_collection(library, user_id, name))


@user_router.delete("/users/{user_id}/collections/{name}", response_model=Deleted, tags=["collections"])
def delete_collection(library: LibraryDep, user_id: int, name: str) -> Deleted:
    user_ops.delete_collection(library, user_id, name)
    return Deleted(deleted=name)


@user_router.post("/users/{user_id}/collections/{name}/papers", response_model=CollectionOut, status_code=201, tags=["collections"])
def add_collection_paper(library: LibraryDep, user_id: int, name: str, body: CollectionPaperIn) -> CollectionOut:
    return _collection_out(user_ops.add_to_collection(library, user_id, name, body.paper_id))


@user_router.delete("/users/{user_id}/collections/{name}/papers/{paper_id:path}", response_model=CollectionOut, tags=["collections"])
def remove_collection_paper(library: LibraryDep, user_id: int, name: str, paper_id: PaperId) -> CollectionOut:
    return _collection_out(user_ops.remove_from_collection(library, user_id, name, paper_id))


@user_router.get("/users/{user_id}/collections/{name}/feed", tags=["collections"], response_model=Feed, responses=FEED_DOC)
def get_collection_feed(library: LibraryDep, request: Request, filters: FiltersDep, user_id: int, name: str,
                        k: KQuery = 10, format: Format = "json", mode: ModeQuery = None) -> Feed | Response:
    return feed_response(library, request, user_id, k, format, filters, mode, name)


@user_router.get("/users/{user_id}/collections/{name}/feed.atom", tags=["collections"], response_class=Response, responses=ATOM_DOC)
def get_collection_feed_atom(library: LibraryDep, request: Request, filters: FiltersDep, user_id: int, name: str,
                             k: KQuery = 20, mode: ModeQuery = None) -> Response:
    return feed_response(library, request, user_id, k, "atom", filters, mode, name)


@user_router.get("/users/{user_id}/collections/{name}/feed.bib", tags=["collections"], response_class=Response, responses=BIBTEX_DOC)
def get_collection_feed_bib(library: LibraryDep, request: Request, filters: FiltersDep, user_id: int, name: str,
                            k: KQuery = 10, mode: ModeQuery = None) -> Response:
    return feed_response(library, request, user_id, k, "bibtex", filters, mode, name)


IMPORT_BODY = {"requestBody": {"content": {
    **{media: {"schema": {"type": "string"}} for media in imports.MEDIA_TYPES},
    "text/plain": {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
}, "description": "the file: the raw body, or a multipart form's 'file'"}}


@user_router.post("/users/{user_id}/import", response_model=imports.ImportReport, tags=["users"], openapi_extra=IMPORT_BODY)
async def import_references(
    library: LibraryDep, request: Request, user_id: int,
    format: Annotated[Literal[imports.FORMATS] | None, Query(description="bibtex, csl-json, ris [default: from the content type, "  # type: ignore[valid-type]
                                                                          "the file name or the content]")] = None,
    as_: Annotated[Literal[imports.TARGETS] | None, Query(alias="as", description="like (default), save or collection")] = None,  # type: ignore[valid-type]
    collection: Annotated[str | None, Query(max_length=user_ops.MAX_COLLECTION_CHARS)] = None,
) -> imports.ImportReport:
    """A reference manager's export (BibTeX, CSL-JSON, RIS) as the user's likes, saves or a collection:
    each entry matched by DOI, arXiv id, then title; one the index lacks is added when it has an
    abstract. All or nothing; importing a file again changes nothing."""
    data, filename, media = await _uploaded(request)
    fmt = format or imports.MEDIA_TYPES.get(media)
    return await run_in_threadpool(imports.import_library, library, user_id, data, fmt, filename, as_, collection, True)


async def _uploaded(request: Request) -> tuple[bytes, str | None, str]:
    """(the file's bytes, its name, its media type) from a raw body or a multipart form's ``file``;
    the body limit (limits.BodyLimit) has refused an oversized one before this reads it."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        return await request.body(), None, media
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidInput("the form has no 'file' field holding the file to import")
    media = (upload.content_type or "").split(";")[0].strip().lower()
    return await upload.read(), upload.filename, media


@user_router.api_route("/users/{user_id}/collections/{name:path}", methods=["GET", "PUT", "POST", "DELETE"],
                       include_in_schema=False)
def collection_path_with_a_slash(user_id: int, name: str) -> None:
    """After every collection route: a name holding '/' (sent as %2F) reaches no route above, and
    gets the 422 that says why instead of a bare 404."""
    if "/" in name:
        user_ops.check_collection_name(name)  # refuses the '/'
    raise HTTPException(405)


def add_feed_routes(app: FastAPI) -> None:
    """Users, feeds, collections and the web page; call before the ``/papers/{id}`` catch-all."""
    from .web import add_web_routes

    app.include_router(router)
    app.include_router(user_router)
    add_web_routes(app)
