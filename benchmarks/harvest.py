"""Harvest speed: records per second from a local OAI-PMH server (tests/oaiserver.py) into a new index.

Three runs over the same server: the first adds every record (encoding dominates), the second asks
for the same days again with --from (every record unchanged: fetching, parsing and hashing), the
third is the incremental run that follows (noRecordsMatch). Abstracts are scifact-subset's, so
texts have real lengths.

    python benchmarks/harvest.py [--records 1000] [--page-size 250]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import SCIFACT, header

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=250)
    args = parser.parse_args()
    corpus = SCIFACT / "corpus.jsonl"
    if not corpus.exists():
        sys.exit(f"{corpus} is missing: this benchmark reads its abstracts")

    from oaiserver import OaiRecord, OaiServer, serve
    from paperlens.config import Settings
    from paperlens.harvest import Source, harvest
    from paperlens.library import open_library

    rows = [json.loads(line) for line in corpus.open()][:args.records]
    records = [OaiRecord(f"2401.{n:05d}", f"2024-01-{1 + n % 28:02d}", row.get("title") or row["text"][:80], row["text"])
               for n, row in enumerate(rows, start=1)]
    server = OaiServer(records, page_size=args.page_size)
    httpd, _thread = serve(server)
    print(header("OAI-PMH harvest into a new index (local server, arXiv metadata)"))
    print(f"# {len(records)} records, {args.page_size} a page")
    print(f"{'run':<28} {'records':>8} {'pages':>6} {'added':>6} {'unchanged':>9} {'seconds':>8} {'records/s':>10}")
    try:
        with tempfile.TemporaryDirectory() as folder, open_library(Settings(index=Path(folder) / "ix", show_progress=False), create=True) as library:
            library.encoder  # noqa: B018 -- load the model before the clock starts
            for name, from_ in (("first (all new)", None), ("again --from 2024-01-01", "2024-01-01"), ("incremental (nothing new)", None)):
                start = time.perf_counter()
                report = harvest(library, Source(server.url), from_=from_)
                seconds = time.perf_counter() - start
                rate = report.records / seconds if report.records else 0.0
                print(f"{name:<28} {report.records:>8} {report.pages:>6} {report.added:>6} {report.unchanged:>9} {seconds:>8.2f} {rate:>10.0f}")
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    main()
