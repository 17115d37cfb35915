#!/usr/bin/env bash
# paperlens on a machine with an NVIDIA GPU: the GPU tests, ingest throughput with torch on CUDA
# against the CPU default, and FAISS search on the GPU against the CPU. Prints one table; about
# 5-8 minutes. Exits 0 with "no GPU" where nvidia-smi or torch sees none.
#
#   benchmarks/gpu.sh [BEIR_FOLDER]      (default ../shared/data/scifact-subset)
#   PYTHON=/path/to/python benchmarks/gpu.sh   (an environment with paperlens and a CUDA build of torch)
#   GPU_TESTS="tests/test_gpu.py tests/test_search.py"   (test files to run; default tests/test_gpu.py)
#   FAISS_GPU_WHEEL=faiss-gpu-cu12 | /path/to/wheel | none   (where FAISS with GPU support comes from)
#
# FAISS on the GPU needs the faiss-gpu-cu12 wheel: it is installed into a throwaway folder put
# first on PYTHONPATH (never into the environment); where it cannot be had (no network, no wheel
# for this Python), FAISS stays on the CPU and the table says so.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
DATA=${1:-$REPO/../shared/data/scifact-subset}
WORK=$(mktemp -d -t paperlens-gpu.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "no GPU: nvidia-smi finds none"; exit 0
fi
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no GPU: torch sees no CUDA device (nvidia-smi: $(nvidia-smi -L | head -1); a CPU build of torch?)"; exit 0
fi
[ -f "$DATA/corpus.jsonl" ] || { echo "no BEIR corpus at $DATA: give a folder as the first argument"; exit 2; }

echo "# paperlens GPU check  $(date -u +%FT%TZ)"
echo "# gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
echo "# torch: $("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"

# FAISS with GPU support, in a throwaway folder (wheels for CUDA 12; its CUDA libraries are torch's).
FAISS_GPU_WHEEL=${FAISS_GPU_WHEEL:-faiss-gpu-cu12}
FAISS_NOTE="CPU ($FAISS_GPU_WHEEL not installable here)"
[ "$FAISS_GPU_WHEEL" = none ] && FAISS_NOTE="CPU (FAISS_GPU_WHEEL=none)"
if [ "$FAISS_GPU_WHEEL" != none ] \
   && timeout 120 "$PYTHON" -m pip install -q --retries 0 --timeout 15 --no-deps --target "$WORK/faiss" "$FAISS_GPU_WHEEL" >"$WORK/pip.log" 2>&1 \
   && PYTHONPATH=$WORK/faiss:$PYTHONPATH "$PYTHON" -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)" 2>>"$WORK/pip.log"; then
    export PYTHONPATH=$WORK/faiss:$PYTHONPATH
    FAISS_NOTE="GPU (faiss-gpu-cu12 $("$PYTHON" -c 'import faiss; print(faiss.__version__)'))"
fi
echo "# faiss: $FAISS_NOTE"
echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"

GPU_TESTS=${GPU_TESTS:-tests/test_gpu.py}
echo; echo "## $GPU_TESTS"
# shellcheck disable=SC2086  # a list of test files
(cd "$REPO" && timeout 300 "$PYTHON" -m pytest $GPU_TESTS -q -rs -p no:cacheprovider 2>&1 | tail -12; exit "${PIPESTATUS[0]}")
TESTS=$?

# The whole `paperlens ingest` command, fresh process and index folder: wall seconds -> abstracts/s.
ingest_rate() {  # label, BEIR folder, then environment assignments
    local label=$1 data=$2; shift 2
    local folder=$WORK/index-$RANDOM start end
    start=$(date +%s.%N)
    if env "$@" timeout 400 "$PYTHON" -m paperlens.cli ingest "$data" --index "$folder" --quiet --json >"$WORK/out.json" 2>"$WORK/err"; then
        end=$(date +%s.%N)
        "$PYTHON" - "$label" "$start" "$end" "$WORK/out.json" <<'EOF_RATE'
import json, sys
label, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
added = json.load(open(out))["added"]
print(f"| ingest: {label} | {added:,} abstracts | {end - start:.1f} s | {added / (end - start):.1f} abstracts/s |")
EOF_RATE
    else
        echo "| ingest: $label | failed: $(tail -1 "$WORK/err") | | |"
    fi
    rm -rf "$folder"
}

# A larger collection, so start-up does not dominate: the corpus repeated to BIG_PAPERS papers, each
# copy with its own id and a marked abstract (a new text, so nothing is reused from an earlier copy;
# the title stays, so copies are not records of one paper to compare with each other).
BIG_PAPERS=${BIG_PAPERS:-20000}
mkdir -p "$WORK/big"
"$PYTHON" - "$DATA/corpus.jsonl" "$WORK/big/corpus.jsonl" "$BIG_PAPERS" <<'EOF_BIG'
import json, sys
source, target, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in open(source, encoding="utf-8") if line.strip()]
with open(target, "w", encoding="utf-8") as out:
    for n in range(wanted):
        row = dict(rows[n % len(rows)])
        copy = n // len(rows)
        if copy:
            row["_id"] = f"{row['_id']}-copy{copy}"
            row["text"] = f"(copy {copy}) {row.get('text', '')}"
        out.write(json.dumps(row) + "\n")
EOF_BIG

# The int8 CPU encoder is exported once per model and machine (~20 s); not part of any timing below.
"$PYTHON" -c "from paperlens.embed import EncoderSpec, load_encoder; load_encoder(EncoderSpec('default', device='cpu', backend='onnx-int8'))" 2>/dev/null

echo; echo "## Throughput"; echo
echo "| what | size | seconds | rate |"
echo "|---|---|---|---|"
ingest_rate "torch on CUDA, batch 16" "$DATA" PAPERLENS_DEVICE=cuda PAPERLENS_BACKEND=torch
ingest_rate "torch on CUDA, batch 128" "$DATA" PAPERLENS_DEVICE=cuda PAPERLENS_BACKEND=torch PAPERLENS_BATCH_SIZE=128
ingest_rate "onnx-int8 on the CPU (default without GPU)" "$DATA" PAPERLENS_DEVICE=cpu PAPERLENS_BACKEND=onnx-int8
ingest_rate "torch on CUDA, batch 128" "$WORK/big" PAPERLENS_DEVICE=cuda PAPERLENS_BACKEND=torch PAPERLENS_BATCH_SIZE=128
ingest_rate "onnx-int8 on the CPU (default without GPU)" "$WORK/big" PAPERLENS_DEVICE=cpu PAPERLENS_BACKEND=onnx-int8

# The encoder alone on the same texts, in process, after a warm-up: what the GPU adds to the command.
timeout 300 "$PYTHON" - "$WORK/big/corpus.jsonl" <<'EOF_ENCODE'
import json, sys, time
from paperlens.embed import EncoderSpec, load_encoder
texts = [f"{row.get('title', '')}. {row.get('text', '')}" for row in map(json.loads, open(sys.argv[1], encoding="utf-8"))]
for device, backend, batch in (("cuda", "torch", 128), ("cuda", "torch", 512), ("cpu", "onnx-int8", 16)):
    encoder = load_encoder(EncoderSpec("default", device=device, backend=backend, batch_size=batch))
    encoder.encode(texts[:256])
    sample = texts if device == "cuda" else texts[:4000]
    start = time.perf_counter()
    encoder.encode(sample)
    seconds = time.perf_counter() - start
    print(f"| encode only: {backend} on {device}, batch {batch} | {len(sample):,} abstracts | {seconds:.1f} s | {len(sample) / seconds:,.0f} abstracts/s |")
EOF_ENCODE

# FAISS: exact search of 1,000 queries in 200,000 random unit vectors, CPU then GPU where available.
timeout 240 "$PYTHON" - <<'EOF'
import time
import faiss
import numpy as np
rng = np.random.default_rng(0)
base = rng.standard_normal((200_000, 384), dtype=np.float32)
base /= np.linalg.norm(base, axis=1, keepdims=True)
queries = base[:1000] + 0.01
cpu = faiss.IndexFlatIP(384)
cpu.add(base)
runs = [("CPU", cpu)]
if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
    resources = faiss.StandardGpuResources()
    runs.append(("GPU", faiss.index_cpu_to_gpu(resources, 0, cpu)))
for name, index in runs:
    index.search(queries[:10], 10)  # warm-up
    start = time.perf_counter()
    _, found = index.search(queries, 10)
    seconds = time.perf_counter() - start
    hit = float((found[:, 0] == np.arange(1000)).mean())
    print(f"| FAISS flat on the {name}: 1,000 queries, top 10 | 200,000 × 384 | {seconds:.2f} s | {1000 / seconds:,.0f} queries/s (self found {hit:.0%}) |")
EOF

echo
[ "$TESTS" -eq 0 ] && echo "GPU tests passed" || echo "GPU tests FAILED (exit $TESTS)"
exit "$TESTS"
