#!/usr/bin/env bash
# Decode/prefill speed of the bench Qwen3-MoE as GGUF bf16, Q8_0, Q4_0 and Q4_K_M (quantised by llama.cpp's own
# quantiser), swift-moe's `moe bench infer` beside llama.cpp (`llamacpp_bench.py`) and, when it is built
# (../shared/tools/ikllama-build.sh), ik_llama.cpp's llama-bench (-rtr 1, fused MoE on) on the same files, one after
# the other (never side by side). Needs the peers venv and the bf16 GGUF that scripts/llamacpp_peer.sh makes.
#
# Usage: scripts/bench_quant.sh [BF16_GGUF] (default bench-models/qwen3moe-bf16-bf16.gguf)
# Environment: THREADS (2), PROMPT_TOKENS (512), GEN_TOKENS (128), REPS (3), TYPES ("bf16 q8_0 q4_0 q4_k_m"),
#              PEERS_VENV (~/.cache/moe-peers), TOOLS (../shared/tools), IK_BENCH (~/.cache/ik-llama/bin/llama-bench;
#              IK_RTR=0 turns its run-time repacking off, e.g. for a model that would not fit twice in memory).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BF16="${1:-$ROOT/bench-models/qwen3moe-bf16-bf16.gguf}"
THREADS="${THREADS:-2}"; PROMPT_TOKENS="${PROMPT_TOKENS:-512}"; GEN_TOKENS="${GEN_TOKENS:-128}"; REPS="${REPS:-3}"
TYPES="${TYPES:-bf16 q8_0 q4_0 q4_k_m}"
PY="${PEERS_VENV:-$HOME/.cache/moe-peers}/bin/python"
TOOLS="${TOOLS:-$ROOT/../shared/tools}"
MOE="$ROOT/.build/release/moe"
IK_BENCH="${IK_BENCH:-$HOME/.cache/ik-llama/bin/llama-bench}"
declare -A FTYPE=([q8_0]=7 [q4_0]=2 [q4_k_m]=15 [q6_k]=18 [iq4_xs]=30 [q5_k_m]=17 [q3_k_m]=12 [q2_k]=10)
lscpu | grep -m1 'Model name' || true
"$PY" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())' | tr '|' '\n' | grep -E 'AVX|F16C|FMA' | tr '\n' ' '; echo
for t in $TYPES; do
    f="$BF16"
    if [[ "$t" != bf16 ]]; then
        f="${BF16%-bf16.gguf}-$t.gguf"
        [[ -s "$f" ]] || "$PY" -c "
import ctypes, llama_cpp, sys
p = llama_cpp.llama_model_quantize_default_params(); p.ftype = ${FTYPE[$t]}; p.nthread = $THREADS
assert llama_cpp.llama_model_quantize(b'$BF16', b'$f', ctypes.byref(p)) == 0" >/dev/null 2>&1
    fi
    echo "== $t: $(du -h "$f" | cut -f1) $f"
    "$MOE" bench infer --model "$f" --threads "$THREADS" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --repetitions "$REPS" 2>/dev/null | grep -iE "prefill|decode|bytes" || true
    "$PY" "$TOOLS/llamacpp_bench.py" "$f" --threads "$THREADS" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --reps "$REPS" 2>/dev/null | grep -E "tokens/s"
    if [[ -x "$IK_BENCH" ]]; then
        "$IK_BENCH" -m "$f" -t "$THREADS" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -r "$REPS" -rtr "${IK_RTR:-1}" 2>/dev/null \
            | awk -F'|' '/ pp[0-9]| tg[0-9]/ { gsub(/ /, "", $(NF-2)); print "ik_llama.cpp " $(NF-2) " tokens/s: " $(NF-1) }'
    fi
done
