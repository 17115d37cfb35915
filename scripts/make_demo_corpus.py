"""Convert the seed listing (daily-papers text) into the packaged demo corpus, once.

    python scripts/make_demo_corpus.py ../shared/seeds/000_ac7b75b8e9eeede0.txt
"""

import json
import sys

from paperlens.data import DEMO_CORPUS
from paperlens.papers import read_papers


def main(source: str) -> None:
    result = read_papers(source, "listing")
    with DEMO_CORPUS.open("w", encoding="utf-8") as out:
        for paper in result.papers:
            record = paper.to_dict()
            record["source"] = "daily-papers listing"
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{DEMO_CORPUS}: {len(result.papers)} papers, {len(result.skipped)} skipped")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds/000_ac7b75b8e9eeede0.txt")
