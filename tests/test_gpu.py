"""GPU paths: run only where torch sees CUDA / faiss has GPU support; the CPU override always runs."""

from __future__ import annotations

import numpy as np
import pytest

from paperlens.embed import EncoderSpec, load_encoder, pick_device
from paperlens.index import SearchTuning, create_index, gpu_available


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_faiss_gpu = pytest.mark.skipif(not gpu_available(), reason="faiss has no GPU support or no GPU is visible")
needs_cuda = pytest.mark.skipif(not _cuda(), reason="torch sees no CUDA device")


def _vectors(n: int = 2000, dim: int = 64) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_device_cpu_keeps_faiss_on_the_cpu():
    vectors = _vectors(200)
    index = create_index("flat", 64, tuning=SearchTuning(device="cpu"))
    index.add(np.arange(1, 201), vectors)
    assert index._gpu_for_search() is None
    assert index.search(vectors[:1], 1)[1][0, 0] == 1


def test_pick_device_honours_cpu():
    assert pick_device("cpu") == "cpu"


@needs_faiss_gpu
@pytest.mark.parametrize("layout,params", [("flat", {}), ("ivfpq", {"nlist": 16, "pq_m": 8, "nbits": 8})])
def test_gpu_search_matches_cpu(layout, params):
    vectors = _vectors()
    gpu = create_index(layout, 64, params, vectors, SearchTuning(nprobe=16, device="auto"))
    gpu.add(np.arange(1, 2001), vectors)
    assert gpu._gpu_for_search() is not None
    _, ids = gpu.search(vectors[:20], 1)
    assert (ids[:, 0] == np.arange(1, 21)).mean() >= 0.95
    gpu.remove(np.arange(1, 11))  # mutations refresh the GPU copy
    _, ids = gpu.search(vectors[:10], 5)
    assert not set(ids.ravel()) & set(range(1, 11))


@needs_cuda
def test_encoder_auto_uses_cuda():
    encoder = load_encoder(EncoderSpec("default", device="auto"))
    assert encoder.device == "cuda"
    cpu = load_encoder(EncoderSpec("default", device="cpu")).encode(["a test sentence"])
    assert float((encoder.encode(["a test sentence"]) * cpu).sum()) > 0.99
