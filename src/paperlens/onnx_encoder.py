"""ONNX Runtime + dynamic int8 quantisation: the fast CPU encoder (``PAPERLENS_BACKEND=onnx-int8``).

The sentence-transformers model is exported once with torch.onnx (no optimum, no
``sentence-transformers[onnx]`` extra, which would pin an older transformers), the weights of its
MatMuls are quantised to int8 per channel with ``onnxruntime.quantization.quantize_dynamic``, and
the result is cached under ~/.cache/paperlens/onnx/<fingerprint>/ with the tokenizer and pooling
settings. Later processes load only onnxruntime and tokenizers: no torch import on the query path.

Before quantisation the float32 graph goes through ONNX Runtime's transformer optimizer
(``fuse``): the attention of each layer becomes one Attention node, bias + GELU one BiasGelu, the
embeddings one EmbedLayerNormalization. The export uses the eager attention code, the pattern the
optimizer recognises (PyTorch's SDPA export is not fused). Residual + LayerNorm stay two nodes
(``SLOW_FUSIONS``). Only the weights of MatMul and Attention are quantised (``QUANTISED_OPS``;
Attention becomes QAttention). ``quantize_dynamic``'s default op list also takes Gather, which
turns the word, position and token-type embedding tables into int8: that saves no time (a lookup
is not a multiplication) and rounds the input vector of every token.
``benchmarks/encoder_relevance.py`` measures the recipe against float32 (nDCG on every
development set, top-10 overlap, vector cosine, abstracts/s), with ``--old-recipe`` for the
default op list.

The weights are quantised twice, signed (``s8``) and unsigned (``u8``), and each machine runs the
graph its CPU multiplies exactly (``int8_weights``): see there.

Models made of a transformer, mean or CLS pooling and an optional Normalize are supported
(all-MiniLM-L6-v2, most sentence-transformers models, bge, SPECTER2); others raise
``UnsupportedModel``, and the 'auto' backend then uses torch. The int8 vectors stay close enough
to the float32 ones (cosine bound: tests/test_encoder_backends.py) that an index may mix both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PaperlensError

log = logging.getLogger(__name__)

EXPORT_FORMAT = 6  # bump when the export recipe changes: old cache folders are then ignored
# Two int8 graphs, alike but for the type of their weights; ``int8_weights`` picks one for the CPU.
MODEL_FILES = {"s8": "model.int8.onnx", "u8": "model.u8.onnx"}
MODEL_FILE = MODEL_FILES["s8"]
FP32_FILE = "model.fp32.onnx"
# The ops whose weights become int8: the embedding lookups (Gather) stay float32, see the docstring.
QUANTISED_OPS: tuple[str, ...] = ("MatMul", "Attention")
FUSED_FILE = "model.fused.onnx"
META_FILE = "paperlens-onnx.json"
UNSUPPORTED_FILE = "unsupported.txt"
# ONNX Runtime's float32 SkipLayerNormalization kernel (residual + bias + LayerNorm in one node) takes
# ~5.4 ns an element on a 2-core AVX-512 Xeon against 0.87 for Add + LayerNormalization: 19 % of
# an abstract's encoding. Neither the export nor the session fuses them (README, "Ingest speed").
SLOW_FUSIONS: tuple[str, ...] = ("SkipLayerNormFusion",)
# A run of at most this many tokens (a query: a batch of one short text) goes to a one-thread session.
# Split across two threads it is no faster (a 30-token claim 2.79 against 2.73 ms, 3 words 0.95
# against 0.74) yet costs ~1.4 ms more CPU, which the keyword side of a hybrid search, running at
# the same time, and other requests need; a 256-token abstract still gains from the threads (20 against 25 ms).
ONE_THREAD_TOKENS = 64


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "paperlens" / "onnx"


def fingerprint(model_path: str) -> str:
    """Names, sizes and mtimes of the model's files plus the toolchain: cheap, and changes with the model."""
    import onnxruntime

    digest = hashlib.sha256(f"{EXPORT_FORMAT}|{onnxruntime.__version__}|{Path(model_path).resolve()}".encode())
    folder = Path(model_path)
    if folder.is_dir():
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"|{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


class UnsupportedModel(PaperlensError):
    """The model's modules are not transformer + mean/CLS pooling (+ Normalize): use torch."""


@dataclass(frozen=True)
class OnnxMeta:
    dim: int
    max_seq_length: int
    input_names: tuple[str, ...]
    pooling: str = "mean"


def ensure_exported(model_path: str, load: Callable[[str], Any], cache: Path | None = None) -> Path:
    """The cached int8 model folder for this model, exported and quantised on first use (~20 s).

    ``load`` gives the sentence-transformers model for a path (only called when exporting)."""
    folder = (cache or cache_root()) / fingerprint(model_path)
    if all((folder / name).exists() for name in MODEL_FILES.values()) and (folder / META_FILE).exists():
        return folder
    if (folder / UNSUPPORTED_FILE).exists():  # found out once, not at every start
        raise UnsupportedModel((folder / UNSUPPORTED_FILE).read_text())
    log.info("exporting %s to ONNX int8 under %s (once per model)", model_path, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        _export_int8(load(model_path), model_path, work)
        os.replace(work, folder)  # atomic: a concurrent process sees the whole folder or none
    except UnsupportedModel as exc:
        folder.mkdir(exist_ok=True)
        (folder / UNSUPPORTED_FILE).write_text(str(exc))
        raise
    except OSError:
        if not (folder / MODEL_FILE).exists():
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _export_int8(model, model_path: str, out: Path) -> None:
    fp32 = export_fp32(model, model_path, out)
    config = model[0].auto_model.config
    fused = fuse(fp32, out / FUSED_FILE, config.num_attention_heads, config.hidden_size)
    for weights, name in MODEL_FILES.items():
        quantise(fused, out / name, weights=weights)
    fp32.unlink()
    fused.unlink()


def fuse(fp32: Path, dest: Path, heads: int, hidden: int, skip_layer_norm: bool = False) -> Path:
    """The float32 graph with attention, embeddings and GELU fused into ONNX Runtime's contrib ops.

    Fused, the int8 graph encoded ~25 % more abstracts per CPU-second, ~16 % more again without
    the SkipLayerNormalization fusion (README, "Ingest speed"); a graph the optimizer does not
    recognise is saved as it was. ``skip_layer_norm`` fuses residual + LayerNorm too (export format 4,
    kept for benchmarks/encoder_relevance.py)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = skip_layer_norm  # SLOW_FUSIONS
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its per-fusion progress lines
    try:
        # opt_level 0: the Python fusions only; ONNX Runtime applies its own when the session loads.
        optimize_model(str(fp32), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                       optimization_options=options).save_model_to_file(str(dest))
    finally:
        root.setLevel(level)
    return dest


def export_fp32(model, model_path: str, out: Path) -> Path:
    """The float32 graph (``FP32_FILE``), tokenizer and settings in ``out``: everything but the int8 step."""
    import torch

    pooling = supported_pooling(model, model_path)
    tokenizer = model.tokenizer
    names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names)
    sample = tokenizer(["a short text", "a somewhat longer text to pad the batch"], padding=True, return_tensors="pt")
    transformer = model[0].auto_model
    wrapper = _hidden_state_module(transformer, names)
    fp32 = out / FP32_FILE
    # The tracer's warnings (legacy exporter, data-dependent branches it fixes as constants) are about
    # shapes this graph never sees change meaning; a user's first run should not print them.
    with torch.no_grad(), warnings.catch_warnings(), _eager_attention(transformer):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, tuple(sample[n] for n in names), str(fp32), input_names=list(names), output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in (*names, "last_hidden_state")}, opset_version=17, dynamo=False,
        )
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    meta = {"dim": int(model.get_embedding_dimension()), "max_seq_length": int(model.max_seq_length), "input_names": list(names),
            "pooling": pooling}
    (out / META_FILE).write_text(json.dumps(meta))
    return fp32


def quantise(fp32: Path, dest: Path, op_types: tuple[str, ...] | None = QUANTISED_OPS, keep_float: tuple[str, ...] = (),
             weights: str = "s8") -> None:
    """Dynamic int8: per-channel weights of the ``op_types`` nodes (None: the quantiser's own list),
    signed (QInt8, ``s8``) or unsigned (QUInt8, ``u8``); activations are unsigned either way.

    ``keep_float`` names nodes to leave float32. reduce_range (7-bit signed weights) would also
    avoid AVX2's saturation, but loses accuracy on every CPU (``int8_weights``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process is for static quantisation
    try:
        quantize_dynamic(str(fp32), str(dest), per_channel=True, weight_type={"s8": QuantType.QInt8, "u8": QuantType.QUInt8}[weights],
                         op_types_to_quantize=list(op_types) if op_types is not None else None,
                         nodes_to_exclude=list(keep_float),
                         # The fused graph's contrib ops have no shape inference: their outputs are float32.
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def int8_weights(choice: str = "auto") -> str:
    """The int8 graph this CPU multiplies exactly: ``s8`` weights where it has VNNI (AVX-512 or AVX)
    or is not x86, ``u8`` on an x86 CPU without VNNI; ``choice`` other than 'auto' is taken as given.

    Why: ONNX Runtime multiplies unsigned activations by signed weights with VNNI's vpdpbusd, which
    sums in 32 bits, but without VNNI with AVX2's vpmaddubsw, which adds each pair of products into
    16 bits and saturates. Measured on one 2-core Xeon with and without AVX-512 and VNNI hidden
    (benchmarks/avx2_only.py), 6,275 abstracts as queries, top-10 overlap with float32 (worst vector
    cosine): VNNI s8 0.910 (0.989), AVX2 s8 0.904 (0.980), AVX2 u8 0.909 (0.989); the whole ingest
    on AVX2 is 22 % slower with u8 (26.9 against 34.4 abstracts/s), and on VNNI u8 runs at half the
    speed of s8 (README, "On a CPU without VNNI").
    """
    if choice != "auto":
        return choice
    import platform

    return weights_for(platform.machine(), cpu_flags())


def weights_for(machine: str, flags: Iterable[str]) -> str:
    """``int8_weights`` for a CPU named by its machine type and its /proc/cpuinfo flags."""
    if machine.lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return "s8"  # ARM's int8 kernels widen before they add: no saturation to avoid
    return "s8" if {"avx512_vnni", "avx_vnni"} & set(flags) else "u8"


def cpu_flags() -> set[str]:
    """The CPU's flags as /proc/cpuinfo names them (which names AVX-VNNI, unlike numpy); where there
    is no /proc/cpuinfo, the VNNI flag from numpy's own reading of CPUID."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return set(next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), []))
    except OSError:
        try:
            from numpy._core._multiarray_umath import __cpu_features__
        except ImportError:  # numpy 1.x
            from numpy.core._multiarray_umath import __cpu_features__
        return {"avx512_vnni"} if __cpu_features__.get("AVX512VNNI") else set()


def supported_pooling(model, model_path: str) -> str:
    """'mean' or 'cls' when the model is transformer → pooling (→ Normalize), the graph this file rebuilds."""
    kinds = [type(m).__name__ for m in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(kind != "Normalize" for kind in kinds[2:]):
        raise UnsupportedModel(f"the onnx-int8 backend cannot run {model_path} (modules {', '.join(kinds)}): use backend torch")
    config = model[1].get_config_dict()
    mode = config.get("pooling_mode")  # sentence-transformers >= 5; older ones set one flag per mode
    if mode is None:
        flags = [key for key, value in config.items() if key.startswith("pooling_mode_") and value]
        mode = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(flags[0]) if len(flags) == 1 else None
    if mode not in ("mean", "cls"):
        raise UnsupportedModel(f"the onnx-int8 backend supports mean and CLS pooling; {model_path} pools otherwise: use backend torch")
    return mode


@contextlib.contextmanager
def _eager_attention(transformer) -> Iterator[None]:
    """Trace the eager attention code, whose pattern ``fuse`` turns into Attention nodes (same maths as SDPA)."""
    config = transformer.config
    before = getattr(config, "_attn_implementation", None)
    if before is None or not hasattr(transformer, "set_attn_implementation"):
        yield
        return
    transformer.set_attn_implementation("eager")
    try:
        yield
    finally:
        transformer.set_attn_implementation(before)


def _hidden_state_module(transformer, names: tuple[str, ...]):
    """The transformer called by keyword (its positional arguments differ between versions)."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs):
            return self.transformer(**dict(zip(names, inputs))).last_hidden_state

    return LastHiddenState().eval()


def encoder_batches(texts: list[str], batch_size: int) -> list[np.ndarray]:
    """The positions of ``texts`` in each batch the encoder runs: longest first, ``batch_size`` at a
    time, so each batch pads little. The int8 graph quantises a batch's activations with one scale,
    so a vector depends a little on its batch: everything that encodes for an index (a plain ingest,
    a Ray actor) batches with this one function and gets the same vectors."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[start:start + batch_size] for start in range(0, len(texts), batch_size)]


class OnnxInt8Encoder:
    """Tokenize, run the int8 graph, mean-pool over real tokens, normalise: sentence-transformers' recipe."""

    def __init__(self, folder: Path, threads: int | None = None, max_seq_length: int | None = None, model_file: str | None = None,
                 weights: str = "auto"):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        raw = json.loads((folder / META_FILE).read_text())
        self.meta = OnnxMeta(raw["dim"], raw["max_seq_length"], tuple(raw["input_names"]), raw.get("pooling", "mean"))
        self.dim = self.meta.dim
        self.max_seq_length = max_seq_length or self.meta.max_seq_length
        threads = threads or os.cpu_count() or 1
        # the graph for this CPU's weight type, unless a file is named (a benchmark's variant: no type to tell)
        self.weights = int8_weights(weights) if model_file is None else None
        model_file = model_file or MODEL_FILES[self.weights]
        self.session = self._session(ort, folder / model_file, threads)
        # Same vectors bit for bit (integer GEMMs; the float parts split rows, not sums).
        self.small_session = self._session(ort, folder / model_file, 1) if threads > 1 else self.session
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.enable_padding()

    @staticmethod
    def _session(ort: Any, model: Path, threads: int) -> Any:
        options = ort.SessionOptions()
        # intra-op threads = cores: one batch uses the whole machine; no inter-op pool.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: spinning ORT threads starved FAISS and SQLite right
        # after each query (FAISS search 0.9 ms -> up to 5 ms) and burn cores a busy server needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(SLOW_FUSIONS))

    def encode(self, texts: list[str], batch_size: int = 16, show_progress: bool = False) -> np.ndarray:
        """Unit vectors in input order, batched by ``encoder_batches``.

        With more than one batch, a thread tokenises the next batch while ONNX Runtime (which
        releases the GIL) runs the current one; a single batch (a query) starts no thread."""
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = encoder_batches(texts, batch_size)
        with tqdm(total=len(batches), desc="encoding", unit="batch", disable=not show_progress) as bar:
            for rows, arrays in self._tokenised(texts, batches):
                out[rows] = self._run(arrays)
                bar.update()
        return out

    def _tokenised(self, texts: list[str], batches: list[np.ndarray]) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """Each batch's rows and model inputs, in order; the next batch tokenised ahead in a thread."""
        if len(batches) == 1:
            yield batches[0], self._tokenise([texts[i] for i in batches[0]])
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="paperlens-tokenise") as pool:
            ahead = pool.submit(self._tokenise, [texts[i] for i in batches[0]])
            for n, rows in enumerate(batches):
                arrays = ahead.result()
                if n + 1 < len(batches):
                    ahead = pool.submit(self._tokenise, [texts[i] for i in batches[n + 1]])
                yield rows, arrays

    def _tokenise(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }

    def _run(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The model on one tokenised batch, mean- (or CLS-) pooled and normalised."""
        session = self.small_session if arrays["input_ids"].size <= ONE_THREAD_TOKENS else self.session
        hidden = session.run(None, {n: arrays[n] for n in self.meta.input_names})[0]
        if self.meta.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = arrays["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
