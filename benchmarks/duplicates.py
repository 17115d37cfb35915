"""Where to put duplicates.DUPLICATE_COSINE: how close the vectors of two records of one paper are,
against those of two different papers whose titles match or nearly match.

Ingest merges a paper into a stored one only when their normalised titles are equal, so the
threshold has one job: tell another version of the same abstract from a different paper that
happens to carry the same title. Measured with the packaged model:

- same paper: each demo paper against versions of its abstract as another source gives it (last
  or first sentence dropped, one word in twenty dropped, cut to its first 60%, a sentence of links
  added, LaTeX markup and line breaks, a listing's truncation to 1,000 characters);
- different papers, same title: each demo paper's title over another demo paper's abstract (the
  hardest case: the title alone pulls the two vectors together);
- real pairs under one normalised title: every such pair in csfcube (16), listed one by one. Read
  by hand, three are different papers ("Twitter sentiment analysis", "Hybrid Monte Carlo",
  "Cross-Language Information Retrieval": 0.63 to 0.84) and the rest versions of one paper from two
  sources (0.89 and up; "Comparative study of LSA vs Word2vec…" at 0.93 is a summary of its paper).

    python benchmarks/duplicates.py
"""

from __future__ import annotations

import itertools
import json
import re

import numpy as np

from _common import SHARED_DATA, header, percentile
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.duplicates import DUPLICATE_COSINE
from paperlens.embed import EncoderSpec, load_encoder, model_identity
from paperlens.papers import paper_text, read_papers, title_key

CSFCUBE = SHARED_DATA / "csfcube-dev" / "corpus.jsonl"


def sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+", text.strip())


def versions(abstract: str, rng: np.random.Generator) -> dict[str, str]:
    parts = sentences(abstract)
    words = abstract.split()
    keep = rng.random(len(words)) >= 0.05
    return {
        "last sentence dropped": " ".join(parts[:-1]) if len(parts) > 1 else abstract,
        "first sentence dropped": " ".join(parts[1:]) if len(parts) > 1 else abstract,
        "1 word in 20 dropped": " ".join(w for w, k in zip(words, keep) if k),
        "first 60% only": " ".join(words[: max(1, int(len(words) * 0.6))]),
        "links sentence added": abstract + " Code and models are available at https://github.com/example/project.",
        "LaTeX and line breaks": re.sub(r"(\d+(?:\.\d+)?)%", r"$\1\\%$", abstract).replace(". ", ".\n  ", 3),
        "cut at 1,000 characters": abstract[:1000].rsplit(" ", 1)[0] + "…" if len(abstract) > 1000 else abstract,
    }


def main() -> None:
    settings = Settings(show_progress=False)
    encoder = load_encoder(EncoderSpec(model=model_identity(settings.model or "default")))
    rng = np.random.default_rng(7)
    demo = read_papers(DEMO_CORPUS).papers
    base = encoder.encode([p.text for p in demo])

    same: dict[str, list[float]] = {}
    for kind in versions(demo[0].abstract, rng):
        same[kind] = []
    for paper, vector in zip(demo, base):
        changed = versions(paper.abstract, rng)
        vectors = encoder.encode([paper_text(paper.title, text) for text in changed.values()])
        for kind, other in zip(changed, vectors):
            same[kind].append(float(vector @ other))

    swapped = encoder.encode([paper_text(a.title, b.abstract) for a, b in zip(demo, demo[1:] + demo[:1])])
    # Paper a (its own title and abstract) against a's title over b's abstract.
    same_title = [float(x @ y) for x, y in zip(base, swapped)]

    records = [json.loads(line) for line in CSFCUBE.open()]
    by_title: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if key := title_key(record.get("title")):
            by_title.setdefault(key, []).append(i)
    equal = [pair for group in by_title.values() for pair in itertools.combinations(group, 2)]
    keys = sorted({k for pair in equal for k in pair})
    vectors = dict(zip(keys, encoder.encode([paper_text(records[k].get("title"), records[k].get("text")) for k in keys])))
    equal_cos = sorted(((float(vectors[i] @ vectors[j]), i, j) for i, j in equal), reverse=True)

    print(header("cosine of two records of one paper vs two different papers (packaged model)"))
    print(f"\n{'pairs':<52}{'n':>6}{'min':>8}{'p5':>8}{'median':>8}{'max':>8}")

    def row(name: str, values: list[float]) -> None:
        if values:
            print(f"{name:<52}{len(values):>6}{min(values):>8.3f}{percentile(values, 5):>8.3f}"
                  f"{float(np.median(values)):>8.3f}{max(values):>8.3f}")
        else:
            print(f"{name:<52}{0:>6}")

    for kind, values in same.items():
        row(f"same paper: {kind}", values)
    row("same paper: all versions", [v for values in same.values() for v in values])
    row("different papers, same title (demo, swapped abstracts)", same_title)
    print(f"\ncsfcube pairs under one normalised title ({len(equal_cos)}): cosine, same text, ids, title")
    for cosine, i, j in equal_cos:
        a, b = records[i], records[j]
        print(f"  {cosine:.3f} {'same text' if a['text'] == b['text'] else '         '} "
              f"{a['_id']:>10} {b['_id']:>10}  {a['title'][:70]}")
    print(f"\nDUPLICATE_COSINE = {DUPLICATE_COSINE}: records of one paper at or above it are merged")


if __name__ == "__main__":
    main()
