#!/usr/bin/env bash
# paperlens on a machine with an NVIDIA GPU: the GPU tests, ingest throughput with torch on CUDA
# against the CPU default, and FAISS search on the GPU against the CPU. Prints one table; about
# 5-8 minutes. Exits 0 with "no GPU" where nvidia-smi or torch sees none.
#
#   benchmarks/gpu.sh [BEIR_FOLDER]      (default ../shared/data/scifact-subset)
#   PYTHON=/path/to/python benchmarks/gpu.sh   (an environment with paperlens and a CUDA build of torch)
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
FAISS_NOTE="CPU (faiss-gpu-cu12 not installable here)"
if timeout 120 "$PYTHON" -m pip install -q --no-deps --target "$WORK/faiss" faiss-gpu-cu12 >"$WORK/pip.log" 2>&1 \
   && PYTHONPATH=$WORK/faiss:$PYTHONPATH "$PYTHON" -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)" 2>>"$WORK/pip.log"; then
    export PYTHONPATH=$WORK/faiss:$PYTHONPATH
    FAISS_NOTE="GPU (faiss-gpu-cu12 $("$PYTHON" -c 'import faiss; print(faiss.__version__)'))"
fi
echo "# faiss: $FAISS_NOTE"

echo; echo "## tests/test_gpu.py"
(cd "$REPO" && timeout 240 "$PYTHON" -m pytest tests/test_gpu.py -q -rs 2>&1 | tail -8)
TESTS=$?

# The whole `paperlens ingest` command, fresh process and index folder: wall seconds -> abstracts/s.
ingest_rate() {  # label, then environment assignments
    local label=$1; shift
    local folder=$WORK/index-$RANDOM start end
    start=$(date +%s.%N)
    if env "$@" timeout 300 "$PYTHON" -m paperlens.cli ingest "$DATA" --index "$folder" --quiet --json >"$WORK/out.json" 2>"$WORK/err"; then
        end=$(date +%s.%N)
        "$PYTHON" - "$label" "$start" "$end" "$WORK/out.json" <<'EOF'
import json, sys
label, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
added = json.load(open(out))["added"]
print(f"| ingest: {label} | {added} abstracts | {end - start:.1f} s | {added / (end - start):.1f} abstracts/s |")
EOF
    else
        echo "| ingest: $label | failed: $(tail -1 "$WORK/err") | | |"
    fi
    rm -rf "$folder"
}

echo; echo "## Throughput"; echo
echo "| what | size | seconds | rate |"
echo "|---|---|---|---|"
ingest_rate "torch on CUDA, batch 16" PAPERLENS_DEVICE=cuda PAPERLENS_BACKEND=torch
ingest_rate "torch on CUDA, batch 128" PAPERLENS_DEVICE=cuda PAPERLENS_BACKEND=torch PAPERLENS_BATCH_SIZE=128
ingest_rate "onnx-int8 on the CPU (default without GPU)" PAPERLENS_DEVICE=cpu PAPERLENS_BACKEND=onnx-int8

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
