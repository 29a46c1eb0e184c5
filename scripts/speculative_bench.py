#!/usr/bin/env python3
"""Speculative decoding against plain decode, side by side: `moe generate` on the same prompts with and without
drafts, alternating runs, greedy, a fixed number of tokens (--ignore-eos). Prints decode tokens/s per run, the
drafts kept, and each mode's speed-up over plain decode (range over the runs, each run against the plain run
beside it). Run it alone on the machine.

    python3 scripts/speculative_bench.py --model /tmp/mtp-mid [--runs 3] [--max-tokens 200] [--modes mtp,mtp:2,lookup]
"""
from __future__ import annotations

import argparse, platform, re, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = {  # one per domain of the demo corpus (`moe demo` writes it to OUT/corpus.jsonl)
    "arithmetic": "What is 45 + 37?",
    "code": "fn step(value, x) {",
    "prose": "A gentle sailor lived on the hill.",
}


def cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def generate(moe: str, model: str, prompt: str, tokens: int, mode: str) -> tuple[float, int, int]:
    args = [moe, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(tokens), "--ignore-eos"]
    if mode != "plain":
        kind, _, n = mode.partition(":")
        args += ["--speculative", kind] + (["--draft-tokens", n] if n else [])
    err = subprocess.run(args, capture_output=True, text=True, check=True).stderr
    rate = float(re.search(r"generated at ([0-9.]+) tokens/s", err).group(1))
    drafts = re.search(r"drafts (\d+)/(\d+) accepted", err)
    return rate, int(drafts.group(1)) if drafts else 0, int(drafts.group(2)) if drafts else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--moe", default=str(ROOT / ".build/release/moe"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--modes", default="mtp,mtp:2")
    a = ap.parse_args()
    modes = a.modes.split(",")
    print(f"CPU: {cpu()}; model {a.model}; {a.max_tokens} tokens, greedy, {a.runs} alternating runs")
    for name, prompt in PROMPTS.items():
        plain, results = [], {m: [] for m in modes}
        for _ in range(a.runs):
            base = generate(a.moe, a.model, prompt, a.max_tokens, "plain")[0]
            plain.append(base)
            for m in modes:
                rate, kept, made = generate(a.moe, a.model, prompt, a.max_tokens, m)
                results[m].append((rate, kept, made, rate / base))
        print(f"[{name}] plain {min(plain):.0f}-{max(plain):.0f} tokens/s")
        for m, rs in results.items():
            ratios = [r[3] for r in rs]
            kept, made = sum(r[1] for r in rs), sum(r[2] for r in rs)
            print(f"  {m:10s} {min(r[0] for r in rs):.0f}-{max(r[0] for r in rs):.0f} tokens/s, "
                  f"drafts kept {kept}/{made} ({100 * kept / max(made, 1):.0f}%), speed-up {min(ratios):.2f}-{max(ratios):.2f}x")


if __name__ == "__main__":
    main()
