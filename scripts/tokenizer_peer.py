#!/usr/bin/env python3
"""Times the peer tokenizers for `moe bench tokenize`: tiktoken and Hugging Face `tokenizers`.

Each engine encodes the whole input text on one thread, `--repeat` times; the best time is reported. The ids of
the last run go to `<out>/<engine>.ids` (little-endian uint32) so that the caller can count differing ids.
One JSON object per engine is printed on stdout:

    {"engine": "tiktoken", "version": "0.9.0", "load_s": 0.21, "encode_s": 0.066, "tokens": 301829, "ids": "/tmp/x/tiktoken.ids"}

- tiktoken: `Encoding(pat_str, mergeable_ranks, special_tokens).encode(text, allowed_special="all")`
  (special tokens written in the text are recognised, as ours does; `encode` runs on the calling thread).
  The special tokens are the `added_tokens` of `--tokenizer-json` when given; the pattern is `--pattern`, else
  the Split regex of `--tokenizer-json`.
- HF tokenizers: `Tokenizer.from_file(json).encode(text, add_special_tokens=False)` on the whole text, with
  TOKENIZERS_PARALLELISM=false (one `encode` call never uses more than one thread anyway).

Install the peers with: python3 -m venv ~/.cache/moe-peers && ~/.cache/moe-peers/bin/pip install tiktoken tokenizers
"""
import argparse
import array
import json
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RAYON_NUM_THREADS", "1")


def write_ids(path, ids):
    a = array.array("I", ids)
    if sys.byteorder != "little":
        a.byteswap()
    with open(path, "wb") as f:
        a.tofile(f)


def best_of(repeat, fn):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def split_regex(tokenizer_json):
    """The first Split pre-tokenizer regex of a tokenizer.json, or None."""
    with open(tokenizer_json, "rb") as f:
        doc = json.loads(f.read())
    stack = [doc.get("pre_tokenizer")]
    while stack:
        p = stack.pop(0)
        if not isinstance(p, dict):
            continue
        if p.get("type") == "Split" and isinstance(p.get("pattern"), dict) and "Regex" in p["pattern"]:
            return p["pattern"]["Regex"]
        stack.extend(p.get("pretokenizers") or [])
    return None


def added_tokens(tokenizer_json):
    with open(tokenizer_json, "rb") as f:
        doc = json.loads(f.read())
    return {t["content"]: t["id"] for t in doc.get("added_tokens") or []}


def run_tiktoken(args, text):
    import base64
    import tiktoken

    def load():
        ranks = {}
        with open(args.tiktoken, "rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2:
                    ranks[base64.b64decode(fields[0])] = int(fields[1])
        pattern = args.pattern or (split_regex(args.tokenizer_json) if args.tokenizer_json else None)
        if pattern is None:
            raise SystemExit("tokenizer_peer.py: tiktoken needs --pattern (or --tokenizer-json with a Split regex)")
        specials = added_tokens(args.tokenizer_json) if args.tokenizer_json else {}
        return tiktoken.Encoding("peer", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)

    load_s, enc = best_of(1, load)
    encode_s, ids = best_of(args.repeat, lambda: enc.encode(text, allowed_special="all", disallowed_special=()))
    return {"engine": "tiktoken", "version": tiktoken.__version__, "load_s": load_s, "encode_s": encode_s,
            "tokens": len(ids)}, ids


def run_hf(args, text):
    import tokenizers

    load_s, tok = best_of(1, lambda: tokenizers.Tokenizer.from_file(args.tokenizer_json))
    encode_s, enc = best_of(args.repeat, lambda: tok.encode(text, add_special_tokens=False))
    ids = enc.ids
    return {"engine": "hf-tokenizers", "version": tokenizers.__version__, "load_s": load_s, "encode_s": encode_s,
            "tokens": len(ids)}, ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="UTF-8 text file to encode")
    ap.add_argument("--tokenizer-json", help="tokenizer.json for HF tokenizers (and tiktoken's specials/pattern)")
    ap.add_argument("--tiktoken", help="tiktoken rank file (base64 token, rank per line)")
    ap.add_argument("--pattern", help="tiktoken split pattern (default: the Split regex of --tokenizer-json)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", required=True, help="folder for the <engine>.ids files")
    args = ap.parse_args()
    with open(args.input, "rb") as f:   # bytes, so that no newline translation happens
        text = f.read().decode("utf-8")
    engines = []
    if args.tiktoken:
        engines.append(run_tiktoken)
    if args.tokenizer_json:
        engines.append(run_hf)
    for engine in engines:
        try:
            result, ids = engine(args, text)
        except ImportError as e:
            print(json.dumps({"engine": engine.__name__[4:], "error": f"not installed: {e}"}), flush=True)
            continue
        result["ids"] = os.path.join(args.out, result["engine"] + ".ids")
        write_ids(result["ids"], ids)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
