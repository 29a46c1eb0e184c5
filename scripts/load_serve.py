#!/usr/bin/env python3
"""Overload of `moe serve`: many streams at once, more waiting behind them, against a KV page pool smaller than
every slot's full context; memory must stay planned and every request must end.

    python3 scripts/load_serve.py --model DIR [--streams 64] [--queued 200] [--memory-limit MiB] [--ctx-size N]

Starts `moe serve --parallel STREAMS` with `--memory-limit` and `--ctx-size`, warms it up (every weight touched
once), then sends STREAMS + QUEUED streaming completions at once (prompts of --prompt-tokens random ids, exactly
--gen-tokens each) and samples the server's resident memory every 20 ms. Checked:
  1. every request ends: a stream that reached `data: [DONE]` with its usage, or a 429; nothing else;
  2. the peak anonymous resident memory stays under that after warm-up plus the planned KV pool (the banner's MiB)
     plus --slack MiB (per-step scratch, connection buffers, allocator slack); file-backed resident memory (mapped
     weights, touched as the router picks experts) stays within the model's files;
Reported: answered and refused counts, preemptions (`/metrics`), p50/p99 time to first token, aggregate tokens/s.
Exits non-zero on a failed check. Needs python3 and a built `moe`. A benchmark-like tool, not a test of the suite.
"""
import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time

from sse import read_events


def rss_bytes(pid):
    """Resident (anonymous, file-backed) bytes: the KV pool and scratch are anonymous; mapped weights are files."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                found[key] = int(line.split()[1]) * 1024
    return found.get("RssAnon", 0), found.get("RssFile", 0)


def request(port, body, timeout=900):
    """One streaming completion: (status, time to first token or None, completion tokens or None, error)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            payload = json.loads(r.read())
            return r.status, None, None, payload.get("error", {}).get("message")
        done, first, usage = read_events(r, start)
        usage = usage and usage["completion_tokens"]
        return (200 if done else -1), first, usage, None if done else "the stream ended before [DONE]"
    except (OSError, http.client.HTTPException, ValueError) as e:
        return -1, None, None, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def metric(port, name):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--moe", default=".build/release/moe")
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--queued", type=int, default=200)
    ap.add_argument("--memory-limit", type=int, default=256, help="MiB for the KV page pool")
    ap.add_argument("--ctx-size", type=int, default=1024)
    ap.add_argument("--prompt-tokens", type=int, default=48)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--slack", type=int, default=256, help="MiB allowed above warm-up RSS + the KV pool")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18250)
    ap.add_argument("--work", default="/tmp/moe-load")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    log_path = os.path.join(args.work, "server.log")
    ledger = os.path.join(args.work, "ledger.sqlite")
    for f in (ledger, ledger + "-wal", ledger + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    cmd = [args.moe, "serve", "--model", args.model, "--port", str(args.port), "--threads", str(args.threads),
           "--parallel", str(args.streams), "--ctx-size", str(args.ctx_size),
           "--memory-limit", str(args.memory_limit * 1024 * 1024), "--ledger", ledger]
    print("$ " + " ".join(cmd), flush=True)
    with open(log_path, "wb") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=log)
    failures = []
    try:
        deadline = time.time() + 300
        while True:
            if server.poll() is not None or time.time() > deadline:
                sys.exit(f"the server did not start; its log:\n{open(log_path).read()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
                c.request("GET", "/v1/models")
                models = json.loads(c.getresponse().read())
                model = models["data"][0]["id"]
                break
            except (OSError, ValueError, KeyError):
                time.sleep(0.2)
        banner = open(log_path).read()
        m = re.search(r"KV pool (\d+) pages × (\d+) positions, ([0-9.]+) MiB", banner)
        if not m:
            sys.exit(f"no KV pool in the banner:\n{banner}")
        pages, page_size, pool_mib = int(m.group(1)), int(m.group(2)), float(m.group(3))
        print(f"KV pool: {pages} pages of {page_size} positions, {pool_mib:.1f} MiB "
              f"(every slot's full context would take {args.streams * -(-args.ctx_size // page_size)} pages)")

        rng = random.Random(1)
        high = 256   # ids every vocabulary has (byte-level BPE's base tokens)
        warm = request(args.port, {"model": model, "prompt": [rng.randrange(high) for _ in range(args.prompt_tokens)],
                                   "max_tokens": 4, "stream": True})
        if warm[0] != 200:
            sys.exit(f"the warm-up request failed: {warm}")
        base_anon, base_file = rss_bytes(server.pid)
        weights = sum(os.path.getsize(os.path.join(args.model, f)) for f in os.listdir(args.model)
                      if f.endswith((".safetensors", ".gguf"))) if os.path.isdir(args.model) else os.path.getsize(args.model)

        total = args.streams + args.queued
        results = [None] * total
        peak = [base_anon, base_file]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                try:
                    anon, file = rss_bytes(server.pid)
                    peak[0], peak[1] = max(peak[0], anon), max(peak[1], file)
                except OSError:
                    return
                time.sleep(0.02)

        def one(i):
            body = {"model": model, "prompt": [rng.randrange(high) for _ in range(args.prompt_tokens)],
                    "max_tokens": args.gen_tokens, "ignore_eos": True, "stream": True,
                    "stream_options": {"include_usage": True}}
            results[i] = request(args.port, body)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(total)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        sampling.set()
        sampler.join()
        preemptions = metric(args.port, "moe_preemptions")

        answered = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 429]
        other = [r for r in results if r[0] not in (200, 429)]
        short = [r for r in answered if r[2] != args.gen_tokens]
        if other:
            failures.append(f"{len(other)} requests neither answered nor refused with 429, e.g. {other[:3]}")
        if short:
            failures.append(f"{len(short)} answers with other than {args.gen_tokens} tokens, e.g. {short[:3]}")
        limit = base_anon + (pool_mib + args.slack) * 1024 * 1024
        mib = lambda b: b / 1048576
        if peak[0] > limit:
            failures.append(f"peak anonymous resident memory {mib(peak[0]):.0f} MiB > warm-up {mib(base_anon):.0f} MiB + "
                            f"KV pool {pool_mib:.0f} MiB + slack {args.slack} MiB")
        if peak[1] > weights + 64 * 1048576:
            failures.append(f"peak file-backed resident memory {mib(peak[1]):.0f} MiB > the model's files {mib(weights):.0f} MiB")
        ttfts = [r[1] for r in answered if r[1] is not None]
        tokens = sum(r[2] or 0 for r in answered)
        print(f"{total} requests ({args.streams} streams + {args.queued} queued) in {wall:.1f} s: {len(answered)} answered, "
              f"{len(refused)} refused (429), {len(other)} other; {preemptions:.0f} preemptions")
        print(f"time to first token: p50 {percentile(ttfts, 50) * 1000:.0f} ms, p99 {percentile(ttfts, 99) * 1000:.0f} ms; "
              f"{tokens / wall:.1f} generated tokens/s aggregate")
        print(f"resident memory, anonymous: {mib(base_anon):.0f} MiB after warm-up, peak {mib(peak[0]):.0f} MiB (limit "
              f"{mib(limit):.0f} MiB = warm-up + KV pool {pool_mib:.0f} + slack {args.slack}); file-backed: peak "
              f"{mib(peak[1]):.0f} MiB of {mib(weights):.0f} MiB of weights")
    finally:
        server.terminate()
        server.wait(timeout=120)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("ok: every request ended (answered or 429) and memory stayed planned")


if __name__ == "__main__":
    main()
