#!/usr/bin/env python3
"""The quality of llama.cpp's quantisation presets on a model trained here: the README's table.

For an HF model directory (or its f32 GGUF file) and a text, writes the model as f32 GGUF (`moe convert`) and as
Q8_0, Q6_K, Q5_K_M, Q4_K_M and IQ4_XS (`moe quantize`), then for each file:
  moe       `moe eval --text TEXT --reference F32`: perplexity, KL divergence to the f32 model's distributions
            (mean, 99th percentile) and top-1 agreement, scored as prefill (each window in one pass: the f32 GEMM)
            and as decode (`--step 1`, one token per pass: the integer kernels on 8-bit activations);
  llama.cpp the same figures from llama.cpp's logits on the same file over the same windows of the same ids,
            against its own logits of the f32 file (llama-cpp-python, all logits, f32 KV cache; a fresh context
            per window, each window's first token context only, as `moe eval`).
Prints a Markdown table.

    ~/.cache/moe-peers/bin/python scripts/quant_quality.py MODEL_DIR|F32.gguf TEXT [--window 256] [--moe .build/release/moe]
"""
import argparse, json, math, os, shutil, subprocess, sys, tempfile
import numpy as np

PRESETS = ["f32", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "iq4_xs"]


def moe(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"moe {' '.join(args)} failed: {r.stderr[-800:]}")
    return r.stdout


def llama_logprobs(path, text, window):
    """llama.cpp's log-probabilities of each predicted position (float32, [predicted, vocab]) and the text's ids."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=window, n_batch=window, n_ubatch=window, n_threads=2,
                          logits_all=True, verbose=False, type_k=0, type_v=0, flash_attn=False)
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    rows, start = [], 0
    while start + 1 < len(ids):
        chunk = ids[start:start + window]
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:len(chunk) - 1], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        rows.append((logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))).astype(np.float32))
        start += len(chunk) - 1
    del llm
    return np.concatenate(rows), ids


def llama_figures(logprobs, ids, window, reference):
    """Perplexity, and against the reference's log-probabilities: KL mean and p99, top-1 agreement."""
    targets, start = [], 0
    while start + 1 < len(ids):
        chunk = ids[start:start + window]
        targets += chunk[1:]
        start += len(chunk) - 1
    ppl = math.exp(-float(np.mean(logprobs[np.arange(len(targets)), targets].astype(np.float64))))
    p = reference.astype(np.float64)
    kl = np.maximum((np.exp(p) * (p - logprobs.astype(np.float64))).sum(axis=1), 0)
    top1 = float(np.mean(p.argmax(axis=1) == logprobs.argmax(axis=1)))
    return {"perplexity": ppl, "kl_divergence": float(kl.mean()), "kl_divergence_p99": float(np.quantile(kl, 0.99, method="inverted_cdf")),
            "top1_agreement": top1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("text")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--moe", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".build/release/moe"))
    args = ap.parse_args()
    text = open(args.text, encoding="utf-8").read()
    tmp = tempfile.mkdtemp(prefix="moe-quant-quality-")
    f32 = os.path.join(tmp, "f32.gguf")
    rows, reference = [], None
    for preset in PRESETS:
        path = os.path.join(tmp, preset + ".gguf")
        if preset == "f32":
            if args.model.endswith(".gguf"):
                shutil.copyfile(args.model, path)
            else:
                moe(args.moe, "convert", "--model", args.model, "--type", "f32", "--out", path)
        else:
            moe(args.moe, "quantize", "--model", f32, "--type", preset, "--out", path)
        score = ["eval", "--model", path, "--text", args.text, "--reference", f32, "--window", str(args.window)]
        prefill = json.loads(moe(args.moe, *score).strip().splitlines()[-1])
        decode = json.loads(moe(args.moe, *score, "--step", "1").strip().splitlines()[-1])
        logprobs, ids = llama_logprobs(path, text, args.window)
        if len(ids) != prefill["tokens"]:
            print(f"note: llama.cpp tokenizes the text into {len(ids)} tokens, swift-moe into {prefill['tokens']}", file=sys.stderr)
        if reference is None:
            reference = logprobs
        rows.append((preset.upper(), os.path.getsize(path), prefill, decode, llama_figures(logprobs, ids, args.window, reference)))
        print(f"{preset}: done", file=sys.stderr)
    import gguf  # noqa: E402
    reader = gguf.GGUFReader(os.path.join(tmp, "f32.gguf"))
    weights = sum(int(np.prod(t.shape)) for t in reader.tensors)
    print(f"Model: {args.model} ({weights / 1e6:.2f}M weights); text: {args.text} ({rows[0][2]['tokens']} tokens), "
          f"windows of {args.window}. Each cell: swift-moe prefill / swift-moe decode (8-bit activations) / llama.cpp.\n")
    print("| type | size | bits/weight | perplexity | KL mean | KL p99 | top-1 agreement |")
    print("|---|---|---|---|---|---|---|")
    for name, size, prefill, decode, llama in rows:
        cells = [" / ".join(fmt.format(scale * r[key]) for r in (prefill, decode, llama))
                 for key, fmt, scale in (("perplexity", "{:.3f}", 1), ("kl_divergence", "{:.5f}", 1),
                                         ("kl_divergence_p99", "{:.5f}", 1), ("top1_agreement", "{:.2f} %", 100))]
        print(f"| {name} | {size / 1e6:.2f} MB | {size * 8 / weights:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.environ.get("PEERS_VENV", os.path.expanduser("~/.cache/moe-peers")), "llama.cpp", "gguf-py"))
    main()
