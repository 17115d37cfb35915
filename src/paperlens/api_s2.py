"""Semantic Scholar's API shapes over this index, so its clients work unchanged (``api_url=`` this server).

The Graph API's paper lookups (one, a batch, a search) and the Recommendations API (from lists of
papers, for one paper), each with and without a trailing slash (S2's Python client POSTs to
``/recommendations/v1/papers/`` and does not follow redirects). ``fields`` picks the answer's
fields as S2 does; S2 fields this index does not know are null. Ids are taken as S2 writes them
(a paperlens id, ``arXiv:2301.00001``, ``DOI:...``, ``CorpusId:...``, an S2 sha) and resolved
through the ids the ingested records carried (papers.external_ids). Errors are S2's
``{"error": "..."}`` with 400 or 404, never FastAPI's ``detail``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from .api_deps import LibraryDep, request_link_base
from .errors import InvalidInput, PaperlensError, PaperNotFound
from .exports import bibtex, export_items, paper_link
from .library import Library, resolve_ids
from .papers import MAX_ID_CHARS, Paper, clean_text, external_ids
from .recommend import recommend
from .search import Filters, Hit, make_filters, search_text, similar_to_paper

MAX_BATCH_IDS = 500  # S2's own bounds, so a script that works against S2 works here
MAX_RECOMMENDATIONS = 500
MAX_SEARCH_LIMIT = 100
MAX_SEARCH_WINDOW = 1000  # offset + limit

# Every field of S2's paper object; those this index cannot fill are answered with null.
S2_FIELDS = (
    "paperId", "corpusId", "externalIds", "url", "title", "abstract", "venue", "publicationVenue", "year",
    "referenceCount", "citationCount", "influentialCitationCount", "isOpenAccess", "openAccessPdf", "fieldsOfStudy",
    "s2FieldsOfStudy", "publicationTypes", "publicationDate", "journal", "citationStyles", "authors", "citations",
    "references", "embedding", "tldr", "textAvailability",
)
S2_AUTHOR_FIELDS = ("authorId", "externalIds", "url", "name", "affiliations", "homepage", "paperCount", "citationCount", "hIndex")
LIST_FIELDS = {"citations", "references"}  # lists of papers this index does not have: empty
DEFAULT_FIELDS = ("paperId", "title")

# S2's fields of study for arXiv's archives (categories 'cs.CL' → 'Computer Science'); a category
# that is no arXiv archive is its own field of study.
FIELD_OF_STUDY = {
    "cs": "Computer Science", "math": "Mathematics", "stat": "Mathematics", "physics": "Physics",
    "astro-ph": "Physics", "cond-mat": "Physics", "gr-qc": "Physics", "hep-ex": "Physics", "hep-lat": "Physics",
    "hep-ph": "Physics", "hep-th": "Physics", "math-ph": "Physics", "nlin": "Physics", "nucl-ex": "Physics",
    "nucl-th": "Physics", "quant-ph": "Physics", "q-bio": "Biology", "q-fin": "Economics", "econ": "Economics",
    "eess": "Engineering",
}


# --- errors in S2's shape ------------------------------------------------------------------------


def s2_error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")


class S2Route(APIRoute):
    """Routes whose errors are S2's: 404 for an unknown paper, 400 for any other bad request
    (a body or parameter that does not parse included), so S2 clients raise their own exceptions."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def s2_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
                return s2_error(400, problems or "malformed request")
            except PaperlensError as exc:
                return s2_error(exc.status_code if exc.status_code in (404, 409, 413) else 400, str(exc))
            except UnicodeEncodeError:
                return s2_error(400, "text contains an unpaired surrogate (not valid Unicode)")

        return s2_handler


class S2ErrorOut(BaseModel):
    error: str


class UnroutedOut(BaseModel):
    detail: str


S2_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": S2ErrorOut, "description": "malformed request, or an unknown field"},
    # An id with a newline matches no route (Starlette's path parameters stop at one): the server's own 404.
    404: {"model": S2ErrorOut | UnroutedOut, "description": "no such paper"},
}


# --- models (the documented schema; answers hold only the fields asked for) ----------------------


class S2PaperOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    paperId: str
    title: str | None = None
    abstract: str | None = None
    year: int | None = None
    publicationDate: str | None = None
    url: str | None = None
    authors: list[dict[str, Any]] | None = None
    externalIds: dict[str, Any] | None = None
    fieldsOfStudy: list[str] | None = None
    citationCount: int | None = None


class S2Recommendations(BaseModel):
    recommendedPapers: list[S2PaperOut]


class S2SearchOut(BaseModel):
    total: int
    offset: int
    next: int | None = None
    data: list[S2PaperOut]


class S2RecommendRequest(BaseModel):
    positivePaperIds: list[str] = Field(..., min_length=1)
    negativePaperIds: list[str] = []


class S2BatchRequest(BaseModel):
    ids: list[str] = Field(..., min_length=1, max_length=MAX_BATCH_IDS)


FieldsQuery = Annotated[str | None, Query(description="comma-separated S2 paper fields, e.g. title,year,authors.name")]


# --- ids and fields --------------------------------------------------------------------------------


def resolve_s2_ids(library: Library, raw_ids: list[str]) -> dict[str, str]:
    """The stored ids of ids as S2 clients send them (library.resolve_ids takes every S2 form), less
    the trailing '/' a path id gets from the slashed twin of a route. An id that is malformed is,
    as in S2, one this index does not have: left out (a 404, or null in a batch)."""
    keys = {raw: raw.strip().rstrip("/") for raw in raw_ids}
    found = resolve_ids(library, keys.values(), strict=False)
    return {raw: found[key] for raw, key in keys.items() if key in found}


def require_id(library: Library, raw: str) -> str:
    found = resolve_s2_ids(library, [raw])
    if raw not in found:
        raise PaperNotFound(clean_text(raw).strip().rstrip("/")[:MAX_ID_CHARS])
    return found[raw]


def parse_fields(fields: str | None) -> list[str]:
    """``fields`` as S2 reads it: comma-separated, 'authors.name' picks an author field; an unknown one is a 400."""
    if fields is None or not fields.strip():
        return list(DEFAULT_FIELDS)
    wanted = [part.strip() for part in fields.split(",") if part.strip()]
    unknown = [f for f in wanted if not _known_field(f)]
    if unknown:
        raise InvalidInput(f"Unrecognized or unsupported fields: {unknown}")
    return wanted


def _known_field(name: str) -> bool:
    top, _, sub = name.partition(".")
    if top not in S2_FIELDS:
        return False
    if not sub:
        return True
    if top == "authors":
        return sub in S2_AUTHOR_FIELDS
    if top in LIST_FIELDS:
        return _known_field(sub) and "." not in sub
    return top == "embedding" and sub in ("specter_v1", "specter_v2")


def fields_of_study(paper: Paper) -> list[str]:
    given = paper.extra.get("fieldsOfStudy")
    if isinstance(given, list) and all(isinstance(f, str) for f in given):
        return list(given)
    names: list[str] = []
    for category in paper.categories:
        name = FIELD_OF_STUDY.get(category.split(".")[0].lower(), category)
        if name not in names:
            names.append(name)
    return names


def categories_for(fields: str | None) -> list[str]:
    """S2's fieldsOfStudy filter as categories: each field's arXiv archives, and the name itself."""
    categories: list[str] = []
    for name in (part.strip() for part in (fields or "").split(",")):
        if name:
            categories += [archive for archive, field in FIELD_OF_STUDY.items() if field.lower() == name.lower()] + [name]
    return categories


def _citation_count(paper: Paper) -> int | None:
    for key in ("citationCount", "cited_by_count"):
        value = paper.extra.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _author(name: str, wanted: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"authorId": None, "name": name}
    return out if not wanted else {f: out.get(f) for f in ("authorId", *sorted(wanted))}


def s2_paper(paper: Paper, fields: list[str], base: str) -> dict[str, Any]:
    """One paper as S2 writes it, with ``paperId`` and the fields asked for; links under ``base``
    (api_deps.request_link_base). Authors are the stored names (S2's object has no author count)."""
    ids = external_ids(paper)
    arxiv = ids.get("ArXiv")
    author_fields = {f.split(".", 1)[1] for f in fields if f.startswith("authors.")}
    known: dict[str, Callable[[], Any]] = {
        "corpusId": lambda: int(ids["CorpusId"]) if "CorpusId" in ids else None,
        "externalIds": lambda: {k: (int(v) if k == "CorpusId" else v) for k, v in ids.items() if k != "S2PaperId"},
        "url": lambda: paper_link(paper, base),
        "title": lambda: paper.title,
        "abstract": lambda: paper.abstract or None,
        "year": lambda: int(paper.date[:4]) if paper.date else None,
        "publicationDate": lambda: paper.date,
        "authors": lambda: [_author(name, author_fields) for name in paper.authors],
        "fieldsOfStudy": lambda: fields_of_study(paper) or None,
        "s2FieldsOfStudy": lambda: [{"category": f, "source": "external"} for f in fields_of_study(paper)],
        "citationCount": lambda: _citation_count(paper),
        "isOpenAccess": lambda: True if arxiv else None,
        "openAccessPdf": lambda: {"url": f"https://arxiv.org/pdf/{arxiv}", "status": "GREEN"} if arxiv else None,
        "citationStyles": lambda: {"bibtex": bibtex([paper]).strip()},
        "venue": lambda: "arXiv.org" if arxiv else None,
    }
    # S2's own sha where the record carried one (what its clients know the paper by), else ours;
    # either resolves here.
    out: dict[str, Any] = {"paperId": ids.get("S2PaperId", paper.id)}
    for name in fields:
        top = name.split(".")[0]
        if top in out:
            continue
        out[top] = known[top]() if top in known else ([] if top in LIST_FIELDS else None)
    return out


def s2_papers(library: Library, request: Request, hits: list[Hit], fields: list[str]) -> list[dict[str, Any]]:
    base = request_link_base(library, request)
    return [s2_paper(item.paper, fields, base) for item in export_items(library, hits)]


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


# --- search filters ----------------------------------------------------------------------------------


def _year_range(year: str | None) -> tuple[str | None, str | None]:
    """'2019', '2016-2020', '2010-', '-2015' (S2's year parameter)."""
    if not year or not year.strip():
        return None, None
    match = re.fullmatch(r"(\d{4})?(-)?(\d{4})?", year.strip())
    if not match or not (match.group(1) or match.group(3)) or (match.group(1) and match.group(3) and not match.group(2)):
        raise InvalidInput(f"year must be YYYY, YYYY-YYYY, YYYY- or -YYYY, got {year[:40]!r}")
    first, dash, last = match.groups()
    return first, (last if dash else first)


def _date_range(value: str | None) -> tuple[str | None, str | None]:
    """'2019-03-05:2020-06-06', '2019-03:', ':2020', '2019' (S2's publicationDateOrYear)."""
    if not value or not value.strip():
        return None, None
    day = r"\d{4}(?:-\d{2}(?:-\d{2})?)?"
    match = re.fullmatch(rf"({day})?(:)?({day})?", value.strip())
    if not match or not (match.group(1) or match.group(3)):
        raise InvalidInput(f"publicationDateOrYear must be <start>:<end> with dates YYYY-MM-DD, YYYY-MM or YYYY, got {value[:40]!r}")
    first, colon, last = match.groups()
    return first, (last if colon else first)


def search_filters(library: Library, year: str | None, publication_date_or_year: str | None,
                   fields_of_study: str | None) -> Filters | None:
    """The filters, or None when no paper here is of the fields of study asked for (S2's empty page,
    where paperlens' own routes refuse a category no paper has)."""
    since, until = _date_range(publication_date_or_year) if publication_date_or_year else _year_range(year)
    categories = categories_for(fields_of_study)
    absent = set(library.filter_columns().unknown_categories(categories))
    if categories and absent.issuperset(categories):
        return None
    return make_filters(since, until, [c for c in categories if c not in absent])


# --- routes --------------------------------------------------------------------------------------------


router = APIRouter(route_class=S2Route, tags=["semantic scholar"], responses=S2_ERRORS)


def _route(path: str, methods: list[str], response_model: Any, endpoint: Callable[..., Any]) -> None:
    """The route, and its twin with a trailing slash (left out of the schema); a path that ends in
    an id takes the rest of the URL (S2 ids may hold slashes: DOI:10.1145/...), the slash included."""
    router.add_api_route(path, endpoint, methods=methods, responses={200: {"model": response_model}}, response_model=None)
    if not path.endswith(":path}"):
        router.add_api_route(path + "/", endpoint, methods=methods, response_model=None, include_in_schema=False)


def recommend_from_lists(library: LibraryDep, request: Request, body: Annotated[S2RecommendRequest, Body()],
                         fields: FieldsQuery = None, limit: Annotated[int, Query(ge=1, le=MAX_RECOMMENDATIONS)] = 100) -> Response:
    """Papers like the positive ones and unlike the negative ones (recommend.recommend, hybrid by
    default, which takes the ids in any form library.resolve_ids reads)."""
    wanted = parse_fields(fields)
    if len(body.positivePaperIds) + len(body.negativePaperIds) > library.settings.max_examples:
        raise InvalidInput(f"at most {library.settings.max_examples} positive and negative paper ids together")
    hits = recommend(library, body.positivePaperIds, body.negativePaperIds, k=min(limit, library.settings.max_k))
    return _json({"recommendedPapers": s2_papers(library, request, hits, wanted)})


def recommend_for_paper(library: LibraryDep, request: Request, paper_id: str, fields: FieldsQuery = None,
                        limit: Annotated[int, Query(ge=1, le=MAX_RECOMMENDATIONS)] = 100,
                        pool: Annotated[str, Query(alias="from", description="recent or all-cs: both draw from the whole index")] = "recent") -> Response:
    """Papers like one paper (search.similar_to_paper)."""
    if pool not in ("recent", "all-cs"):
        raise InvalidInput(f"from must be 'recent' or 'all-cs', got {pool[:40]!r}")
    wanted = parse_fields(fields)
    hits = similar_to_paper(library, require_id(library, paper_id), min(limit, library.settings.max_k))
    return _json({"recommendedPapers": s2_papers(library, request, hits, wanted)})


def paper_search(library: LibraryDep, request: Request, query: Annotated[str, Query(min_length=1)], fields: FieldsQuery = None,
                 offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=MAX_SEARCH_LIMIT)] = 100,
                 year: str | None = None, publicationDateOrYear: str | None = None, fieldsOfStudy: str | None = None) -> Response:
    """Free-text search (search.search_text) in S2's pages: ``next`` is there while more results are."""
    wanted = parse_fields(fields)
    if offset + limit > MAX_SEARCH_WINDOW:
        raise InvalidInput(f"offset + limit must be at most {MAX_SEARCH_WINDOW}")
    filters = search_filters(library, year, publicationDateOrYear, fieldsOfStudy)
    hits = search_text(library, query, min(offset + limit + 1, library.settings.max_k), filters) if filters is not None else []
    page = hits[offset:offset + limit]
    more = len(hits) > offset + limit
    body: dict[str, Any] = {"total": len(hits) if not more else max(len(hits), _candidates(library, filters)),
                            "offset": offset, "data": s2_papers(library, request, page, wanted)}
    if more:
        body["next"] = offset + limit
    return _json(body)


def _candidates(library: Library, filters: Filters) -> int:
    """How many papers a semantic query can rank under these filters: S2's total, roughly as loose."""
    return len(library.filter_columns().allowed(filters)) if filters.active() else len(library)


def paper_batch(library: LibraryDep, request: Request, body: Annotated[S2BatchRequest, Body()],
                fields: FieldsQuery = None) -> Response:
    """The papers in the order asked for, null for an id this index does not have."""
    wanted = parse_fields(fields)
    found = resolve_s2_ids(library, body.ids)
    stored = library.store.get_many(library.store.pks_for_ids(found.values()).values())
    papers = {sp.paper.id: sp.paper for sp in stored.values()}
    base = request_link_base(library, request)
    return _json([s2_paper(papers[found[raw]], wanted, base) if found.get(raw) in papers else None for raw in body.ids])


def paper_details(library: LibraryDep, request: Request, paper_id: str, fields: FieldsQuery = None) -> Response:
    """One paper by any of its ids."""
    wanted = parse_fields(fields)
    stored = library.store.get(require_id(library, paper_id))
    if stored is None:
        raise PaperNotFound(paper_id)
    return _json(s2_paper(stored.paper, wanted, request_link_base(library, request)))


_route("/recommendations/v1/papers", ["POST"], S2Recommendations, recommend_from_lists)
_route("/recommendations/v1/papers/forpaper/{paper_id:path}", ["GET"], S2Recommendations, recommend_for_paper)
_route("/graph/v1/paper/batch", ["POST"], list[S2PaperOut | None], paper_batch)
_route("/graph/v1/paper/search", ["GET"], S2SearchOut, paper_search)
_route("/graph/v1/paper/{paper_id:path}", ["GET"], S2PaperOut, paper_details)  # after batch and search: it takes any path


def add_s2_routes(app: FastAPI) -> None:
    app.include_router(router)
