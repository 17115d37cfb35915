"""'paperlens serve --ray' on a real two-node Ray cluster (ray.cluster_utils, non-default ports, its
own temp folder): replicas answer as a plain server; a sharded folder answers with the same top 10
as one index; a killed shard gives partial answers until Serve restarts it; writes reach their shard."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'paperlens[ray]')")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed")

from paperlens import ray_serve  # noqa: E402
from paperlens.api import create_app  # noqa: E402
from paperlens.cluster import connect  # noqa: E402
from paperlens.config import Settings  # noqa: E402
from paperlens.shards import owner, shard_collection  # noqa: E402
from serverproc import free_port  # noqa: E402

QUERIES = ["attention is all you need", "reinforcement learning from human feedback", "image generation with diffusion",
           "graph neural networks", "retrieval augmented generation", "speech recognition"]


@pytest.mark.parametrize("args, message", [
    (["--index", "/nonexistent/index", "--ray", "auto"], "no index at /nonexistent/index"),
    (["--ray", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--ray", " "], "--ray needs an address"),
])
def test_serve_ray_refuses_in_one_line(demo_index_dir, args, message):
    # Before the cluster below exists: a process already joined to one would not try the address.
    assert not ray.is_initialized()
    from click.testing import CliRunner

    from paperlens.cli import main

    result = CliRunner().invoke(main, ["serve", "--index", str(demo_index_dir), "--port", str(free_port()), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    temp = tempfile.mkdtemp(prefix="/tmp/plray")
    patch = pytest.MonkeyPatch()
    # Cluster writes its address where 'ray start' clusters are found ('auto'): leave that file to them.
    patch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "gcs_server_port": free_port(), "temp_dir": temp,
                                                          "object_store_memory": 80 * 1024 * 1024})
    nodes.add_node(num_cpus=2, object_store_memory=80 * 1024 * 1024)
    try:
        info = connect(nodes.address)
        assert info.nodes == 2
        yield nodes.address
    finally:
        serve.shutdown()
        ray.shutdown()
        nodes.shutdown()
        patch.undo()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def port(cluster) -> int:
    return free_port()


@pytest.fixture(scope="module")
def plain(demo_index_dir):
    with TestClient(create_app(Settings(index=demo_index_dir))) as client:
        yield client


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


def deploy(cluster: str, port: int, folder: Path, replicas: int = 1, **settings) -> httpx.Client:
    serving = ray_serve.start(Settings(index=folder, **settings), cluster, replicas=replicas, port=port, cpus=0.5)
    return httpx.Client(base_url=serving.url, timeout=60)


def test_replicas_answer_as_a_plain_server(cluster, port, plain, demo_index_dir):
    client = deploy(cluster, port, demo_index_dir, replicas=2)
    try:
        some = ids(plain.get("/search", params={"q": "transformers"}))
        for _ in range(2):  # requests are spread over both replicas
            assert client.get("/search", params={"q": "transformers"}).json() == plain.get("/search", params={"q": "transformers"}).json()
        assert client.get(f"/papers/{some[0]}/similar", params={"mode": "dense"}).json() == \
            plain.get(f"/papers/{some[0]}/similar", params={"mode": "dense"}).json()
        body = {"positive": some[:2], "negative": some[5:6]}
        assert client.post("/recommend", json=body).json() == plain.post("/recommend", json=body).json()
        missing = client.get("/papers/no-such-paper")
        assert missing.status_code == 404 and missing.json() == plain.get("/papers/no-such-paper").json()
        bad = client.get("/search", params={"q": "x", "k": 0})
        assert bad.status_code == 422 and bad.json() == plain.get("/search", params={"q": "x", "k": 0}).json()
        assert client.get("/health").json() == plain.get("/health").json()
    finally:
        client.close()
        ray_serve.stop()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, demo_index_dir) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "S"
    shard_collection(Settings(index=demo_index_dir), demo_index_dir, 2, out)
    return out


def test_shards_answer_with_the_top_10_of_one_index(cluster, port, plain, sharded):
    client = deploy(cluster, port, sharded, shard_timeout=2.0)
    try:
        health = client.get("/health").json()
        assert "shards" in health, health
        assert [(s["shard"], s["folder"], s["state"]) for s in health["shards"]] == [(0, "shard-0", "ok"), (1, "shard-1", "ok")]
        assert health["papers"] == plain.get("/health").json()["papers"] == sum(s["papers"] for s in health["shards"])
        for query in QUERIES:  # dense: exactly the same list, in the same order
            assert ids(client.get("/search", params={"q": query, "mode": "dense"})) == ids(plain.get("/search", params={"q": query, "mode": "dense"}))
        seeds = ids(plain.get("/search", params={"q": "language models", "mode": "dense"}))
        for seed in seeds[:4]:
            assert ids(client.get(f"/papers/{seed}/similar", params={"mode": "dense"})) == \
                ids(plain.get(f"/papers/{seed}/similar", params={"mode": "dense"}))
        body = {"positive": seeds[:3], "mode": "dense"}
        assert ids(client.post("/recommend", json=body)) == ids(plain.post("/recommend", json=body))
        # hybrid and BM25: every shard scores with the collection's term statistics; the tolerance
        # stated in the README is at most 1 paper of 10 different (shards keep their own mean length).
        for query in QUERIES:
            for mode in ("hybrid", "bm25"):
                one = ids(plain.get("/search", params={"q": query, "mode": mode}))
                assert len(set(one) & set(ids(client.get("/search", params={"q": query, "mode": mode})))) >= len(one) - 1
        for seed in seeds[:4]:
            one = ids(plain.get(f"/papers/{seed}/similar"))
            assert len(set(one) & set(ids(client.get(f"/papers/{seed}/similar")))) >= len(one) - 1
        one = ids(plain.post("/recommend", json={"positive": seeds[:3]}))
        assert len(set(one) & set(ids(client.post("/recommend", json={"positive": seeds[:3]})))) >= len(one) - 1
        assert client.get("/papers/no-such-paper").status_code == 404
        assert client.get("/search", params={"q": "x", "k": 0}).status_code == 422

        # Killing shard 1's replica: answers from shard 0, marked partial, until Serve restarts it.
        [name] = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "#shard-1#" in a["name"]]
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        response = client.get("/search", params={"q": "transformers", "mode": "dense"})
        assert response.status_code == 200
        assert response.json()["partial"] is True and response.json()["missing_shards"] == [1]
        assert response.headers["x-paperlens-missing-shards"] == "1"
        assert response.json()["results"]  # shard 0's papers
        deadline = time.monotonic() + 120
        while client.get("/health").json()["shards"][1]["state"] != "ok":
            assert time.monotonic() < deadline, "shard 1 did not come back"
            time.sleep(1)
        back = client.get("/search", params={"q": "transformers", "mode": "dense"}).json()
        assert "partial" not in back and [h["id"] for h in back["results"]] == ids(plain.get("/search", params={"q": "transformers", "mode": "dense"}))
    finally:
        client.close()
        ray_serve.stop()


def test_writes_and_deletes_reach_the_owner_shard(cluster, port, tmp_path, demo_index_dir):
    folder = tmp_path / "S"
    shard_collection(Settings(index=demo_index_dir), demo_index_dir, 2, folder)
    client = deploy(cluster, port, folder)
    try:
        before = [s["papers"] for s in client.get("/health").json()["shards"]]
        paper = {"id": "sharded-write-1", "title": "Quantum error correction with surface codes",
                 "abstract": "Surface codes protect logical qubits against noise with local stabiliser measurements."}
        added = client.post("/papers", json=[paper])
        assert added.status_code == 201 and added.json()["added"] == 1
        home = owner("sharded-write-1", 2)
        after = [s["papers"] for s in client.get("/health").json()["shards"]]
        assert after[home] == before[home] + 1 and after[1 - home] == before[1 - home]
        assert client.get("/papers/sharded-write-1").json()["title"] == paper["title"]
        assert ids(client.get("/search", params={"q": "surface codes qubits", "mode": "bm25"}))[0] == "sharded-write-1"
        assert client.delete("/papers/sharded-write-1").json() == {"deleted": "sharded-write-1"}
        assert client.get("/papers/sharded-write-1").status_code == 404
        assert [s["papers"] for s in client.get("/health").json()["shards"]] == before
        assert client.delete("/papers/sharded-write-1").status_code == 404
    finally:
        client.close()
        ray_serve.stop()



def test_replicas_ask_for_a_share_of_the_cluster_when_all_would_not_fit():
    from paperlens.cluster import ClusterInfo
    from paperlens.ray_serve import replica_cpus
    from paperlens.shards import ShardMap

    two_shards = ShardMap(shards=2, model="m", dim=3, folders=["shard-0", "shard-1"], papers=10)
    assert replica_cpus(ClusterInfo("auto", 1, 2.0, 0.0), 1, two_shards) == pytest.approx(2 / 3)  # 'ray start --head' on 2 cores
    assert replica_cpus(ClusterInfo("auto", 4, 64.0, 0.0), 2, two_shards) == 1.0
    assert replica_cpus(ClusterInfo("auto", 1, 2.0, 0.0), 1, None) == 1.0
