"""How long importing a reference library takes (imports.py), by format and by step.

A synthetic library of N entries in each format against an index of the demo corpus: one entry in
ten names a demo paper by its title, one in ten carries an arXiv id and one in ten a DOI the index
lacks, the rest are title-only entries it lacks (unmatched: nothing to encode). Steps: read (the
format's parser), match (DOI, arXiv and title lookups) and the whole import (likes recorded in one
transaction). A last row adds 20 entries with abstracts, where encoding the new papers dominates.

    python benchmarks/imports.py [N]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from _common import header
from paperlens import users as user_ops
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.imports import decode, detect_format, import_library, match_references, read_references
from paperlens.library import ingest, open_library
from paperlens.papers import read_papers


def entries(n: int, titles: list[str]) -> list[dict]:
    out = []
    for i in range(n):
        entry = {"key": f"ref{i}", "title": f"An unindexed study number {i} of things", "author": [("Müller", "José"), ("Smith", "Ann")]}
        if i % 10 == 0:
            entry["title"] = titles[i // 10 % len(titles)].upper()
        elif i % 10 == 1:
            entry["arxiv"] = f"{2300 + i % 12:04d}.{i:05d}v2"
        elif i % 10 == 2:
            entry["doi"] = f"10.5555/bench.{i}"
        out.append(entry)
    return out


def bibtex(items: list[dict]) -> str:
    blocks = []
    for e in items:
        fields = [f"  title = {{{e['title']}}}", "  author = {" + " and ".join(f"{f}, {g}" for f, g in e["author"]) + "}", "  year = {2024}"]
        if "arxiv" in e:
            fields += [f"  eprint = {{{e['arxiv']}}}", "  archivePrefix = {arXiv}"]
        if "doi" in e:
            fields.append(f"  doi = {{{e['doi']}}}")
        if "abstract" in e:
            fields.append(f"  abstract = {{{e['abstract']}}}")
        blocks.append(f"@article{{{e['key']},\n" + ",\n".join(fields) + "\n}\n")
    return "\n".join(blocks)


def csl_json(items: list[dict]) -> str:
    return json.dumps([{"id": e["key"], "type": "article-journal", "title": e["title"], "DOI": e.get("doi"),
                        "URL": f"https://arxiv.org/abs/{e['arxiv']}" if "arxiv" in e else None, "abstract": e.get("abstract"),
                        "author": [{"family": f, "given": g} for f, g in e["author"]], "issued": {"date-parts": [[2024]]}}
                       for e in items], ensure_ascii=False)


def ris(items: list[dict]) -> str:
    records = []
    for e in items:
        lines = ["TY  - JOUR", f"ID  - {e['key']}", f"TI  - {e['title']}", *(f"AU  - {f}, {g}" for f, g in e["author"]), "PY  - 2024"]
        if "arxiv" in e:
            lines.append(f"UR  - https://arxiv.org/abs/{e['arxiv']}")
        if "doi" in e:
            lines.append(f"DO  - {e['doi']}")
        if "abstract" in e:
            lines.append(f"AB  - {e['abstract']}")
        records.append("\n".join([*lines, "ER  - ", ""]))
    return "\n".join(records)


WRITERS = {"bibtex": (bibtex, "library.bib"), "csl-json": (csl_json, "library.json"), "ris": (ris, "library.ris")}


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(header(f"imports: a library of {n:,} entries against the demo corpus"))
    demo = read_papers(DEMO_CORPUS).papers
    items = entries(n, [paper.title for paper in demo])
    with tempfile.TemporaryDirectory() as folder, open_library(Settings(index=Path(folder), show_progress=False), create=True) as library:
        ingest(library, demo)
        print("\n| format | entries | file | read | match | whole import | matched | recorded |\n|---|---:|---:|---:|---:|---:|---:|---:|")
        for fmt, (write, name) in WRITERS.items():
            data = write(items).encode()
            text = decode(data)
            (refs, _), read_s = timed(read_references, text, detect_format(text, name))
            matches, match_s = timed(match_references, library, refs)
            user = user_ops.create_user(library, f"bench {fmt}")
            report, import_s = timed(import_library, library, user.id, data, filename=name)
            print(f"| {fmt} | {n:,} | {len(data) / 1e6:.2f} MB | {read_s:.2f} s | {match_s:.2f} s | {import_s:.2f} s | "
                  f"{sum(m is not None for m in matches):,} | {report.recorded:,} |")
        fresh = [{**e, "key": f"new{i}", "title": f"A new paper on topic {i}", "abstract": f"We study topic {i} with a new method. " * 8}
                 for i, e in enumerate(entries(20, ["x"]))]
        user = user_ops.create_user(library, "bench new")
        report, import_s = timed(import_library, library, user.id, bibtex(fresh).encode(), filename="new.bib")
        print(f"\n20 entries with abstracts the index lacks (bibtex): {report.papers_added} papers added, "
              f"whole import {import_s:.2f} s ({import_s / 20 * 1000:.0f} ms a paper, mostly encoding)")


if __name__ == "__main__":
    main()
