"""Secret feed URLs: a user's feed, or one collection's, at ``/feeds/{secret}.atom`` and ``.bib``.

Feed readers cannot send X-User-Token, so with API keys on, the secret in the URL is the
credential: made (and remade, which revokes the old one) and revoked by the user through the
routes below or ``paperlens user feed-url``; only its hash is stored (security.py).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel

from . import users as user_ops
from .api_deps import ATOM_DOC, BIBTEX_DOC, FiltersDep, KQuery, LibraryDep, ModeQuery, request_link_base
from .api_feeds import feed_response
from .exports import secret_feed_urls
from .library import Library
from .search import Filters
from .security import feed_for_secret, require_user


class FeedUrls(BaseModel):
    """Shown once: anyone with a URL can read the feed, until it is revoked or made anew."""

    atom: str
    bibtex: str


class Revoked(BaseModel):
    revoked: bool


router = APIRouter(tags=["feeds"])
user_router = APIRouter(tags=["feeds"], dependencies=[Depends(require_user)])


def _urls(library: Library, request: Request, secret: str) -> FeedUrls:
    return FeedUrls(**secret_feed_urls(request_link_base(library, request), secret))


@user_router.post("/users/{user_id}/feed-url", response_model=FeedUrls, status_code=201)
def make_feed_url(library: LibraryDep, request: Request, user_id: int) -> FeedUrls:
    """A secret URL of the user's feed (any earlier one stops working)."""
    return _urls(library, request, user_ops.make_feed_secret(library, user_id))


@user_router.delete("/users/{user_id}/feed-url", response_model=Revoked)
def revoke_feed_url(library: LibraryDep, user_id: int) -> Revoked:
    user_ops.revoke_feed_secret(library, user_id)
    return Revoked(revoked=True)


@user_router.post("/users/{user_id}/collections/{name}/feed-url", response_model=FeedUrls, status_code=201, tags=["collections"])
def make_collection_feed_url(library: LibraryDep, request: Request, user_id: int, name: str) -> FeedUrls:
    """A secret URL of the collection's feed (any earlier one stops working)."""
    return _urls(library, request, user_ops.make_feed_secret(library, user_id, name))


@user_router.delete("/users/{user_id}/collections/{name}/feed-url", response_model=Revoked, tags=["collections"])
def revoke_collection_feed_url(library: LibraryDep, user_id: int, name: str) -> Revoked:
    user_ops.revoke_feed_secret(library, user_id, name)
    return Revoked(revoked=True)


def _secret_feed(library: Library, request: Request, secret: str, k: int, fmt: Literal["atom", "bibtex"], filters: Filters,
                 mode: str | None) -> Response:
    user_id, collection = feed_for_secret(library.store.users, secret)
    return feed_response(library, request, user_id, k, fmt, filters, mode, collection)


@router.get("/feeds/{secret}.atom", response_class=Response, responses=ATOM_DOC)
def secret_feed_atom(library: LibraryDep, request: Request, filters: FiltersDep, secret: str, k: KQuery = 20,
                     mode: ModeQuery = None) -> Response:
    """The feed behind a secret URL as Atom, no headers needed; 404 for an unknown or revoked secret."""
    return _secret_feed(library, request, secret, k, "atom", filters, mode)


@router.get("/feeds/{secret}.bib", response_class=Response, responses=BIBTEX_DOC)
def secret_feed_bib(library: LibraryDep, request: Request, filters: FiltersDep, secret: str, k: KQuery = 10,
                    mode: ModeQuery = None) -> Response:
    """The feed behind a secret URL as BibTeX."""
    return _secret_feed(library, request, secret, k, "bibtex", filters, mode)


def add_feed_url_routes(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(user_router)
