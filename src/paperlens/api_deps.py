"""What every HTTP route shares: the library, and the query and path parameters with their checks.

One definition each, so a route and its twin (``/search`` and ``/search.bib``, a feed as JSON and
as Atom) cannot drift apart: the bounds come from ``config.Settings``, the checks from the same
functions the CLI calls (``search.make_filters``, ``limits.check_paper_id``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from .config import Settings
from .exports import link_base
from .library import Library
from .limits import check_paper_id
from .search import SORT_DOC, Filters, Mode, Sort, make_filters
from .security import require_api_key
from .shards import ShardedLibrary

T = TypeVar("T")

AUTHOR_DOC = ("repeatable; a paper matches when ANY of these is among its authors. Names compare by family name "
              "and first initial, ignoring case, accents and punctuation: 'Yann LeCun', 'LeCun, Y.', 'Y. LeCun' and "
              "'lecun' find the same papers. Papers whose source gives only an author count never match")

# The schema's bound; the running server's Settings.max_k is enforced by search.check_k (a 422 either way).
MAX_K = Settings.model_fields["max_k"].default


async def get_library(request: Request) -> Library:
    """The app's one library (async: no thread-pool hop for a dependency that only reads app state)."""
    return request.app.state.library


async def query_filters(
    since: Annotated[str | None, Query(description="earliest date, YYYY-MM-DD")] = None,
    until: Annotated[str | None, Query(description="latest date, YYYY-MM-DD")] = None,
    category: Annotated[list[str], Query(description="repeatable; 'cs' matches 'cs.CL'")] = [],  # noqa: B006 (FastAPI copies defaults)
    min_popularity: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    author: Annotated[list[str], Query(description=AUTHOR_DOC)] = [],  # noqa: B006
) -> Filters:
    return make_filters(since, until, category, min_popularity, author)


async def valid_paper_id(paper_id: str) -> str:
    """Path ids are checked like ingested ones: '../x' or an id over the length limit is a 422, not a lookup."""
    return check_paper_id(paper_id)


def reads_on_loop(library: Library) -> bool:
    """Whether a search of this library is cheap enough to run on the event loop (Settings.search_thread_min_papers).

    Never a sharded one: it waits for its shards' answers over HTTP."""
    if isinstance(library, ShardedLibrary):
        return False
    index = library.index
    return index is None or len(index) < library.settings.search_thread_min_papers


async def run_read(library: Library, work: Callable[..., T], *args: object) -> T:
    """A read route's work: on the event loop for a small index, where the hand-over to a worker
    thread and back would cost more than the search; on the thread pool for a large one."""
    if reads_on_loop(library):
        return work(*args)
    return await run_in_threadpool(work, *args)


def request_link_base(library: Library, request: Request) -> str:
    """Where a response's links point (exports.link_base): PAPERLENS_PUBLIC_URL, else the URL the request came to."""
    return link_base(library.settings, str(request.base_url))


LibraryDep = Annotated[Library, Depends(get_library)]
FiltersDep = Annotated[Filters, Depends(query_filters)]
PaperId = Annotated[str, Depends(valid_paper_id)]
KQuery = Annotated[int, Query(ge=1, le=MAX_K, description="number of results")]
ModeQuery = Annotated[Mode | None, Query(description="hybrid, dense or bm25 [default: hybrid, or PAPERLENS_SEARCH_MODE]")]
SortQuery = Annotated[Sort, Query(description=SORT_DOC)]
WriteAccess = [Depends(require_api_key)]

# Routes that answer in a format of exports.py document it so (the JSON routes have response models).
ATOM_DOC = {200: {"content": {"application/atom+xml": {"schema": {"type": "string"}}}, "description": "an Atom 1.0 feed"}}
BIBTEX_DOC = {200: {"content": {"application/x-bibtex": {"schema": {"type": "string"}}}, "description": "BibTeX entries"}}
