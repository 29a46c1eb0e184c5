#!/usr/bin/env python3
"""End-to-end check of `moe serve` with the official `openai` Python client (run by
Tests/EndToEndTests/ServeCLITests.swift, or by hand against a running server).

    python scripts/openai_e2e.py --base-url http://127.0.0.1:8080/v1 --model NAME --key KEY \
        --ledger moe-ledger.sqlite --price-input 2 --price-output 6

Checks chat, completions, streaming with usage, errors (400, 401, 413) through the client's exception types,
a client that disconnects mid-stream, and N concurrent streaming requests; then that every answered request
has a ledger row with the token counts the client saw and cost = tokens x price per million. Prints one line
per check; exits 1 on the first failure.
"""
import argparse
import concurrent.futures
import sqlite3
import sys
import time

try:
    import httpx
except ImportError:  # openai 3.x depends on httpx2, httpx's successor with the same API
    import httpx2 as httpx
import openai


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--price-input", type=float, required=True)
    ap.add_argument("--price-output", type=float, required=True)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=120)
    answered = []  # (prompt_tokens, completion_tokens) of every request the server answered in full

    # Models.
    models = [m.id for m in client.models.list().data]
    check(models == [args.model], f"models.list() == [{args.model}]")

    # Chat, not streamed.
    r = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "What is 12 + 34?"}],
                                       max_tokens=12, temperature=0)
    check(r.object == "chat.completion" and r.choices[0].message.role == "assistant", "chat completion shape")
    check(isinstance(r.choices[0].message.content, str), f"chat content: {r.choices[0].message.content!r}")
    check(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason {r.choices[0].finish_reason}")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens and r.usage.completion_tokens <= 12,
          f"usage {r.usage.prompt_tokens} + {r.usage.completion_tokens}")
    answered.append((r.usage.prompt_tokens, r.usage.completion_tokens))
    greedy_text = r.choices[0].message.content

    # The same request again: the prompt's KV cache is reused.
    r = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "What is 12 + 34?"}],
                                       max_tokens=12, temperature=0)
    cached = r.usage.prompt_tokens_details.cached_tokens
    check(cached == r.usage.prompt_tokens - 1, f"cached_tokens {cached} of {r.usage.prompt_tokens}")
    check(r.choices[0].message.content == greedy_text, "greedy is deterministic")
    answered.append((r.usage.prompt_tokens, r.usage.completion_tokens))

    # Streaming with usage.
    stream = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "What is 12 + 34?"}],
                                            max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == greedy_text, f"streamed text equals the whole answer ({text!r})")
    check(chunks[-1].usage is not None and not chunks[-1].choices, "usage in the last chunk")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(len(finishes) == 1, f"one finish_reason ({finishes})")
    answered.append((chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens))

    # Legacy completions with sampling parameters, logprobs and n.
    r = client.completions.create(model=args.model, prompt="1 + 2 =", max_tokens=6, temperature=0.8, top_p=0.9, seed=3,
                                  n=2, logprobs=2, presence_penalty=0.5, frequency_penalty=0.5,
                                  extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    check(len(r.choices) == 2 and all(len(c.logprobs.token_logprobs) >= 1 for c in r.choices), "completions with n=2 and logprobs")
    answered.append((r.usage.prompt_tokens, r.usage.completion_tokens))
    again = client.completions.create(model=args.model, prompt="1 + 2 =", max_tokens=6, temperature=0.8, top_p=0.9, seed=3,
                                      n=2, logprobs=2, presence_penalty=0.5, frequency_penalty=0.5,
                                      extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    check([c.text for c in again.choices] == [c.text for c in r.choices], "a seed makes sampling reproducible")
    answered.append((again.usage.prompt_tokens, again.usage.completion_tokens))

    # Chat logprobs.
    r = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "hi"}], max_tokens=3,
                                       logprobs=True, top_logprobs=2)
    check(all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in r.choices[0].logprobs.content), "chat logprobs")
    answered.append((r.usage.prompt_tokens, r.usage.completion_tokens))

    # Errors through the client's exception types.
    def expect(exc, what, call):
        try:
            call()
        except exc as e:
            check(True, f"{what} -> {type(e).__name__} {getattr(e, 'status_code', '')}")
            return
        except Exception as e:  # noqa: BLE001
            check(False, f"{what}: expected {exc.__name__}, got {type(e).__name__}: {e}")
        check(False, f"{what}: expected {exc.__name__}, got success")

    msgs = [{"role": "user", "content": "hi"}]
    expect(openai.BadRequestError, "temperature 7", lambda: client.chat.completions.create(model=args.model, messages=msgs, temperature=7))
    expect(openai.BadRequestError, "unknown model", lambda: client.chat.completions.create(model="gpt-nope", messages=msgs))
    expect(openai.BadRequestError, "negative max_tokens", lambda: client.chat.completions.create(model=args.model, messages=msgs, max_tokens=-1))
    expect(openai.BadRequestError, "prompt over the context",
           lambda: client.completions.create(model=args.model, prompt="7 " * 100000, max_tokens=1))
    bad = openai.OpenAI(base_url=args.base_url, api_key="sk-wrong", max_retries=0)
    expect(openai.AuthenticationError, "wrong key", lambda: bad.chat.completions.create(model=args.model, messages=msgs))
    expect(openai.APIStatusError, "huge body (413)",
           lambda: client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "x" * 3_000_000}]))
    # Garbage bodies straight through httpx.
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    for body in [b"{not json", b"\xff\xfe\x00", b"[]", b'{"model": 5}']:
        g = httpx.post(f"{args.base_url}/chat/completions", content=body, headers=headers, timeout=30)
        check(g.status_code == 400 and "error" in g.json(), f"garbage body {body[:12]!r} -> {g.status_code}")

    # A client that disconnects mid-stream: the server stops that work and keeps serving.
    with client.chat.completions.create(model=args.model, messages=msgs, max_tokens=2000, stream=True,
                                        extra_body={"ignore_eos": True}) as s:
        for i, _ in enumerate(s):
            if i == 3:
                break
    r = client.chat.completions.create(model=args.model, messages=msgs, max_tokens=2)
    check(r.usage.completion_tokens <= 2, "serves after a disconnect")
    answered.append((r.usage.prompt_tokens, r.usage.completion_tokens))

    # N concurrent streams all finish, each with its own usage.
    def one(i):
        s = client.chat.completions.create(model=args.model, max_tokens=16 + i, temperature=0.7, seed=i, stream=True,
                                           stream_options={"include_usage": True},
                                           messages=[{"role": "user", "content": f"Count to {i}."}])
        chunks = list(s)
        return chunks[-1].usage
    start = time.time()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        usages = list(pool.map(one, range(args.concurrency)))
    check(all(u is not None for u in usages), f"{args.concurrency} concurrent streams finished in {time.time() - start:.1f} s")
    answered += [(u.prompt_tokens, u.completion_tokens) for u in usages]

    # The ledger: one row per answered request with the client's counts and cost, one cancelled row, and one row
    # per refused request (its status, no tokens, no cost).
    time.sleep(0.5)
    db = sqlite3.connect(args.ledger)
    rows = db.execute("SELECT prompt_tokens, completion_tokens, cost_usd, finish_reason FROM requests ORDER BY id").fetchall()
    refused = db.execute("SELECT status, prompt_tokens + completion_tokens, cost_usd FROM requests WHERE finish_reason = 'error'").fetchall()
    check(len(refused) == 10 and all(400 <= st < 500 and t == 0 and cost == 0 for st, t, cost in refused)
          and {401, 413} <= {st for st, _, _ in refused}, f"the 10 refused requests are rows with their status ({refused})")
    full = sorted((p, c) for p, c, _, f in rows if f not in ("cancelled", "error"))
    check(full == sorted(answered), f"ledger rows match the {len(answered)} answered requests")
    check(all(abs(cost - (p * args.price_input + c * args.price_output) / 1e6) < 1e-9 for p, c, cost, _ in rows),
          "ledger cost = tokens x price per million")
    cancelled = [r for r in rows if r[3] == "cancelled"]
    check(len(cancelled) == 1 and 3 <= cancelled[0][1] < 2000, f"the disconnected stream is billed for what it used ({cancelled})")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
