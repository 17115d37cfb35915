#!/usr/bin/env bash
# Sets up, builds an index of the built-in demo corpus (53 papers) if there is none, and serves
# the API on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

index=${PAPERLENS_INDEX:-indexes/demo}
port=${PAPERLENS_PORT:-8000}
if [ ! -f "$index/manifest.json" ]; then
    .venv/bin/paperlens ingest --demo --index "$index"
fi

cat <<MSG

paperlens demo: $(.venv/bin/paperlens info --index "$index" --json)
Try, once it says it is serving:
  curl 'http://127.0.0.1:$port/search?q=causal+reasoning+in+language+models&k=3'
  curl 'http://127.0.0.1:$port/papers/h33b6c4dbc1998dc8/similar?k=3'
  curl -X POST 'http://127.0.0.1:$port/recommend' -H 'content-type: application/json' -d '{"positive": ["h33b6c4dbc1998dc8"], "k": 3}'
  curl 'http://127.0.0.1:$port/health'
API docs: http://127.0.0.1:$port/docs
CLI:      .venv/bin/paperlens search "video understanding" --index $index

MSG
exec .venv/bin/paperlens serve --index "$index" --host 127.0.0.1 --port "$port"
