"""Personal feeds at scale: latency by history size, and a leave-one-out hit rate on simulated users.

The index (100,000 papers) is synthetic but anchored in real embeddings: the 53 demo papers,
encoded by the packaged model, are the topic centres. Each topic has subtopics (centre plus
Gaussian noise, cosine about 0.8 to the topic) and each subtopic 10 papers (subtopic plus
noise, cosine about 0.85 to it). So papers of one subtopic are about 0.73 similar to each other,
0.47 to their topic's other subtopics and 0.1-0.3 to other topics: a "research niche" structure.
Paper rows are synthetic (id, a title that names no topic, a date in the last 3 years).

Latency: users with 10, 100 and 1,000 interactions (70% likes spread over 3 topics, 10%
dislikes, 20% seen, dated over the last 90 days); ``user_feed(k=20)``, warm, median and p95.

Hit rate: a simulated user likes 5 papers of one subtopic (one interest), or 5 of one subtopic and
5 of a subtopic in another topic (two interests). One liked paper of the first subtopic is held
out; a hit is that paper in the top 10. For one interest 1.0 is reachable (5 unseen papers of the
niche fit in 10 slots); for two, the feed gives each niche a share (about 4 and 5 of the 10 slots
for 6 and 5 unseen papers), so it trades some hit rate for always showing both interests, which
the last row measures (both niches in the top 10). Compared with ``recommend`` (the stateless
"nearest" and "centroid" strategies) given the same likes.

An interest with no evidence: a user likes 5 papers of one subtopic (one held out, as above) and
also has a free-text interest unrelated to the whole index (a random unit vector: its best papers
are about 0.2 similar, as a biology interest over a CS collection). Its share of the top 10 and the
held-out hit rate say whether such an interest crowds out the one the likes show.

    python benchmarks/feeds.py [--users 100] [--index indexes/bench-feeds-100k]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
from tqdm import tqdm

from _common import header, percentile
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.feeds import user_feed
from paperlens.library import MANIFEST_FILE, Manifest, ingest, open_library
from paperlens.papers import Paper, read_papers
from paperlens.recommend import recommend
from paperlens.store import UserStore
from paperlens.users import create_user

PAPERS = 100_000
PER_SUBTOPIC = 10
SUBTOPIC_NOISE = 0.038  # per dimension, 384-d: cosine ~0.8 between a subtopic and its topic
PAPER_NOISE = 0.031  # cosine ~0.85 between a paper and its subtopic


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def topic_centres(folder: str) -> np.ndarray:
    """The demo papers' real embeddings."""
    library = open_library(Settings(index=folder, show_progress=False), create=True)
    if len(library) == 0:
        ingest(library, read_papers(DEMO_CORPUS).papers)
    vectors = np.concatenate([v for _, v in library.store.iter_vectors()])
    library.close()
    return vectors


def build_index(folder: str, centres: np.ndarray, rng: np.random.Generator) -> None:
    """100k synthetic papers written straight to the store; open_library builds the FAISS file."""
    n_sub = PAPERS // PER_SUBTOPIC
    sub_topic = np.arange(n_sub) % len(centres)
    subs = _unit(centres[sub_topic] + rng.normal(0, SUBTOPIC_NOISE, (n_sub, centres.shape[1])))
    library = open_library(Settings(index=folder, show_progress=False), create=True)
    today = dt.date.today()
    for start in tqdm(range(0, PAPERS, 10_000), desc="synthetic papers"):
        rows = np.arange(start, min(start + 10_000, PAPERS))
        sub = rows // PER_SUBTOPIC
        vectors = _unit(subs[sub] + rng.normal(0, PAPER_NOISE, (len(rows), centres.shape[1])))
        # The title names no topic: the keyword side must not be handed the answer.
        papers = [Paper(id=f"syn{i:06d}", title=f"Synthetic paper {i}", abstract="",
                        date=(today - dt.timedelta(days=int(rng.integers(0, 1100)))).isoformat(), categories=[f"t{sub_topic[s]}"])
                  for i, s in zip(rows, sub)]
        with library.store.transaction():
            outcomes = library.store.upsert_papers(papers, [p.id for p in papers])
            library.store.put_vectors([o.pk for o in outcomes], vectors)
    Manifest(model="sentence-transformers/all-MiniLM-L6-v2", dim=centres.shape[1], layout="flat").write(library.folder)
    library.close()


def papers_of(sub: int) -> list[str]:
    return [f"syn{i:06d}" for i in range(sub * PER_SUBTOPIC, (sub + 1) * PER_SUBTOPIC)]


def latency(library, rng: np.random.Generator, n_topics: int) -> list[tuple[int, float, float, int]]:
    rows = []
    store = UserStore(library.store)
    now = dt.datetime.now(dt.timezone.utc)
    n_sub = PAPERS // PER_SUBTOPIC
    for size in (10, 100, 1000):
        times, lengths = [], []
        for _ in range(3):
            user = create_user(library, f"bench-{size}")
            topics = rng.choice(n_topics, 3, replace=False)
            subs = [s for s in range(n_sub) if s % n_topics in topics]
            kinds = rng.choice(["like", "dislike", "seen"], size, p=[0.7, 0.1, 0.2])
            with library.store.transaction():
                for kind in kinds:
                    pid = f"syn{int(rng.integers(0, PAPERS)) if kind != 'like' else int(rng.choice(subs)) * PER_SUBTOPIC + int(rng.integers(0, PER_SUBTOPIC)):06d}"
                    when = (now - dt.timedelta(days=float(rng.uniform(0, 90)))).isoformat(timespec="seconds")
                    store.add_interaction(user.id, pid, str(kind), when)
            user_feed(library, user.id, k=20)  # warm: caches, first FAISS call
            for _ in range(5):
                start = time.perf_counter()
                items = user_feed(library, user.id, k=20)
                times.append(time.perf_counter() - start)
            lengths.append(len({i.interest for i in items}))
        rows.append((size, float(np.median(times)) * 1000, percentile(times, 95) * 1000, int(np.median(lengths))))
    return rows


def hit_rate(library, rng: np.random.Generator, n_users: int, n_topics: int) -> dict[str, dict[str, float]]:
    store = UserStore(library.store)
    n_sub = PAPERS // PER_SUBTOPIC
    results: dict[str, dict[str, float]] = {}
    for interests in (1, 2):
        both: dict[str, list[bool]] = {}
        label = f"{interests} interest{'s' if interests > 1 else ''}"
        scores: dict[str, list[float]] = {"feed": [], "recommend nearest": [], "recommend centroid": []}
        for _ in tqdm(range(n_users), desc=label):
            first = int(rng.integers(0, n_sub))
            subs = [first]
            if interests == 2:
                other = int(rng.integers(0, n_sub))
                while other % n_topics == first % n_topics:
                    other = int(rng.integers(0, n_sub))
                subs.append(other)
            liked = [pid for s in subs for pid in rng.choice(papers_of(s), 5, replace=False)]
            held_out, liked = liked[0], liked[1:]
            user = create_user(library, "sim")
            with library.store.transaction():
                for pid in liked:
                    store.add_interaction(user.id, str(pid), "like")
            ranked = {"feed": [i.hit.id for i in user_feed(library, user.id, k=10)]}
            for strategy in ("nearest", "centroid"):
                ranked[f"recommend {strategy}"] = [h.id for h in recommend(library, [str(p) for p in liked], k=10, strategy=strategy)]
            for name, got in ranked.items():
                scores[name].append(held_out in got)
                niches = {int(pid[3:]) // PER_SUBTOPIC for pid in got}
                both.setdefault(name, []).append(all(s in niches for s in subs))
        results[label] = {name: float(np.mean(values)) for name, values in scores.items()}
    results["2 interests: both niches in top 10"] = {name: float(np.mean(values)) for name, values in both.items()}
    return results


def unrelated_interest(library, rng: np.random.Generator, n_users: int, dim: int) -> tuple[float, float]:
    """(hit@10 of the held-out liked paper, mean slots of the top 10 given to the unrelated interest)."""
    store = UserStore(library.store)
    hits, slots = [], []
    for _ in tqdm(range(n_users), desc="1 interest + an unrelated one"):
        liked = [str(pid) for pid in rng.choice(papers_of(int(rng.integers(0, PAPERS // PER_SUBTOPIC))), 5, replace=False)]
        held_out, liked = liked[0], liked[1:]
        user = create_user(library, "sim")
        with library.store.transaction():
            for pid in liked:
                store.add_interaction(user.id, pid, "like")
            store.set_interests(user.id, ["an interest the index knows nothing of"], _unit(rng.normal(0, 1, (1, dim))))
        items = user_feed(library, user.id, k=10)
        hits.append(held_out in [item.hit.id for item in items])
        slots.append(sum(any("interest" in why for why in item.reason["because"]) for item in items))
    return float(np.mean(hits)), float(np.mean(slots))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100, help="simulated users per hit-rate row")
    parser.add_argument("--index", default="indexes/bench-feeds-100k")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = topic_centres(args.index + "-topics")
    from pathlib import Path

    if not (Path(args.index) / MANIFEST_FILE).exists():
        build_index(args.index, centres, rng)
    library = open_library(Settings(index=args.index, show_progress=False))
    print(header(f"personal feeds on {len(library):,} papers (synthetic around {len(centres)} real embeddings)"))
    print(f"\n{'interactions':>12} {'median ms':>10} {'p95 ms':>8} {'interests':>10}")
    for size, median_ms, p95_ms, clusters in latency(library, rng, len(centres)):
        print(f"{size:>12,} {median_ms:>10.1f} {p95_ms:>8.1f} {clusters:>10}")
    print(f"\nleave-one-out hit@10, {args.users} simulated users per row")
    rates = hit_rate(library, rng, args.users, len(centres))
    names = list(next(iter(rates.values())))
    print(f"{'users':<36}" + "".join(f"{name:>20}" for name in names))
    for label, row in rates.items():
        print(f"{label:<36}" + "".join(f"{row[name]:>20.3f}" for name in names))
    hit, slots = unrelated_interest(library, rng, args.users, centres.shape[1])
    print(f"{'1 interest + an unrelated interest':<36}{hit:>20.3f}   (feed; the unrelated interest takes {slots:.2f} of 10 slots)")
    library.close()


if __name__ == "__main__":
    main()
