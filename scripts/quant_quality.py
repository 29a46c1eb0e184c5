#!/usr/bin/env python3
"""The quality of llama.cpp's quantisation presets on a model trained here: the README's table.

For an HF model directory and a text, writes the model as f32 GGUF (`moe convert`) and as Q8_0, Q6_K, Q5_K_M,
Q4_K_M and IQ4_XS (`moe quantize`), then for each file:
  moe       `moe eval --text TEXT --reference MODEL_DIR`: perplexity, KL divergence to the f32 model's
            distributions (mean, 99th percentile) and top-1 agreement;
  llama.cpp the perplexity llama.cpp computes on the same file over the same windows of the same ids
            (llama-cpp-python, all logits, f32 KV cache; a fresh context per window, each window's first token
            context only, as `moe eval`).
Prints a Markdown table.

    ~/.cache/moe-peers/bin/python scripts/quant_quality.py MODEL_DIR TEXT [--window 256] [--moe .build/release/moe]
"""
import argparse, json, math, os, subprocess, sys, tempfile
import numpy as np

PRESETS = ["f32", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "iq4_xs"]


def moe(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"moe {' '.join(args)} failed: {r.stderr[-800:]}")
    return r.stdout


def llama_perplexity(path, text, window):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=window, n_batch=window, n_ubatch=window, n_threads=2,
                          logits_all=True, verbose=False, type_k=0, type_v=0, flash_attn=False)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    nll, predicted, start = 0.0, 0, 0
    while start + 1 < len(ids):
        chunk = ids[start:start + window]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:len(chunk)], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logz = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        for t in range(len(chunk) - 1):
            nll += logz[t] - logits[t, chunk[t + 1]]
            predicted += 1
        start += len(chunk) - 1
    del llm
    return math.exp(nll / predicted), len(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--moe", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".build/release/moe"))
    args = ap.parse_args()
    text = open(args.text, encoding="utf-8").read()
    tmp = tempfile.mkdtemp(prefix="moe-quant-quality-")
    config = json.load(open(os.path.join(args.model, "config.json")))
    rows = []
    for preset in PRESETS:
        path = os.path.join(tmp, preset + ".gguf")
        if preset == "f32":
            moe(args.moe, "convert", "--model", args.model, "--type", "f32", "--out", path)
        else:
            moe(args.moe, "quantize", "--model", args.model, "--type", preset, "--out", path)
        ours = json.loads(moe(args.moe, "eval", "--model", path, "--text", args.text, "--reference", args.model,
                              "--window", str(args.window)).strip().splitlines()[-1])
        theirs, llama_tokens = llama_perplexity(path, text, args.window)
        if llama_tokens != ours["tokens"]:
            print(f"note: llama.cpp tokenizes the text into {llama_tokens} tokens, swift-moe into {ours['tokens']}", file=sys.stderr)
        size = os.path.getsize(path)
        rows.append((preset.upper(), size, ours, theirs))
        print(f"{preset}: done", file=sys.stderr)
    import gguf  # noqa: E402
    reader = gguf.GGUFReader(os.path.join(tmp, "f32.gguf"))
    weights = sum(int(np.prod(t.shape)) for t in reader.tensors)
    print(f"Model: {args.model} ({config.get('model_type')}, hidden {config.get('hidden_size')}, "
          f"{config.get('num_hidden_layers')} layers, {config.get('num_experts', 0)} experts; {weights / 1e6:.2f}M weights); "
          f"text: {args.text} ({rows[0][2]['tokens']} tokens), windows of {args.window}.\n")
    print("| type | size | bits/weight | perplexity (swift-moe) | perplexity (llama.cpp) | KL mean | KL p99 | top-1 agreement |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size, ours, theirs in rows:
        print(f"| {name} | {size / 1e6:.2f} MB | {size * 8 / weights:.2f} | {ours['perplexity']:.4f} | {theirs:.4f} | "
              f"{ours['kl_divergence']:.5f} | {ours['kl_divergence_p99']:.5f} | {100 * ours['top1_agreement']:.2f} % |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.environ.get("PEERS_VENV", os.path.expanduser("~/.cache/moe-peers")), "llama.cpp", "gguf-py"))
    main()
