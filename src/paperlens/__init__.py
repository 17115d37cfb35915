"""paperlens: semantic search and recommendation for scientific papers.

The pipeline is the architecture: papers (ingest) → embed → index → search / recommend → api, cli.
"""

__version__ = "0.1.0"
