"""Which recommendation strategy: 'grouped', 'nearest' (best match to any liked paper) or 'centroid' (Rocchio)?

Simulated users on scifact-subset: the corpus is split into 40 topics by k-means on its
embeddings; a user likes 3 papers from each of 1 or 2 random topics; the rest of those topics is
what they would like. Reported: precision@10 (share of the top 10 from the user's topics) and,
for two-topic users, how often both topics appear in the top 10. Topics come from the same
embedding both strategies use, so the comparison is fair between them but says nothing about the
embedding itself.

    python benchmarks/recommend.py [--users 200]
"""

from __future__ import annotations

import argparse
import sys

import faiss
import numpy as np

from _common import SCIFACT, header
from paperlens.config import Settings
from paperlens.library import ingest, open_library
from paperlens.papers import read_papers
from paperlens.recommend import STRATEGIES, recommend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--index", default="indexes/bench-scifact")
    args = parser.parse_args()
    library = open_library(Settings(index=args.index, show_progress=False), create=True)
    if len(library) == 0:
        ingest(library, read_papers(SCIFACT).papers, show_progress=True)
    pks, vectors = zip(*library.store.iter_vectors())
    pks, vectors = np.concatenate(pks), np.concatenate(vectors)
    kmeans = faiss.Kmeans(vectors.shape[1], 40, niter=25, seed=7, spherical=True)
    kmeans.train(vectors)
    topic = kmeans.index.search(vectors, 1)[1][:, 0]
    ids = {int(pk): paper.paper.id for pk, paper in library.store.get_many(pks.tolist()).items()}
    topic_of = {ids[int(pk)]: int(t) for pk, t in zip(pks, topic)}
    members = {t: [i for i, tt in topic_of.items() if tt == t] for t in set(topic_of.values())}
    big = [t for t, m in members.items() if len(m) >= 20]
    rng = np.random.default_rng(11)
    print(header("recommendation strategies, simulated users on scifact-subset"))
    print(f"{'users':<14}{'strategy':<10}{'precision@10':>14}{'both topics@10':>16}")
    for n_topics in (1, 2):
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in STRATEGIES}
        for _ in range(args.users):
            topics = rng.choice(big, n_topics, replace=False)
            liked = [i for t in topics for i in rng.choice(members[t], 3, replace=False)]
            for strategy in results:
                hits = recommend(library, liked, k=10, strategy=strategy)
                got = [topic_of[h.id] for h in hits]
                precision = sum(t in topics for t in got) / 10
                both = float(all(t in got for t in topics))
                results[strategy].append((precision, both))
        for strategy, rows in results.items():
            p, b = np.mean(rows, axis=0)
            print(f"{f'{n_topics} topic(s)':<14}{strategy:<10}{p:>14.3f}{(b if n_topics == 2 else float('nan')):>16.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
