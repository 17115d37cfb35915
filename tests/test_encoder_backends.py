"""The onnx-int8 encoder backend gives the same vectors as the torch one, within quantisation error."""

from __future__ import annotations

import numpy as np

from paperlens.embed import EncoderSpec, load_encoder

TEXTS = [
    "Aspirin lowers the risk of colorectal cancer in long-term users.",
    "We propose a transformer architecture for protein structure prediction.",
    "Dark matter halos shape the rotation curves of spiral galaxies.",
    "short",
]


def test_onnx_int8_matches_torch():
    torch_vectors = load_encoder(EncoderSpec("default", backend="torch")).encode(TEXTS)
    onnx = load_encoder(EncoderSpec("default", backend="onnx-int8"))
    onnx_vectors = onnx.encode(TEXTS)
    assert onnx.dim == torch_vectors.shape[1] and onnx.device == "cpu"
    cosine = (torch_vectors * onnx_vectors).sum(axis=1)
    assert cosine.min() > 0.95, cosine
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1, atol=1e-5)
    # Dynamic int8 scales activations per batch, so a text alone and in a batch differ slightly.
    single = onnx.encode_query(TEXTS[0])
    assert float(single @ onnx_vectors[0]) > 0.97
    assert float(single @ torch_vectors[0]) > 0.95
