#!/usr/bin/env python3
"""llama.cpp's decode speed after a context of D tokens (llama-bench's `-d`), beside `moe bench infer --depth D`.
Usage: ~/.cache/moe-peers/bin/python scripts/llamacpp_depth.py MODEL.gguf [--depth 4096] [--gen-tokens 64]
       [--reps 2] [--threads 2]   (f32 KV cache, as swift-moe's, unless --kv f16)"""
import argparse, random, time
import llama_cpp

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("--depth", type=int, default=4096); ap.add_argument("--gen-tokens", type=int, default=64)
ap.add_argument("--reps", type=int, default=2); ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--kv", choices=["f32", "f16"], default="f32")
a = ap.parse_args()
kv = {"f32": 0, "f16": 1}[a.kv]
llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.depth + a.gen_tokens + 8, n_batch=512, n_ubatch=512, n_threads=a.threads,
                      n_threads_batch=a.threads, flash_attn=True, type_k=kv, type_v=kv, verbose=False)
vocab = llm.n_vocab(); rng = random.Random(0)
rates = []
for rep in range(a.reps):
    llm.reset(); llm.eval([rng.randrange(vocab) for _ in range(a.depth)])
    t = time.perf_counter()
    for _ in range(a.gen_tokens): llm.eval([rng.randrange(vocab)])
    rates.append(a.gen_tokens / (time.perf_counter() - t))
print(f"llama.cpp {llama_cpp.__version__}, {a.threads} threads, {a.kv} KV cache, {a.model}")
print(f"decode at depth {a.depth} tokens/s: {sorted(rates)[len(rates) // 2]:.1f} (runs: {', '.join(f'{r:.1f}' for r in rates)})")
