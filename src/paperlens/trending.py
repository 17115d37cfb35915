"""Trending: the most popular papers of the last N days, overall or per category.

Popularity is what the records carry (a listing's upvotes, a citation count of an export); the
store cannot tell a zero from "not given", so only papers with popularity above 0 are ranked, and
a window without any says so (``Trending.note``) instead of listing papers in arbitrary order.

The window is the N days up to and including ``as_of``; without it, up to the newest paper date
in the index that is not after today. A harvested index ends today, so that is this week; a
static collection (the demo corpus ends in January 2026) shows its own last N days rather than an
empty page. The answer always names the window's dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInput
from .filters import FilterColumns, Filters, category_matches
from .library import Library
from .papers import InvalidRecord, clean_text, parse_date
from .search import Hit, allowed_pks, check_k, to_hits

MAX_DAYS = 3650
# The web page's front page widens its window until it finds popularity data, and says which it shows.
FRONT_PAGE_WINDOWS = (7, 30, 90, 365)


@dataclass
class CategoryTrend:
    category: str
    papers: list[Hit]  # score: the paper's popularity


@dataclass
class Trending:
    since: str | None  # the window, inclusive; None when no paper has a date
    until: str | None
    days: int
    category: str | None
    papers: list[Hit]  # most popular first (ties: newer, then older in the index); score = popularity
    by_category: list[CategoryTrend] = field(default_factory=list)  # when asked for: busiest category first
    note: str | None = None  # why ``papers`` is empty


def window_end(columns: FilterColumns, as_of: str | None, today: dt.date) -> str | None:
    """The window's last day: ``as_of``, else the newest paper date not after today (None: no dates)."""
    if as_of:
        return as_of
    dated = columns.dates[(columns.dates != b"") & (columns.dates <= today.isoformat().encode())]
    if not len(dated):
        return None
    # The largest 'YYYY-MM-DD' without sorting strings (a sort of 1M takes ~0.1 s): the first eight
    # bytes as one big-endian integer, then the day among the dates that share the largest.
    raw = np.ascontiguousarray(dated).view(np.uint8).reshape(-1, 10)
    head = raw[:, :8].copy().view(">u8").ravel()
    newest = raw[head == head.max()]
    return newest[np.argmax(newest[:, 8:].copy().view(">u2").ravel())].tobytes().decode()


def check_days(days: int) -> int:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, got {days!r}")
    return days


def _ranked(columns: FilterColumns, pks: np.ndarray) -> list[tuple[int, float]]:
    """(pk, popularity) of ``pks``, most popular first, then newest, then oldest in the index."""
    at = np.searchsorted(columns.pks, pks)
    popularity, dates = columns.popularity[at], columns.dates[at]
    date_rank = np.unique(dates, return_inverse=True)[1].reshape(-1)
    order = np.lexsort((pks, -date_rank, -popularity))
    return [(int(pks[i]), float(popularity[i])) for i in order]


def trending(library: Library, days: int = 7, k: int = 10, category: str | None = None, as_of: str | None = None,
             by_category: bool = False, today: dt.date | None = None) -> Trending:
    """The k most popular papers dated in the window (module docstring), in ``category`` ('cs'
    takes 'cs.*'); with ``by_category`` also the k most popular of each category that has any."""
    check_days(days)
    check_k(library, k)
    try:
        end_day = parse_date(as_of) if as_of else None
    except InvalidRecord as exc:
        raise InvalidInput(f"as_of: {exc}: use YYYY-MM-DD") from None
    category = clean_text(category).strip() if category and category.strip() else None
    columns = library.filter_columns()
    until = window_end(columns, end_day, today or dt.datetime.now(dt.timezone.utc).date())
    if until is None:
        return Trending(None, None, days, category, [], note="no paper in this index has a date")
    since = (dt.date.fromisoformat(until) - dt.timedelta(days=days - 1)).isoformat()
    in_window = allowed_pks(library, Filters(since=since, until=until, categories=(category,) if category else ()))
    popular = in_window[columns.popularity[np.searchsorted(columns.pks, in_window)] > 0]
    span = f"the last {days} days ({since} to {until})" if days > 1 else f"{until}"
    where = f" in {category}" if category else ""
    if not len(popular):
        count = len(in_window)
        held = f"{count} paper{'s' if count != 1 else ''} dated then, none with upvotes or citations" if count else "no paper is dated then"
        return Trending(since, until, days, category, [], note=f"no popularity data{where} in {span}: {held}")
    result = Trending(since, until, days, category, to_hits(library, _ranked(columns, popular)[:k]))
    if by_category:
        result.by_category = _by_category(library, columns, popular, category, k)
    return result


def _by_category(library: Library, columns: FilterColumns, popular: np.ndarray, category: str | None,
                 k: int) -> list[CategoryTrend]:
    groups = []
    for name, members in columns.categories.items():
        if category and not category_matches(name, category):
            continue
        inside = np.intersect1d(members, popular, assume_unique=True)
        if len(inside):
            ranked = _ranked(columns, inside)
            groups.append((-sum(score for _, score in ranked), name, ranked[:k]))
    return [CategoryTrend(name, to_hits(library, ranked)) for _, name, ranked in sorted(groups)]


def front_page(library: Library, k: int = 5, today: dt.date | None = None) -> Trending:
    """What the web page's front page shows: the shortest of FRONT_PAGE_WINDOWS with popularity
    data (the page names the window), or the longest one's note."""
    result = None
    for days in FRONT_PAGE_WINDOWS:
        result = trending(library, days, k, today=today)
        if result.papers or result.until is None:
            break
    return result
