#!/usr/bin/env bash
# Fuzzes the readers of user files with libFuzzer: safetensors, GGUF, config.json, tokenizer.json, chat templates
# and JSONL data records (Sources/moe-fuzz/FuzzTargets.swift), built with AddressSanitizer and the bounds and
# overflow checks on (a debug build): any crash, sanitizer report, leak, hang (> 10 s) or input that takes over
# 2 GiB fails the run, and libFuzzer saves the input as WORK/crash-*.
#
#   bash scripts/fuzz_parsers.sh [SECONDS_PER_TARGET] [TARGET…]     # default 60 s each, every target
#
# Starts from the committed seed corpus (Fuzz/corpus/<target>, made by scripts/make_fuzz_corpus.py); new
# inputs go to WORK (default /tmp/moe-fuzz-parsers), not into the repository. Replay a saved input with the plain
# build: `swift run -c release moe-fuzz TARGET FILE`. Needs only the Swift toolchain (its clang runtime has libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(safetensors gguf config tokenizer chat-template jsonl)
WORK="${MOE_FUZZ_WORK:-/tmp/moe-fuzz-parsers}"
swift build --scratch-path .build-fuzz --product moe-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DMOE_FUZZ 2>&1 | tail -1
BIN=.build-fuzz/debug/moe-fuzz
status=0
for target in "${TARGETS[@]}"; do
    mkdir -p "$WORK/$target"
    echo "== $target: $SECONDS_PER_TARGET s"
    if LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp" MOE_FUZZ_TARGET="$target" "$BIN" "$WORK/$target" "Fuzz/corpus/$target" -max_total_time="$SECONDS_PER_TARGET" \
        -timeout=10 -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$WORK/" -print_final_stats=1 \
        >"$WORK/$target.log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$WORK/$target.log" | tr '\n' ' '; echo
    else
        status=1
        echo "FAILED: $target; the input is saved under $WORK/ (crash-*, leak-*, timeout-*, oom-*); its log:"
        grep -v "^#" "$WORK/$target.log" | tail -40
    fi
done
exit $status
