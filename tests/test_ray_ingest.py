"""ingest --ray on a real two-node Ray cluster (two raylets of one CPU each, in this process):
the same papers, vectors and search results as a plain ingest of the same file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from paperlens.cli import main
from paperlens.cluster import ClusterInfo
from paperlens.config import Settings
from paperlens.data import DEMO_CORPUS
from paperlens.embed import EncoderSpec
from paperlens.library import open_library
from paperlens.papers import read_papers
from paperlens.search import search_text

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'paperlens[ray]')")

from paperlens import onnx_encoder, ray_ingest  # noqa: E402  (after the skip: it is only usable with Ray)

QUERIES = ["diffusion models for image generation", "reinforcement learning from human feedback",
           "sentiment analysis of financial text", "speech recognition", "protein structure", "efficient attention"]


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each, on ports Ray picks, under a temp folder of their own (RAY_TMPDIR), so
    neither the default port 6379 nor /tmp/ray's address file of a cluster 'ray start' left is touched."""
    from ray.cluster_utils import Cluster

    folder = tempfile.mkdtemp(prefix="plray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        info = ray_ingest.join(nodes.address)
        assert info.nodes == 2 and info.cpus == 2
        yield nodes.address
    finally:
        ray.shutdown()
        nodes.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
        shutil.rmtree(folder, ignore_errors=True)


def run(*args) -> dict:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def indexes(cluster, tmp_path_factory):
    """The demo corpus ingested plainly and with --ray (actors fed one batch of 16 a call, so both nodes encode)."""
    folder = tmp_path_factory.mktemp("ray-ingest")
    plain = run("ingest", DEMO_CORPUS, "--index", folder / "plain", "--json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray_ingest, "BATCHES_PER_CALL", 1)
        used = []
        patch.setattr(ray_ingest.RayEncoder, "encode", recording(ray_ingest.RayEncoder.encode, used))
        distributed = run("ingest", DEMO_CORPUS, "--index", folder / "ray", "--ray", cluster, "--json")
    return folder, plain, distributed, used


def recording(encode, used: list):
    def wrapped(self, texts, show_progress=False):
        vectors = encode(self, texts, show_progress)
        used.append((len(texts), set(self.nodes_used)))
        return vectors

    return wrapped


def stored(folder: Path) -> tuple[list[str], np.ndarray]:
    ids = sorted(paper.id for paper in read_papers(DEMO_CORPUS).papers)
    with open_library(Settings(index=folder, show_progress=False)) as library:
        pks = library.store.pks_for_ids(ids)
        held = sorted(pks)
        return held, library.store.get_vectors([pks[i] for i in held], library.manifest.dim)


def top10(folder: Path) -> dict[str, list[str]]:
    with open_library(Settings(index=folder, show_progress=False)) as library:
        return {query: [hit.id for hit in search_text(library, query, 10)] for query in QUERIES}


def test_a_ray_ingest_holds_what_a_plain_ingest_holds(indexes):
    folder, plain, distributed, used = indexes
    assert {k: v for k, v in distributed.items() if k != "index"} == {k: v for k, v in plain.items() if k != "index"}
    assert distributed["added"] == distributed["encoded"] == distributed["total"] == 53
    assert used == [(53, used[0][1])] and len(used[0][1]) == 2, "both nodes' actors should have encoded"
    plain_ids, plain_vectors = stored(folder / "plain")
    ray_ids, ray_vectors = stored(folder / "ray")
    assert ray_ids == plain_ids and len(ray_ids) == 53
    assert np.abs(ray_vectors - plain_vectors).max() < 1e-5
    assert top10(folder / "ray") == top10(folder / "plain")


def test_a_second_ray_ingest_changes_nothing(indexes, cluster):
    folder = indexes[0]
    again = run("ingest", DEMO_CORPUS, "--index", folder / "ray", "--ray", cluster, "--json")
    assert (again["added"], again["updated"], again["unchanged"], again["encoded"], again["total"]) == (0, 0, 53, 0, 53)


def test_an_updated_paper_is_the_only_one_encoded_again(indexes, cluster, tmp_path):
    folder = indexes[0]
    records = [json.loads(line) for line in DEMO_CORPUS.read_text().splitlines() if line.strip()]
    records[7]["abstract"] = "We study the folding of proteins with graph neural networks and molecular dynamics."
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(json.dumps(record) + "\n" for record in records))
    report = run("ingest", changed, "--index", folder / "ray", "--ray", cluster, "--json")
    assert (report["updated"], report["unchanged"], report["encoded"], report["total"]) == (1, 52, 1, 53)
    with open_library(Settings(index=folder / "ray", show_progress=False)) as library:
        pk = library.store.pks_for_ids([records[7]["id"]])[records[7]["id"]]
        vector = library.store.get_vectors([pk], library.manifest.dim)[0]
        expected = library.encoder.encode([f"{records[7]['title']}. {records[7]['abstract']}"])[0]
        assert np.abs(vector - expected).max() < 1e-5
        assert search_text(library, "protein folding graph neural networks", 1)[0].id == records[7]["id"]


def test_files_read_on_the_cluster_read_as_on_the_driver(cluster, tmp_path):
    """Same papers and the same skipped lines, for the files Ray Data reads (JSONL, Parquet) and for
    those read on the driver (CSV; a JSONL file that is not UTF-8)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = [json.dumps({"id": "2401.00001", "title": "First", "abstract": "One.", "date": "2024-01-02"}),
             "", "{broken", json.dumps({"id": "x1", "note": "no title"}),
             json.dumps({"title": "Line\u2028separator inside", "abstract": "Kept whole.", "year": 2020}, ensure_ascii=False),
             json.dumps({"id": "2401.00002v3", "title": "Second", "extra": {"k": [1, 2]}})]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    parquet = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "p1", "title": "Parquet one", "abstract": None},
                                         {"id": "p2", "title": None, "abstract": None}]), parquet)
    latin = tmp_path / "c.jsonl"
    latin.write_bytes(json.dumps({"id": "c1", "title": "Caf\u00e9 r\u00e9sum\u00e9 of na\u00efve methods"}, ensure_ascii=False)
                      .encode("cp1252") + b"\n")
    csv = tmp_path / "d.csv"
    csv.write_text("title,abstract\nA CSV paper,Its abstract.\n")
    files = [jsonl, parquet, latin, csv]
    on_cluster = ray_ingest.read_on_cluster(files)
    on_driver = [read_papers(path) for path in files]
    assert [(r.format, r.encoding, r.papers, r.skipped) for r in on_cluster] == [(r.format, r.encoding, r.papers, r.skipped) for r in on_driver]
    assert [len(r.papers) for r in on_cluster] == [3, 1, 1, 1] and [len(r.skipped) for r in on_cluster] == [2, 1, 0, 0]


def test_pool_plan_takes_gpus_where_there_are_some():
    spec = EncoderSpec(model="default")
    gpu = ray_ingest.plan_pool(ClusterInfo("x", nodes=2, cpus=32, gpus=2), spec, batches=1000)
    assert (gpu.max_size, gpu.num_gpus, gpu.num_cpus) == (2, 1, 1)
    cpu = ray_ingest.plan_pool(ClusterInfo("x", nodes=2, cpus=8, gpus=0), spec, batches=1000)
    assert (cpu.max_size, cpu.num_gpus, cpu.num_cpus, cpu.threads) == (8, None, 1, 1)
    assert ray_ingest.plan_pool(ClusterInfo("x", nodes=2, cpus=8, gpus=2), EncoderSpec(model="default", device="cpu"), 1000).num_gpus is None
    assert ray_ingest.plan_pool(ClusterInfo("x", nodes=2, cpus=8, gpus=0), spec, batches=3).max_size == 1  # one call, one actor
    threaded = ray_ingest.plan_pool(ClusterInfo("x", nodes=1, cpus=8, gpus=0), EncoderSpec(model="default", threads=4), 1000)
    assert (threaded.max_size, threaded.num_cpus, threaded.threads) == (2, 4, 4)


def test_actors_get_the_batches_a_plain_encoder_makes():
    texts = ["bb", "a", "dddd", "ccc", "e"]
    assert [rows.tolist() for rows in ray_ingest.encoder_batches(texts, 2)] == [[2, 3], [0, 1], [4]]
    assert ray_ingest.encoder_batches is onnx_encoder.encoder_batches  # one function: the same batches, the same vectors


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "error: no Ray cluster answers at 127.0.0.1:1"),
    ("host:port", "error: --ray: 'host:port' is not 'auto', 'local', HOST:PORT or ray://HOST:PORT"),
    (" ", "error: --ray needs an address"),
])
def test_a_bad_or_unreachable_address_is_one_line(address, message, tmp_path):
    """In a fresh process: this one has joined the test cluster already."""
    result = subprocess.run([sys.executable, "-m", "paperlens.cli", "ingest", str(DEMO_CORPUS), "--index", str(tmp_path / "i"),
                             "--ray", address], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert not (tmp_path / "i").exists()


def test_without_ray_installed_the_message_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from paperlens.cli import main; "
            f"main(['ingest', {str(DEMO_CORPUS)!r}, '--index', {str(tmp_path / 'i')!r}, '--ray', 'auto'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --ray needs Ray: pip install 'paperlens[ray]'"
