"""Personal feeds: a profile from what a user did, split into interests, ranked with reasons.

The algorithm, in the order it runs (parameters in ``config.Settings``):

1. Profile. Positives are liked and saved papers plus the user's free-text interests; negatives
   are disliked and not-interested papers. A like fades with a half-life
   (``feed_half_life_days``: a like that old counts half as much as today's); interests do not
   fade. Everything the user touched (any kind, including ``seen``) is left out, and so is any
   other record of it (duplicates.copies_of); each paper competes for a slot as one record.
2. Interests. Positives are clustered (``recommend.cluster_interests``, cut at
   ``feed_cluster_distance``, at most ``feed_max_clusters``), so a user who likes video models and
   LLM safety gets two interests instead of one blurred centroid. Each interest gets a share of
   the feed proportional to its total (decayed) weight times the evidence of its best candidates
   (their mean similarity to it, step 4), and at least one slot while there are slots to give. An
   interest whose best candidate is below ``feed_interest_floor`` (a free-text interest the
   collection knows nothing of) gets at most one slot while another interest has better to show,
   and its items come last, their reason marked ``"weak": true``.
3. Candidates. One batched FAISS search from each interest's centroid and from its strongest
   members (``MEMBER_QUERIES``); deeper only when the user's own papers crowd out the candidates.
   In hybrid mode (the default, ``mode`` as in search) also each interest's keyword query ("more
   like this" of its members' texts), searched on the query workers meanwhile.
4. Score, per interest: the best similarity to any of its members, each member scaled by its
   weight relative to the strongest member of that interest, minus ``negative_weight`` times the
   best similarity to any negative: a disliked paper pushes its neighbourhood down. In hybrid mode
   this is fused with the interest's BM25 score (the negatives' keyword query counting against
   it) as search.fuse does, with ``similar_dense_weight``.
5. Order. Slots are filled interest by interest, whichever is furthest behind its share, each
   pick by MMR: ``lambda * score - (1 - lambda) * max similarity to the papers already picked``
   with ``feed_mmr_lambda``, so near-duplicates do not fill the top of the feed.
6. Reason. Each item names the (up to two) members of its interest it is most similar to: a
   paper ``{"paper_id", "title", "similarity"}`` or an interest ``{"interest", "similarity"}``,
   plus ``"weak": true`` when its interest had no candidate above the floor.

A user with no positives gets the most popular papers, with that said in the reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .duplicates import collapse, copies_of, first_records
from .library import Library, resolve_ids
from .recommend import cluster_interests
from .search import Filters, Hit, KeywordQuery, allowed_pks, check_k, check_mode, fuse, keyword_top, more_like_this, to_hits
from .users import NEGATIVE_KINDS, POSITIVE_KINDS, get_collection, get_user, users

MEMBER_QUERIES = 4  # strongest members of an interest searched on their own, besides its centroid
SHALLOW_EXCLUDE = 32  # room for excluded papers in the first, shallow candidate search
REASONS_PER_ITEM = 2
EVIDENCE_DEPTH = 3  # an interest's evidence: the mean similarity of its this many best candidates


@dataclass
class Profile:
    """What a feed is computed from: unit vectors with weights and labels, and what to leave out."""

    vectors: np.ndarray  # positives, (P, d)
    weights: np.ndarray  # (P,)
    labels: list[dict[str, Any]]  # per positive: {"paper_id", "title"} or {"interest"}
    negatives: np.ndarray  # (N, d)
    exclude: set[int] = field(default_factory=set)  # store pks never shown
    texts: list[str] = field(default_factory=list)  # per positive: the paper's text or the interest: the keyword side
    negative_texts: list[str] = field(default_factory=list)


@dataclass
class FeedItem:
    hit: Hit
    reason: dict[str, Any]
    interest: int  # index of the interest (cluster) the item was picked for


def decay(created_at: str, now: dt.datetime, half_life_days: float) -> float:
    """0.5 ** (age / half-life): recent likes steer the feed, old ones still count a little."""
    try:
        then = dt.datetime.fromisoformat(created_at)
    except ValueError:
        return 1.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.timezone.utc)
    age_days = max(0.0, (now - then).total_seconds() / 86400)
    return float(0.5 ** (age_days / half_life_days))


def build_profile(library: Library, user_id: int, now: dt.datetime | None = None,
                  extra_positive_ids: list[str] = ()) -> Profile:
    """The user's positives (decayed likes and saves, interests, ``extra_positive_ids`` at full weight) and negatives."""
    get_user(library, user_id)
    now = now or dt.datetime.now(dt.timezone.utc)
    store = users(library)
    rows = store.interactions(user_id)
    half_life = library.settings.feed_half_life_days
    positive_weight: dict[str, float] = {pid: 1.0 for pid in extra_positive_ids}
    negative_ids: list[str] = []
    for row in rows:
        if row.kind in POSITIVE_KINDS:
            positive_weight[row.paper_id] = max(positive_weight.get(row.paper_id, 0.0), decay(row.created_at, now, half_life))
        elif row.kind in NEGATIVE_KINDS:
            negative_ids.append(row.paper_id)
    touched = {row.paper_id for row in rows} | set(extra_positive_ids)
    pk_of = library.store.pks_for_ids(touched | set(negative_ids))
    if missing := (touched | set(negative_ids)) - pk_of.keys():
        # Through aliases: a like of a record since merged into another entry (library.dedup) counts for that entry.
        resolved = resolve_ids(library, missing)
        stored_pks = library.store.pks_for_ids(set(resolved.values()))
        pk_of |= {pid: stored_pks[found] for pid, found in resolved.items() if found in stored_pks}
    dim = library.manifest.dim if library.manifest else 0
    # Papers deleted from the index since the user touched them simply drop out of the profile.
    weight_of: dict[int, float] = {}
    for pid, weight in positive_weight.items():
        if pid in pk_of:
            weight_of[pk_of[pid]] = max(weight_of.get(pk_of[pid], 0.0), weight)
    pos_pks = list(weight_of)
    stored = library.store.get_many(pos_pks)
    vectors = [library.store.get_vectors(pos_pks, dim)] if pos_pks else []
    labels = [{"paper_id": stored[pk].paper.id, "title": stored[pk].paper.title} for pk in pos_pks]
    texts = [stored[pk].paper.text for pk in pos_pks]
    weights = [weight_of[pk] for pk in pos_pks]
    interests = store.interests(user_id)
    if interests:
        vectors.append(np.stack([i.vector for i in interests]))
        labels += [{"interest": i.text} for i in interests]
        texts += [i.text for i in interests]
        weights += [1.0] * len(interests)
    neg_pks = list(dict.fromkeys(pk_of[pid] for pid in negative_ids if pid in pk_of))
    return Profile(
        vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
        weights=np.asarray(weights, dtype=np.float32),
        labels=labels,
        negatives=library.store.get_vectors(neg_pks, dim) if neg_pks else np.zeros((0, dim), np.float32),
        exclude={pk_of[pid] for pid in touched if pid in pk_of},
        texts=texts,
        negative_texts=[stored.paper.text for stored in library.store.get_many(neg_pks).values()],
    )


def allocate_slots(k: int, weights: np.ndarray, caps: np.ndarray | None = None) -> np.ndarray:
    """Slots per interest ∝ weight (largest remainder), at least one each for the heaviest while
    slots last, none above its cap (``caps`` None: no cap); what a capped interest cannot take
    goes to the others."""
    n = len(weights)
    caps = np.full(n, k, dtype=np.int64) if caps is None else np.asarray(caps, dtype=np.int64)
    order = [i for i in np.argsort(-weights, kind="stable") if caps[i] > 0]
    slots = np.zeros(n, dtype=np.int64)
    slots[order[:min(k, len(order))]] = 1
    while (left := k - int(slots.sum())) > 0 and (room := slots < caps).any():
        open_weights = np.where(room, np.maximum(weights, 0.0), 0.0)
        if open_weights.sum() <= 0:
            open_weights = room.astype(np.float64)  # no weight left anywhere: equal shares
        share = open_weights / open_weights.sum() * left
        slots += np.minimum(np.floor(share).astype(np.int64), caps - slots)
        remainder = np.where(slots < caps, share - np.floor(share), -1.0)
        for i in np.argsort(-remainder, kind="stable")[: k - int(slots.sum())]:
            if remainder[i] >= 0:
                slots[i] += 1
    return slots


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _candidates(library: Library, queries: np.ndarray, need: int, allowed: np.ndarray | None, exclude: set[int]) -> list[int]:
    """Union of the neighbours of all queries (one batched FAISS call), ``need`` per query not counting ``exclude``.

    FAISS cannot leave the user's own papers out, so they are dropped afterwards. Searching
    ``need + len(exclude)`` deep every time made a 1,000-interaction feed several times slower,
    so the search starts shallow and goes deeper only for as long as exclusions crowd out a query."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    index = library.index  # no lock: writers swap in a changed copy, this search keeps the one it started with
    total = len(index)
    depth = min(total, need + min(len(exclude), SHALLOW_EXCLUDE))
    while True:
        _scores, ids = index.search(queries, depth, allowed)
        crowded = any(
            row.min() >= 0 and sum(int(i) not in exclude for i in row) < need for row in ids
        )  # a row with -1 has run out of (allowed) papers: going deeper cannot help it
        if not crowded or depth >= total:
            return [pk for pk in dict.fromkeys(int(i) for i in ids.ravel()) if pk >= 0 and pk not in exclude]
        depth = min(total, depth + len(exclude))


def _reason(labels: list[dict[str, Any]], members: np.ndarray, sims: np.ndarray, weak: bool = False) -> dict[str, Any]:
    best = members[np.argsort(-sims[members], kind="stable")[:REASONS_PER_ITEM]]
    reason: dict[str, Any] = {"because": [{**labels[m], "similarity": round(float(sims[m]), 4)} for m in best]}
    if weak:
        reason["weak"] = True  # nothing in the index is close to this interest: the best there is
    return reason


def rank_profile(library: Library, profile: Profile, k: int, filters: Filters | None = None, mode: str | None = None) -> list[FeedItem]:
    """Steps 2-6 of the module docstring, for any profile (a user's, a collection's)."""
    check_k(library, k)
    mode = check_mode(library, mode)
    if library.index is None or len(library.index) == 0:
        return []
    allowed = allowed_pks(library, filters)
    if allowed is not None and len(allowed) == 0:
        return []
    # Other records of a paper the user touched count as that paper (duplicates.py).
    exclude = profile.exclude | copies_of(library, profile.exclude)
    if len(profile.vectors) == 0:
        return _popular(library, profile, k, allowed, exclude)
    settings = library.settings
    labels = cluster_interests(profile.vectors, settings.feed_max_clusters, settings.feed_cluster_distance)
    n_clusters = int(labels.max()) + 1
    members = [np.flatnonzero(labels == c) for c in range(n_clusters)]
    cluster_weight = np.array([profile.weights[m].sum() for m in members], dtype=np.float64)
    slots = allocate_slots(k, cluster_weight)
    active = [c for c in range(n_clusters) if slots[c] > 0]

    keyword_queries: dict[int, KeywordQuery] = {}
    keyword_sides = {}
    if mode != "dense":  # one keyword query per interest, searched on the workers meanwhile
        negative = more_like_this(library, profile.negative_texts) if profile.negative_texts else []
        keyword_queries = {c: KeywordQuery(more_like_this(library, [profile.texts[i] for i in members[c]], profile.weights[members[c]].tolist()),
                                   negative, settings.negative_weight, filters) for c in active}
        keyword_sides = {c: library.workers.submit(keyword_top, library, q, 3 * int(slots[c]) + 10, allowed, exclude)
                         for c, q in keyword_queries.items()}
    cand: list[int] = []
    if mode != "bm25":
        queries, depth = [], 0
        for c in active:
            m = members[c]
            queries.append(_unit((profile.weights[m, None] * profile.vectors[m]).sum(0)))
            strongest = m[np.argsort(-profile.weights[m], kind="stable")[:MEMBER_QUERIES]]
            queries.extend(profile.vectors[strongest])
            depth = max(depth, 3 * int(slots[c]) + 10)
        cand = _candidates(library, np.stack(queries), depth, allowed, exclude)
    for side in keyword_sides.values():
        cand.extend(pk for pk, _ in side.result())
    if not cand:
        return []
    cand, cand_vecs = library.store.candidate_vectors(list(dict.fromkeys(cand)), profile.vectors.shape[1])
    first = first_records(library, cand, cand_vecs)  # one record of each paper competes for a slot
    if len(first) < len(cand):
        rows = [i for i, pk in enumerate(cand) if pk in first]
        cand, cand_vecs = [cand[i] for i in rows], cand_vecs[rows]
    if not cand:
        return []
    sims = cand_vecs @ profile.vectors.T  # (C, P)
    penalty = np.zeros(len(cand), dtype=np.float32)
    if len(profile.negatives):
        penalty = settings.negative_weight * (cand_vecs @ profile.negatives.T).max(axis=1)
    scores = np.full((n_clusters, len(cand)), -np.inf, dtype=np.float32)
    evidence, best = np.zeros(n_clusters), np.full(n_clusters, -np.inf)
    for c in active:
        m = members[c]
        relative = profile.weights[m] / profile.weights[m].max()
        similarity = (sims[:, m] * relative).max(axis=1)
        top = np.sort(similarity)[::-1][:EVIDENCE_DEPTH]
        evidence[c], best[c] = max(float(top.mean()), 0.0), float(top[0])
        dense = similarity - penalty
        if mode == "dense":
            scores[c] = dense
            continue
        keyword = _keyword_scores(library, keyword_queries[c], cand)
        weight = 0.0 if mode == "bm25" else settings.similar_dense_weight
        fused = fuse(list(range(len(cand))), dense, keyword, settings.fusion, weight)
        scores[c, [i for i, _ in fused]] = [score for _, score in fused]

    # Shares by weight times evidence; an interest with nothing above the floor gets one slot at most
    # while another has something better to show (otherwise a filter leaving only distant papers
    # would shorten the feed for nothing).
    is_active = np.isin(np.arange(n_clusters), active)
    weak = is_active & (best < settings.feed_interest_floor)
    caps = np.where(weak & (is_active & ~weak).any(), 1, k)
    slots = allocate_slots(k, np.where(is_active, cluster_weight * evidence, 0.0), caps)
    picks = _mmr_fill(cand_vecs, scores, slots, k, settings.feed_mmr_lambda, caps)
    picks = [pick for pick in picks if not weak[pick[1]]] + [pick for pick in picks if weak[pick[1]]]  # the best there is, last
    ranked = [(cand[i], float(scores[c, i])) for i, c in picks]
    hits = {hit.id: hit for hit in to_hits(library, ranked)}
    pk_to_id = {pk: stored.paper.id for pk, stored in library.store.get_many(pk for pk, _ in ranked).items()}
    items = []
    for i, c in picks:
        hit = hits.get(pk_to_id.get(cand[i], ""))
        if hit is not None:
            items.append(FeedItem(hit, _reason(profile.labels, members[c], sims[i], bool(weak[c])), int(c)))
    return items


def _keyword_scores(library: Library, query: KeywordQuery, pks: list[int]) -> np.ndarray:
    """BM25 of each candidate for one interest's keyword query, the dislikes' query counting against it."""
    title_weight = library.settings.title_weight
    found = library.keywords.scores(query.terms, pks, title_weight)
    scores = np.array([found.get(pk, 0.0) for pk in pks], dtype=np.float32)
    if query.negative:
        against = library.keywords.scores(list(query.negative), pks, title_weight)
        scores -= query.negative_weight * np.array([against.get(pk, 0.0) for pk in pks], dtype=np.float32)
    return scores


def _mmr_fill(cand_vecs: np.ndarray, scores: np.ndarray, slots: np.ndarray, k: int, lam: float,
              caps: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(candidate, interest) picks: the interest furthest behind its share picks next, by MMR; none
    beyond its cap, even when the others run dry."""
    caps = np.full(len(slots), k) if caps is None else caps
    taken = np.zeros(scores.shape[1], dtype=bool)
    max_sim = np.zeros(scores.shape[1], dtype=np.float32)
    filled = np.zeros(len(slots), dtype=np.int64)
    active = slots > 0
    picks: list[tuple[int, int]] = []
    while len(picks) < min(k, scores.shape[1]):
        if not active.any():
            active = np.isfinite(scores).any(axis=1) & (filled < caps)  # an interest ran dry: the others take its slots
            if not active.any():
                break
            slots = np.maximum(slots, filled + 1)
        behind = np.where(active, filled / np.maximum(slots, 1), np.inf)
        c = int(np.argmin(behind))
        mmr = np.where(taken, -np.inf, lam * scores[c] - (1 - lam) * max_sim)
        i = int(np.argmax(mmr))
        if not np.isfinite(mmr[i]):
            active[c] = False
            continue
        picks.append((i, c))
        taken[i] = True
        filled[c] += 1
        if filled[c] >= slots[c]:
            active[c] = False
        max_sim = np.maximum(max_sim, cand_vecs @ cand_vecs[i])
    return picks


def _popular(library: Library, profile: Profile, k: int, allowed: np.ndarray | None, exclude: set[int]) -> list[FeedItem]:
    ranked = collapse(library, users(library).popular_pks(allowed, exclude, 2 * k))[:k]
    note = "popular in this index; like or save papers to personalise this feed"
    return [FeedItem(hit, {"because": [], "note": note}, 0) for hit in to_hits(library, ranked)]


def user_feed(library: Library, user_id: int, k: int = 10, filters: Filters | None = None, mode: str | None = None) -> list[FeedItem]:
    """Papers for this user, none of which they have already liked, disliked, saved, seen or dismissed."""
    return rank_profile(library, build_profile(library, user_id), k, filters, mode)


def collection_feed(library: Library, user_id: int, name: str, k: int = 10, filters: Filters | None = None,
                    mode: str | None = None) -> list[FeedItem]:
    """More like a collection: its papers are the positives; the user's dislikes and exclusions still apply."""
    collection = get_collection(library, user_id, name)
    members = list(dict.fromkeys(resolve_ids(library, collection.paper_ids).values()))
    profile = build_profile(library, user_id, extra_positive_ids=members)
    keep = [i for i, label in enumerate(profile.labels) if label.get("paper_id") in set(members)]
    profile.vectors, profile.weights = profile.vectors[keep], profile.weights[keep]
    profile.labels = [profile.labels[i] for i in keep]
    profile.texts = [profile.texts[i] for i in keep]
    return rank_profile(library, profile, k, filters, mode)
