"""One paper, one entry: telling records of one paper (a listing's hash id and an arXiv id, two
versions of an abstract) from different papers, and merging their metadata.

Two records are one paper when their normalised titles (papers.title_key) are equal and their
texts are equal or their vectors are at least DUPLICATE_COSINE similar. Ingest merges such a
record into the stored entry (library.ingest).
"""

from __future__ import annotations

from dataclasses import replace

from .papers import Paper, author_count

# benchmarks/duplicates.py, packaged model: versions of one demo abstract as another source gives it
# (a sentence dropped or added, cut to 60% or 1,000 characters, 1 word in 20 dropped, LaTeX) keep
# cosine >= 0.91, and real versions of one paper in csfcube under one title >= 0.89; different
# papers under one title reach 0.77 (demo, swapped abstracts) and 0.84 (csfcube, "Cross-Language
# Information Retrieval"). The threshold splits that gap.
DUPLICATE_COSINE = 0.87


def merge_papers(kept: Paper, other: Paper) -> Paper:
    """``kept``'s id and text with the richer of both records' metadata: the longer author list (a
    list over a count), every category, the earliest date, the higher popularity, any url and DOI."""
    extra = {**other.extra, **kept.extra}
    counts = [author_count(kept), author_count(other)]
    if max(counts) and not (kept.authors or other.authors):
        extra["author_count"] = max(counts)
    dates = [d for d in (kept.date, other.date) if d]
    return replace(
        kept,
        authors=kept.authors if len(kept.authors) >= len(other.authors) else other.authors,
        date=min(dates) if dates else None,
        categories=list(dict.fromkeys([*kept.categories, *other.categories])),
        popularity=max(kept.popularity, other.popularity),
        url=kept.url or other.url,
        source=kept.source or other.source,
        extra=extra,
    )


def same_paper(same_text: bool, cosine: float) -> bool:
    """For two records whose normalised titles are equal: one paper, or two under one title."""
    return same_text or cosine >= DUPLICATE_COSINE
