#!/usr/bin/env python3
"""Load a checkpoint (e.g. one written by `moe train`) with transformers and run a few tokens through it.

    ~/.cache/moe-peers/bin/python scripts/check_trained_checkpoint.py DIR [--tokens 1,2,3] [--compare FILE]

Prints one JSON line: the tokens, the last position's first 8 logits and its argmax. With `--compare FILE`
(a JSON list of logits rows, one per position, e.g. from the Swift side; `{"logits": [...]}` also accepted)
it also prints the max |diff| over all positions and exits 1 when it exceeds --tol (default 1e-4).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--tokens", default="1,2,3")
    ap.add_argument("--compare", metavar="FILE")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(args.dir, dtype=torch.float32, attn_implementation="eager").eval()
    tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0].float()
    last = logits[-1]
    print(json.dumps({"tokens": tokens, "logits_first8": last[:8].double().tolist(), "argmax": int(last.argmax())}))

    if args.compare:
        with open(args.compare) as f:
            other = json.load(f)
        if isinstance(other, dict):
            other = other["logits"]
        other = torch.tensor(other, dtype=torch.float64)
        if other.dim() == 1:
            other = other[None]
        if other.shape != logits.shape:
            print(f"shape mismatch: {tuple(other.shape)} vs HF {tuple(logits.shape)}", file=sys.stderr)
            return 2
        diff = float((other - logits.double()).abs().max())
        print(f"max |diff|: {diff:.3e}")
        if not diff <= args.tol:
            print(f"FAIL: max |diff| {diff:.3e} > {args.tol:g}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
