"""Data shipped inside the package: the demo corpus."""

from pathlib import Path

DEMO_CORPUS = Path(__file__).resolve().parent / "demo_papers.jsonl"
