#!/usr/bin/env bash
# Fuzzes the HTTP API with schemathesis (PyPI) against `/openapi.json` of a running `moe serve`: every generated
# request — valid and invalid, by the schema — must get no 5xx, a response of the listed content type and status,
# and a body that matches the listed schema. A benchmark-like tool, not a test of the suite.
#
#   bash scripts/fuzz_api.sh [MAX_EXAMPLES_PER_OPERATION]     # default 50; ~10,000 requests: 1000
#
# Needs .build/release/moe (swift build -c release) and schemathesis in ~/.cache/moe-fuzz (made here if missing).
# The model is the quick demo's (trained here once, ~1 min); answers are cut to 8 tokens to keep the run short.
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES="${1:-50}"
VENV="${MOE_FUZZ_VENV:-$HOME/.cache/moe-fuzz}"
if [[ ! -x "$VENV/bin/st" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q schemathesis
fi
WORK="${MOE_FUZZ_DIR:-/tmp/moe-fuzz}"
mkdir -p "$WORK"
[[ -d "$WORK/demo/grpo" ]] || .build/release/moe demo --quick --quiet --out "$WORK/demo" >/dev/null
PORT="${MOE_FUZZ_PORT:-18190}"
.build/release/moe serve --model "$WORK/demo/grpo" --port "$PORT" --threads 2 --parallel 4 --max-tokens-limit 8 \
    --ledger "$WORK/ledger.sqlite" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
"$VENV/bin/st" run "http://127.0.0.1:$PORT/openapi.json" --wait-for-schema 60 \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$EXAMPLES" --seed 1 --workers 2 --request-timeout 60 \
    --header "Authorization: Bearer fuzz" --report junit --report-dir "$WORK/report"
kill -0 $SERVER 2>/dev/null || { echo "the server died; its log:"; tail -50 "$WORK/server.log"; exit 1; }
echo "server alive after the run; its log: $WORK/server.log"
