"""FastAPI app: thin handlers over search / recommend / library, pydantic models at the edge.

The only state is ``app.state.library``, opened once at start-up (store, FAISS index and model).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from . import __version__
from .admission import ReadAdmission, search_slots
from .api_deps import (
    AUTHOR_DOC,
    BIBTEX_DOC,
    MAX_K,
    FiltersDep,
    KQuery,
    LibraryDep,
    ModeQuery,
    PaperId,
    SortQuery,
    WriteAccess,
    run_read,
)
from .api_feed_urls import add_feed_url_routes
from .api_feeds import add_feed_routes
from .api_s2 import add_s2_routes
from .config import Settings
from .errors import InvalidInput, PaperlensError, PaperNotFound
from .exports import MEDIA_TYPES, bibtex, export_items
from .library import (
    CheckReport,
    Library,
    check_library,
    delete,
    ingest,
    open_library,
    resolve_id,
)
from .limits import BodyLimit, check_paper_count
from .metrics import add_metrics
from .papers import Paper, author_count, clean_text, papers_from_records
from .recommend import STRATEGIES, Example, recommend
from .search import (
    SORT_DOC,
    Filters,
    Hit,
    Mode,
    Sort,
    make_filters,
    search_text,
    similar_to_paper,
    similar_to_text,
)
from .shards import ShardedLibrary, missing_shards
from .trending import MAX_DAYS, trending

log = logging.getLogger(__name__)


# --- models ------------------------------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every 4xx: a sentence, or FastAPI's list of field errors for a request that does not parse."""

    detail: str | list[dict[str, Any]]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": description}
    for code, description in (
        (400, "malformed request"),
        (401, "an API key is required for writes (X-API-Key)"),
        (403, "the credentials do not allow this"),
        (404, "no such paper"),
        (409, "index mismatch, or a paper deleted while the request read it"),
        (413, "request body over the configured limit"),
        (422, "invalid input"),
        (503, "another writer kept the index busy longer than the configured wait"),
    )
}


class Results(BaseModel):
    results: list[Hit]  # the library's dataclass is the response schema: one definition of a hit
    # Only on a sharded server (shards.py), when a shard did not answer: the results of the others.
    partial: bool = Field(False, description="some shards did not answer; absent when all did")
    missing_shards: list[int] = Field([], description="the shards that did not answer; absent when all did")


class PaperOut(BaseModel):
    id: str
    title: str
    abstract: str
    authors: list[str]
    author_count: int  # len(authors), or the count a listing gives without names
    date: str | None
    categories: list[str]
    popularity: float
    url: str | None
    source: str | None
    extra: dict[str, Any]


class PaperIn(BaseModel):
    """A paper to ingest; without ``id`` it gets a stable hash of its title and abstract."""

    model_config = ConfigDict(extra="allow")
    id: str | None = Field(None, max_length=200)
    title: str = ""
    abstract: str = ""
    authors: list[str] | str = []
    date: str | None = None
    categories: list[str] | str = []
    popularity: float = Field(0.0, allow_inf_nan=False)
    url: str | None = None
    source: str | None = None
    extra: dict[str, Any] = {}


class PapersIn(BaseModel):
    papers: list[PaperIn]


class IngestOut(BaseModel):
    ids: list[str]
    added: int
    updated: int
    unchanged: int


class DeleteOut(BaseModel):
    deleted: str


class ShardState(BaseModel):
    shard: int
    folder: str
    state: Literal["ok", "unavailable"]
    papers: int | None
    layout: str | None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    papers: int
    model: str
    layout: str | None
    dim: int | None
    generation: int  # the store write the server's caches reflect; writes from other processes raise it
    shards: list[ShardState] | None = Field(None, description="a sharded server's shards; absent on one index")


class FilterFields(BaseModel):
    since: str | None = Field(None, description="earliest date, YYYY-MM-DD")
    until: str | None = Field(None, description="latest date, YYYY-MM-DD")
    category: list[str] = Field([], description="categories; 'cs' matches 'cs.CL'")
    min_popularity: float | None = Field(None, allow_inf_nan=False)
    author: list[str] = Field([], description=AUTHOR_DOC)

    def filters(self) -> Filters:
        return make_filters(self.since, self.until, self.category, self.min_popularity, self.author)


class SimilarRequest(FilterFields):
    text: str = Field(..., min_length=1, description="an abstract (or any text) that is not in the index")
    k: int = Field(10, ge=1, le=MAX_K)
    mode: Mode | None = Field(None, description="hybrid, dense or bm25 [default: hybrid, or PAPERLENS_SEARCH_MODE]")
    sort: Sort = Field("relevance", description=SORT_DOC)


class WeightedId(BaseModel):
    id: str
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)


class RecommendRequest(FilterFields):
    positive: list[str | WeightedId] = Field(..., min_length=1, description="ids the user likes (or {id, weight})")
    negative: list[str | WeightedId] = Field([], description="ids the user does not want more of")
    k: int = Field(10, ge=1, le=MAX_K)
    strategy: Literal[STRATEGIES] = "grouped"  # type: ignore[valid-type]
    mode: Mode | None = Field(None, description="hybrid, dense or bm25 [default: hybrid, or PAPERLENS_SEARCH_MODE]")


class CategoryTrendOut(BaseModel):
    category: str
    papers: list[Hit]


class TrendingOut(BaseModel):
    since: str | None = Field(description="first day of the window, inclusive")
    until: str | None = Field(description="last day of the window: as_of, else the newest paper date not after today")
    days: int
    category: str | None
    papers: list[Hit] = Field(description="most popular first; score is the popularity")
    by_category: list[CategoryTrendOut] = Field(description="with by_category=true: each category's most popular, busiest first")
    note: str | None = Field(description="why papers is empty: no paper in the window carries popularity")


# --- app ---------------------------------------------------------------------------------------


# A route and its .bib twin take their parameters from one dependency, so they cannot drift apart.
async def search_hits(library: LibraryDep, filters: FiltersDep, q: Annotated[str, Query(min_length=1, description="free text")],
                      k: KQuery = 10, mode: ModeQuery = None, sort: SortQuery = "relevance") -> list[Hit]:
    return await run_read(library, search_text, library, q, k, filters, mode, sort)


async def similar_hits(library: LibraryDep, filters: FiltersDep, paper_id: PaperId, k: KQuery = 10, mode: ModeQuery = None,
                       sort: SortQuery = "relevance") -> list[Hit]:
    return await run_read(library, similar_to_paper, library, paper_id, k, filters, mode, sort)


SearchHits = Annotated[list[Hit], Depends(search_hits)]
SimilarHits = Annotated[list[Hit], Depends(similar_hits)]


def _results(hits: list[Hit]) -> Response:
    """``Results`` as JSON, written by orjson straight from the dataclasses: FastAPI's validation of
    its own output was a large share of a by-id similar request (benchmarks/api_latency.py); the
    schema stays ``Results``."""
    body: dict[str, Any] = {"results": hits}
    missing = missing_shards()
    if missing:
        body |= {"partial": True, "missing_shards": missing}
    return Response(orjson.dumps(body), media_type="application/json")


def _bibtex(library: Library, hits: list[Hit]) -> Response:
    return Response(bibtex([item.paper for item in export_items(library, hits)]), media_type=MEDIA_TYPES["bibtex"])


def _examples(items: list[str | WeightedId]) -> list[Example]:
    return [Example(item) if isinstance(item, str) else Example(item.id, item.weight) for item in items]


def create_app(settings: Settings | None = None, library: Library | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Not 'library or ...': a library holding no papers is falsy (len 0), and would be replaced.
        lib = library if library is not None else open_library(settings, create=True, repair=True)
        if library is None:  # 'paperlens serve' checks the library it passes before it listens
            startup_check(lib)
        # Off the event loop: a sharded library (shards.py) waits here for its shards' answers.
        papers = await asyncio.to_thread(warm_up, lib)
        warm_routes(app)
        app.state.library = lib
        lib.observe_encoding(app.state.metrics.observe_encode)
        log.info("paperlens: %d papers from %s", papers, lib.folder)
        # Writes from other processes (a CLI ingest, a harvest, a delete) show up without a restart.
        stop_following = lib.follow(settings.follow_seconds) if settings.follow_seconds > 0 else None
        yield
        if stop_following is not None:
            stop_following()
        lib.unobserve_encoding(app.state.metrics.observe_encode)
        if library is None:
            lib.close()

    app = FastAPI(
        title="paperlens",
        version=__version__,
        description="Semantic search and recommendation for scientific papers. "
        "When the server has API keys, writes need the X-API-Key header.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        docs_url=None,  # /docs and /redoc are served from installed files (web.add_api_docs), not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    # Innermost: a body over the limit is refused before it queues, and /metrics times the wait.
    app.add_middleware(ReadAdmission, slots=search_slots(settings), wait=settings.search_queue_seconds)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    add_metrics(app)  # GET /metrics, and the middleware that counts every request (outermost: refusals too)

    @app.exception_handler(PaperlensError)
    async def paperlens_error(_request: Request, exc: PaperlensError) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back, and an input of 1e999 (inf) or a lone surrogate
        # cannot be written as JSON: the error about bad input became a 500. Location and message suffice.
        detail = [{"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", "")),
                   "type": str(error.get("type", ""))} for error in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": json.loads(clean_text(json.dumps(detail, ensure_ascii=False)))})

    @app.exception_handler(UnicodeEncodeError)
    async def unencodable_text(_request: Request, exc: UnicodeEncodeError) -> JSONResponse:
        # Readers clean text at the edge; this is the net for a field they do not know.
        return JSONResponse(status_code=422, content={"detail": "text contains an unpaired surrogate (not valid Unicode)"})

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(status_code=500, content={"detail": f"internal error: {exc.__class__.__name__}"})

    @app.get("/health", response_model=Health, response_model_exclude_unset=True)
    def health(library: LibraryDep) -> Health:
        manifest = library.manifest
        shards = {"shards": library.shard_states()} if isinstance(library, ShardedLibrary) else {}
        return Health(status="ok", version=__version__, papers=len(library), model=library.model_name,
                      layout=manifest.layout if manifest else None, dim=manifest.dim if manifest else None,
                      generation=library.generation, **shards)

    # The JSON routes are async: their dependency does the work on the thread pool, the answer is
    # written on the event loop, one thread-pool hop per request as before.
    @app.get("/search", response_model=Results)
    async def search(hits: SearchHits) -> Response:
        return _results(hits)

    @app.get("/search.bib", tags=["exports"], response_class=Response, responses=BIBTEX_DOC)
    def search_bib(library: LibraryDep, hits: SearchHits) -> Response:
        """The results of ``/search`` as BibTeX."""
        return _bibtex(library, hits)

    @app.get("/papers/{paper_id:path}/similar", response_model=Results)
    async def similar_by_id(hits: SimilarHits) -> Response:
        return _results(hits)

    @app.get("/papers/{paper_id:path}/similar.bib", tags=["exports"], response_class=Response, responses=BIBTEX_DOC)
    def similar_bib(library: LibraryDep, hits: SimilarHits) -> Response:
        """The results of ``/papers/{id}/similar`` as BibTeX."""
        return _bibtex(library, hits)

    @app.post("/similar", response_model=Results)
    async def similar_by_text(library: LibraryDep, body: SimilarRequest) -> Response:
        # Always on the thread pool: encoding a pasted abstract takes ~20 ms whatever the index's size.
        return _results(await run_in_threadpool(similar_to_text, library, body.text, body.k, body.filters(), body.mode, body.sort))

    @app.post("/recommend", response_model=Results)
    async def recommend_papers(library: LibraryDep, body: RecommendRequest) -> Response:
        return _results(await run_read(library, lambda: recommend(library, _examples(body.positive), _examples(body.negative),
                                                                 body.k, body.filters(), body.strategy, mode=body.mode)))

    @app.get("/trending", response_model=TrendingOut)
    def trending_papers(
        library: LibraryDep,
        days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="length of the window in days")] = 7,
        k: KQuery = 10,
        category: Annotated[str | None, Query(description="only this category; 'cs' takes 'cs.LG'")] = None,
        as_of: Annotated[str | None, Query(description="last day of the window, YYYY-MM-DD [default: the newest "
                                                        "paper date in the index that is not after today]")] = None,
        by_category: Annotated[bool, Query(description="also the k most popular of each category")] = False,
    ) -> Response:
        """The most popular papers dated in the last ``days`` days (upvotes, citations: what the records
        carry). Only papers with popularity above 0 count; a window without any answers no papers and a
        ``note`` that says so."""
        return Response(orjson.dumps(trending(library, days, k, category, as_of, by_category)), media_type="application/json")

    # Secret feed URLs for feed readers (api_feed_urls.py): before the feed routes, whose last
    # collection route takes any path under /users/{id}/collections/ to refuse a name with '/'.
    add_feed_url_routes(app)
    # Users, feeds, collections and the web page (api_feeds.py); before the catch-all below.
    add_feed_routes(app)
    add_s2_routes(app)  # Semantic Scholar's API shapes (api_s2.py)

    @app.get("/papers/{paper_id:path}", response_model=PaperOut)
    def get_paper(library: LibraryDep, paper_id: PaperId) -> PaperOut:
        stored = library.store.get(resolve_id(library, paper_id))
        if stored is None:  # deleted meanwhile
            raise PaperNotFound(paper_id)
        return paper_out(stored.paper)

    # The writes are async with their work on the thread pool: their answer is checked against its
    # model on the event loop, one hand-over per request (a sync route has FastAPI hand it back again).
    @app.delete("/papers/{paper_id:path}", response_model=DeleteOut, dependencies=WriteAccess)
    async def delete_paper(library: LibraryDep, paper_id: PaperId) -> DeleteOut:
        return await run_in_threadpool(delete_one, library, paper_id)

    @app.post("/papers", response_model=IngestOut, status_code=201, dependencies=WriteAccess)
    async def add_papers(library: LibraryDep, body: Annotated[list[PaperIn] | PapersIn, Body()]) -> IngestOut:
        return await run_in_threadpool(ingest_records, library, body.papers if isinstance(body, PapersIn) else body)

    return app


def delete_one(library: Library, paper_id: str) -> DeleteOut:
    deleted = library.delete([paper_id]) if isinstance(library, ShardedLibrary) else delete(library, [paper_id])
    if not deleted:
        raise PaperNotFound(paper_id)
    return DeleteOut(deleted=deleted[0])


def ingest_records(library: Library, records: list[PaperIn]) -> IngestOut:
    if not records:
        raise InvalidInput("no papers in the request")
    check_paper_count(library.settings, len(records))
    papers, skipped = papers_from_records([r.model_dump(exclude_none=True) for r in records], source="api")
    if skipped:
        # A request is all or nothing: the caller fixes the records and sends them again.
        reasons = "; ".join(f"paper {s.line}: {s.reason}" for s in skipped[:20])
        raise InvalidInput(f"{len(skipped)} of {len(records)} papers are invalid, nothing was stored: {reasons}")
    report = library.ingest(papers) if isinstance(library, ShardedLibrary) else ingest(library, papers)
    return IngestOut(ids=[p.id for p in papers], added=len(report.added), updated=len(report.updated),
                     unchanged=len(report.unchanged))


def warm_up(library: Library) -> int:
    """Load the model and the filter columns now, not on the first request (the columns' load time
    grows with the collection: benchmarks/scale.py); the papers held."""
    if library.index is not None:
        library.encoder  # noqa: B018
        library.filter_columns()
    return len(library)


def warm_routes(app: FastAPI) -> None:
    """Have FastAPI build its routes now. It builds those of included routers (users, feeds, S2) when
    the first request reaches them, on the event loop: every route after them (POST /papers, DELETE
    /papers/{id}) paid 0.1-0.4 s on its first request (benchmarks/scale.py's first write)."""
    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "headers": [], "query_string": b""}
    for route in app.router.routes:
        route.matches(scope)


def startup_check(library: Library) -> CheckReport:
    """The server verifies (and repairs) its index before it listens: never serve a torn one.

    While another process writes the folder (a long ingest or harvest) the server does not wait for
    it: open_library has already verified every cache against the store (and waited for the writer
    if one was not in step), and the server follows that writer's commits once it listens."""
    if not library.writer.try_acquire():
        log.warning("%s: another process is writing; serving the index as verified at open", library.folder)
        return CheckReport(index=str(library.folder), papers=len(library), faiss=len(library.index or ()))
    try:
        library.catch_up()
        report = check_library(library, repair=True, quick=True)
    finally:
        library.writer.release()
    for note in report.repaired:
        log.warning("paperlens check: %s", note)
    if not report.ok:
        raise PaperlensError(f"{library.folder} failed its start-up check: " + "; ".join(report.problems))
    return report


def paper_out(paper: Paper) -> PaperOut:
    return PaperOut(**paper.to_dict(), author_count=author_count(paper))
