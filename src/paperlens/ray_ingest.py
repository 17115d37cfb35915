"""Reading and encoding on a Ray cluster: ``paperlens ingest FILE... --ray ADDRESS``.

Two Ray Data stages, with the driver between them as the one writer of the index:

1. read: JSONL (and BEIR corpus.jsonl) and Parquet files are read by Ray Data tasks, one per file,
   each turning its records into Papers with the readers of papers.py (``read_bytes``: the same
   lines, the same conversion, the same skips as a plain ingest). Other formats are read by
   paperlens' reader on the driver.
2. encode: ``library.ingest`` decides which papers are new or changed, as in a plain ingest, and
   only their texts go to an actor pool of encoders (``RayEncoder``); the vectors come back to the
   driver, which writes papers and vectors through ``Library.apply_write``. Nothing is written on
   the nodes, so no shared storage is needed for the index.

``ray.data.read_json`` is not used for JSONL: Arrow (and pandas, with ``lines=True``) infer one
schema across the records, which fills keys a record lacks with nulls, turns ISO dates into
timestamps and fails the whole file on one broken line, where paperlens skips that line.

Ray is imported inside the functions here, so a plain install never imports it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cluster import ClusterInfo, connect
from .embed import EncoderSpec, load_encoder, model_identity
from .errors import PaperlensError
from .onnx_encoder import encoder_batches
from .papers import BYTES_FORMATS, ReadResult, Skipped, beir_corpus, read_bytes, read_papers, source_format

# Encoder batches per call of an actor: enough that a call's overhead (~ms) is small against the
# encoding (~1 s for 8 x 16 abstracts on one core), few enough that the progress bar moves.
BATCHES_PER_CALL = 8


@dataclass(frozen=True)
class PoolPlan:
    """How many encoder actors, and what each asks of Ray."""

    max_size: int
    num_cpus: float
    num_gpus: float | None  # 1 per GPU actor; None (Ray's default, no GPU) on a CPU cluster, never 0
    threads: int


def plan_pool(cluster: ClusterInfo, spec: EncoderSpec, batches: int) -> PoolPlan:
    """One actor per GPU where the cluster has GPUs and the encoder may use them (a GPU actor also
    takes one CPU); else one single-threaded actor per CPU (``threads`` CPUs each when set), so that
    actors on one node do not fight over its cores. The read stage has finished before this pool
    starts, so no read task waits for a CPU the pool holds. Never more actors than calls."""
    calls = max(1, -(-batches // BATCHES_PER_CALL))
    if cluster.gpus >= 1 and spec.device != "cpu" and spec.backend != "onnx-int8":
        return PoolPlan(max_size=max(1, min(int(cluster.gpus), calls)), num_cpus=1, num_gpus=1, threads=spec.threads or 1)
    threads = spec.threads or 1
    return PoolPlan(max_size=max(1, min(int(cluster.cpus // threads), calls)), num_cpus=threads, num_gpus=None, threads=threads)


class _EncodeBatch:
    """An encoder actor: loads the model once, then encodes the batches Ray Data hands it."""

    def __init__(self, spec: EncoderSpec):
        import ray

        self.encoder = load_encoder(spec)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each row is one encoder batch: its texts and their positions in the whole input."""
        vectors = np.concatenate([self.encoder.encode([str(text) for text in texts]) for texts in batch["texts"]])
        return {"n": np.concatenate(list(batch["rows"])), "vector": vectors, "node": np.full(len(vectors), self.node)}


class RayEncoder:
    """Encodes texts on the cluster's actor pool: the same model, backend and settings as
    ``Library.encoder`` (``encoder_spec``), so the same vectors; ``ingest`` takes it as its encoder."""

    def __init__(self, spec: EncoderSpec, cluster: ClusterInfo):
        self.spec = spec
        self.cluster = cluster
        self.identity = model_identity(spec.model)
        self._dim: int | None = None
        # The nodes whose actors encoded something, for the benchmark and the tests.
        self.nodes_used: set[str] = set()

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.encode(["dimension"])
        assert self._dim is not None
        return self._dim

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        import ray
        from tqdm import tqdm

        batches = encoder_batches(texts, self.spec.batch_size)
        pool = plan_pool(self.cluster, self.spec, len(batches))
        spec = EncoderSpec(**{**self.spec.__dict__, "threads": pool.threads})
        items = [{"rows": rows.tolist(), "texts": [texts[i] for i in rows]} for rows in batches]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // BATCHES_PER_CALL + 1, pool.max_size * 4)))
        encoded = dataset.map_batches(
            _EncodeBatch,
            fn_constructor_args=(spec,),
            batch_size=BATCHES_PER_CALL,
            batch_format="numpy",
            # A fixed pool of the planned size: one that starts at one actor and grows can finish a
            # small ingest before it grows, leaving the other nodes idle (seen on a fresh clone's
            # first run). The plan never has more actors than calls, so none of them waits idle.
            compute=ray.data.ActorPoolStrategy(min_size=pool.max_size, max_size=pool.max_size),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
        )
        vectors: np.ndarray | None = None
        with tqdm(total=len(texts), desc=f"encoding on Ray ({pool.max_size} actors)", unit="paper",
                  disable=not show_progress) as bar:
            for batch in _cluster_errors("encoding", lambda: encoded.iter_batches(batch_size=None, batch_format="numpy")):
                if vectors is None:
                    vectors = np.zeros((len(texts), batch["vector"].shape[1]), dtype=np.float32)
                vectors[batch["n"]] = batch["vector"]
                self.nodes_used.update(str(node) for node in batch["node"])
                bar.update(len(batch["n"]))
        if vectors is None:
            raise PaperlensError("the Ray cluster returned no vectors")
        self._dim = vectors.shape[1]
        return vectors


def join(address: str) -> ClusterInfo:
    """Join the cluster (cluster.connect) and set Ray Data up for ingest: results in input order, and
    no progress bars or start-up lines of its own (paperlens draws one bar, as in a plain ingest)."""
    info = connect(address)
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no "Dataset ... execution finished" per stage
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled": we said so
    return info




def read_on_cluster(paths: list[Path], fmt: str | None = None) -> list[ReadResult]:
    """``[read_papers(path, fmt) for path in paths]``, with JSONL and Parquet files read by Ray Data
    tasks. A JSONL file that is not UTF-8 is read again on the driver, which finds its encoding."""
    formats = [source_format(path, fmt) for path in paths]
    on_cluster = {n: str(beir_corpus(path).resolve()) for n, (path, f) in enumerate(zip(paths, formats)) if f in BYTES_FORMATS}
    rows: dict[int, list[dict[str, Any]]] = {n: [] for n in on_cluster}
    if on_cluster:
        import ray

        by_file: dict[str, list[int]] = {}
        for n, file in on_cluster.items():
            by_file.setdefault(file, []).append(n)  # a file given twice is read once
        dataset = ray.data.read_binary_files(sorted(by_file), include_paths=True)
        converted = dataset.flat_map(_file_records, fn_kwargs={"formats": {file: formats[ns[0]] for file, ns in by_file.items()}})
        for row in _cluster_errors("reading", lambda: converted.iter_rows()):
            if row["fatal"]:
                raise PaperlensError(row["fatal"])
            for n in by_file[row["path"]]:
                rows[n].append(row)
    results = []
    for n, (path, f) in enumerate(zip(paths, formats)):
        if n not in on_cluster or any(row["reread"] for row in rows[n]):
            results.append(read_papers(path, f))
            continue
        records = sorted(rows[n], key=lambda row: row["line"])
        papers = [pickle.loads(row["paper"]) for row in records if row["paper"]]
        skipped = [Skipped(row["line"], row["error"]) for row in records if not row["paper"]]
        results.append(ReadResult(str(path), f, papers, skipped))
    return results


def _file_records(row: dict[str, Any], formats: dict[str, str]) -> list[dict[str, Any]]:
    """In a Ray task: one file's records as rows (a pickled Paper, or why the record was skipped)."""
    path = row["path"]
    empty = {"path": path, "line": 0, "paper": b"", "error": "", "reread": False, "fatal": ""}
    try:
        records = list(read_bytes(row["bytes"], formats[path], path))
    except UnicodeDecodeError:
        return [{**empty, "reread": True}]
    except PaperlensError as exc:
        return [{**empty, "fatal": str(exc)}]
    return [{**empty, "line": line or n, "paper": pickle.dumps(item) if not isinstance(item, Exception) else b"",
             "error": str(item) if isinstance(item, Exception) else ""}
            for n, (line, item) in enumerate(records, start=1)]


def _cluster_errors(stage: str, rows) -> Iterator[Any]:
    """Ray's errors (a task that died, a node that left, a file a node cannot see) as one line."""
    import ray

    try:
        yield from rows()
    except ray.exceptions.RayError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # The last line that names an exception says what went wrong; the first names the task.
        cause = next((line for line in reversed(lines) if "Error" in line.split(":", 1)[0]), lines[0] if lines else exc.__class__.__name__)
        raise PaperlensError(f"{stage} on the Ray cluster failed: {cause[:300]}") from None
