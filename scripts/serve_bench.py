#!/usr/bin/env python3
"""Load generator for OpenAI-compatible servers: aggregate generated tokens/s and time to first token at
1, 4, 8 and 16 concurrent streams, for `moe serve` and llama.cpp's server (llama-cpp-python[server]) on the
same model, side by side. A benchmark, not a test.

    # both servers, started and stopped here (the bf16 bench model; its GGUF from scripts/llamacpp_peer.sh):
    ~/.cache/moe-peers/bin/python scripts/serve_bench.py \
        --moe-model bench-models/qwen3moe-bf16-tok --gguf bench-models/qwen3moe-bf16-bf16.gguf
    # or any running server:
    python scripts/serve_bench.py --url http://127.0.0.1:8080/v1 --model NAME

Each stream sends a different prompt of about --prompt-tokens tokens, new in every round (a shared prefix of a
few tokens at most: the prompt caches of the servers serve nothing)
and asks for exactly --gen-tokens tokens (end-of-sequence suppressed: `ignore_eos` for moe, `logit_bias`
for llama.cpp). TTFT is from sending the request to the first streamed text; aggregate tokens/s is all
generated tokens over the wall time of the whole round; ITL is the gap between two streamed chunks of one
stream (median, 99th percentile and maximum over the round: the stalls readers saw, which chunked prefill
bounds; text a server holds back, as an incomplete UTF-8 character, also shows as a gap). `--stagger S` starts stream i S·i seconds into the round, so later prompts arrive while earlier
streams decode. Every level runs --repeat times (levels interleaved) and its median round is reported. Prints
one table per server and the ratios.
"""
import argparse
import concurrent.futures
import json
import os
import random
import signal
import subprocess
import sys
import time

try:
    import httpx
except ImportError:  # openai 3.x depends on httpx2, httpx's successor with the same API
    import httpx2 as httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stream_one(url, model, prompt, gen_tokens, extra, key):
    body = {"model": model, "prompt": prompt, "max_tokens": gen_tokens, "temperature": 0, "stream": True, **extra}
    headers = {"Authorization": f"Bearer {key}"}
    start = time.perf_counter()
    first = None
    last = None
    gaps = []
    chunks = 0
    usage = None
    with httpx.stream("POST", f"{url}/completions", json=body, headers=headers, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            obj = json.loads(data)
            if obj.get("usage"):
                usage = obj["usage"]
            if obj.get("choices"):
                chunks += 1
                now = time.perf_counter()
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
    end = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else chunks
    return {"ttft": (first or end) - start, "tokens": tokens, "seconds": end - start, "gaps": gaps}


def round_of(url, model, streams, prompts, gen_tokens, extra, key, stagger=0.0):
    def one(i):
        time.sleep(stagger * i)
        return stream_one(url, model, prompts[i], gen_tokens, extra, key)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(one, range(streams)))
    wall = time.perf_counter() - start
    tokens = sum(r["tokens"] for r in results)
    ttfts = sorted(r["ttft"] for r in results)
    gaps = sorted(g for r in results for g in r["gaps"]) or [0.0]
    return {"streams": streams, "tokens": tokens, "wall": wall, "tok_s": tokens / wall,
            "ttft_mean": sum(ttfts) / len(ttfts), "ttft_max": ttfts[-1],
            "itl_median": gaps[len(gaps) // 2], "itl_p99": gaps[min(len(gaps) - 1, len(gaps) * 99 // 100)],
            "itl_max": gaps[-1]}


def bench(name, url, model, levels, prompts, gen_tokens, extra, key, repeat, stagger=0.0):
    """Runs every level `repeat` times, the levels interleaved (drift on a shared machine hits them alike), and
    keeps each level's median round by tokens/s."""
    round_of(url, model, 1, ["Warm-up " + p for p in prompts], 4, extra, key)
    runs = {n: [] for n in levels}
    rounds = 0
    for _ in range(repeat):
        for n in levels:
            # A new first word every round: a server's prompt cache must not serve a prompt of an earlier round.
            rounds += 1
            fresh = [f"Round {rounds}. " + p for p in prompts]
            runs[n].append(round_of(url, model, n, fresh, gen_tokens, extra, key, stagger))
    rows = []
    for n in levels:
        r = sorted(runs[n], key=lambda x: x["tok_s"])[len(runs[n]) // 2]
        rows.append(r)
        spread = f" (runs {min(x['tok_s'] for x in runs[n]):.1f}…{max(x['tok_s'] for x in runs[n]):.1f})" if repeat > 1 else ""
        print(f"{name:>10} streams {n:>2}: {r['tok_s']:7.1f} tok/s aggregate{spread} ({r['tokens']} tokens in {r['wall']:.1f} s), "
              f"TTFT mean {r['ttft_mean'] * 1000:7.0f} ms, max {r['ttft_max'] * 1000:7.0f} ms, "
              f"ITL median {r['itl_median'] * 1000:5.0f} ms, p99 {r['itl_p99'] * 1000:5.0f} ms, max {r['itl_max'] * 1000:6.0f} ms",
              flush=True)
    return rows


def wait_ready(url, proc, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=2, headers={"Authorization": "Bearer x"}).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"server at {url} not ready after {seconds} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe-model", help="model directory for `moe serve` (started here)")
    ap.add_argument("--moe-binary", default=os.path.join(ROOT, ".build/release/moe"))
    ap.add_argument("--gguf", help="GGUF of the same model for llama-cpp-python's server (started here)")
    ap.add_argument("--url", help="an already running OpenAI-compatible server (…/v1)")
    ap.add_argument("--model", help="model id for --url")
    ap.add_argument("--levels", default="1,4,8,16")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16, help="moe serve --parallel")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per level; the median is reported")
    ap.add_argument("--stagger", type=float, default=0.0, help="seconds between the starts of a round's streams")
    ap.add_argument("--moe-args", default="", help="more `moe serve` options, e.g. '--step-tokens 256'")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    # Prompts: words that tokenize to about one token each; a distinct leading word per stream.
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "green", "light", "north", "south", "paper"]
    prompts = [f"Story {i}: " + " ".join(rng.choice(words) for _ in range(args.prompt_tokens - 4)) for i in range(max(levels))]

    results = {}
    if args.url:
        results["server"] = bench("server", args.url, args.model, levels, prompts, args.gen_tokens,
                                   {"ignore_eos": True, "stream_options": {"include_usage": True}}, "x", args.repeat,
                                   args.stagger)
    if args.moe_model:
        port = args.port
        cmd = [args.moe_binary, "serve", "--model", args.moe_model, "--port", str(port), "--parallel", str(args.parallel),
               "--threads", str(args.threads), "--ledger", f"/tmp/serve-bench-{os.getpid()}.sqlite",
               "--queue-limit", "256"] + args.moe_args.split()
        print("$ " + " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            wait_ready(url, proc)
            model = os.path.basename(os.path.normpath(args.moe_model))
            results["moe"] = bench("moe", url, model, levels, prompts, args.gen_tokens,
                                   {"ignore_eos": True, "stream_options": {"include_usage": True}}, "x", args.repeat,
                                   args.stagger)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    if args.gguf:
        port = args.port + 1
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", args.gguf, "--port", str(port), "--n_threads",
               str(args.threads), "--n_threads_batch", str(args.threads), "--n_ctx", "4096",
               # Queue concurrent requests instead of cutting the running one short (its default).
               "--interrupt_requests", "False"]
        print("$ " + " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            wait_ready(url, proc)
            model = httpx.get(f"{url}/models").json()["data"][0]["id"]
            # llama.cpp has no ignore_eos on this endpoint: forbid the end-of-text ids instead.
            bias = {"logit_bias": {"151643": -100, "151645": -100}}
            results["llama.cpp"] = bench("llama.cpp", url, model, levels, prompts, args.gen_tokens, bias, "x", args.repeat,
                                         args.stagger)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    if "moe" in results:
        base = results["moe"][0]["tok_s"]
        for r in results["moe"]:
            line = f"streams {r['streams']:>2}: moe {r['tok_s']:7.1f} tok/s = {r['tok_s'] / base:4.2f}x its single stream"
            if "llama.cpp" in results:
                peer = next(p for p in results["llama.cpp"] if p["streams"] == r["streams"])
                line += f"; llama.cpp server {peer['tok_s']:7.1f} tok/s; moe/llama.cpp = {r['tok_s'] / peer['tok_s']:4.2f}x"
            print(line)


if __name__ == "__main__":
    main()
