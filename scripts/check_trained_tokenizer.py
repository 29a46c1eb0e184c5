#!/usr/bin/env python3
"""Checks a tokenizer written by `moe tokenizer train` against Hugging Face `tokenizers`.

    check_trained_tokenizer.py DIR TEXTFILE
        Loads DIR/tokenizer.json with HF tokenizers and prints {"ids": [...]} for the text of TEXTFILE
        (special tokens in the text are recognised; none are added), to compare with
        `moe tokenize --tokenizer DIR --no-special "$(cat TEXTFILE)"`. Also checks that decoding gives
        the text back.

    check_trained_tokenizer.py DIR TEXTFILE --compare-hf-trainer [--train-file FILE] [--min-frequency 2]
        Also trains HF's own BpeTrainer on FILE (default TEXTFILE) with the same pipeline (NFC, Split with
        DIR's pattern, ByteLevel, all 256 bytes as the alphabet, the same vocabulary size) and reports how many
        merges / vocabulary entries / ids of TEXTFILE agree with DIR's. Exit status 1 when they differ.

Run it with the peers' venv: ~/.cache/moe-peers/bin/python scripts/check_trained_tokenizer.py ...
"""
import argparse
import json
import os
import sys
import unicodedata

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers


def hf_train(reference, train_file, min_frequency):
    """Trains HF's BpeTrainer with `reference`'s configuration; special tokens are added afterwards so that
    their ids follow the BPE vocabulary, as in files written by `moe tokenizer train`."""
    model_json = reference["model"]
    pattern = None
    for p in reference["pre_tokenizer"]["pretokenizers"]:
        if p["type"] == "Split":
            pattern = p["pattern"]["Regex"]
    specials = [t["content"] for t in reference["added_tokens"]]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=len(model_json["vocab"]), min_frequency=min_frequency, show_progress=False,
        special_tokens=[], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([train_file], trainer)
    tok.add_special_tokens(specials)
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("textfile")
    ap.add_argument("--compare-hf-trainer", action="store_true")
    ap.add_argument("--train-file")
    ap.add_argument("--min-frequency", type=int, default=2)
    ap.add_argument("--quiet", action="store_true", help="do not print the ids")
    args = ap.parse_args()

    path = os.path.join(args.dir, "tokenizer.json")
    tok = Tokenizer.from_file(path)
    with open(args.textfile, encoding="utf-8", newline="") as f:  # keep "\r\n" as it is
        text = f.read()
    ids = tok.encode(text, add_special_tokens=False).ids
    if not args.quiet:
        print(json.dumps({"ids": ids}))
    ok = True
    if tok.decode(ids, skip_special_tokens=False) != unicodedata.normalize("NFC", text):
        print("MISMATCH: decode(encode(text)) != NFC(text)", file=sys.stderr)
        ok = False
    print(f"{path}: vocab {tok.get_vocab_size()}, {len(ids)} ids for {len(text.encode())} bytes", file=sys.stderr)

    if args.compare_hf_trainer:
        with open(path, encoding="utf-8") as f:
            ours = json.load(f)
        hf = hf_train(ours, args.train_file or args.textfile, args.min_frequency)
        theirs = json.loads(hf.to_str())
        om = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in ours["model"]["merges"]]
        hm = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in theirs["model"]["merges"]]
        prefix = next((i for i, (a, b) in enumerate(zip(om, hm)) if a != b), min(len(om), len(hm)))
        same_pos = sum(a == b for a, b in zip(om, hm))
        common = len(set(om) & set(hm))
        ov, hv = ours["model"]["vocab"], theirs["model"]["vocab"]
        same_ids = sum(1 for t, i in ov.items() if hv.get(t) == i)
        hf_ids = hf.encode(text, add_special_tokens=False).ids
        same_enc = sum(a == b for a, b in zip(ids, hf_ids))
        print(f"merges: ours {len(om)}, HF {len(hm)}; identical prefix {prefix}; same position {same_pos}; "
              f"in both {common}", file=sys.stderr)
        print(f"vocab: ours {len(ov)}, HF {len(hv)}; same token at same id {same_ids}", file=sys.stderr)
        print(f"added tokens: ours {[(t['id'], t['content']) for t in ours['added_tokens']]}, "
              f"HF {[(t['id'], t['content']) for t in theirs['added_tokens']]}", file=sys.stderr)
        print(f"ids of the text: ours {len(ids)}, HF-trained {len(hf_ids)}; equal positions {same_enc}; "
              f"identical {ids == hf_ids}", file=sys.stderr)
        if prefix < len(om):
            print(f"first difference at merge {prefix}: ours {om[prefix]} HF {hm[prefix] if prefix < len(hm) else None}",
                  file=sys.stderr)
        if om != hm or ov != hv or ids != hf_ids:
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
