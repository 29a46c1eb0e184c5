#!/usr/bin/env python3
"""Kill -9 soak of `moe serve`: under load, the server is killed with SIGKILL at random moments and restarted on
the same ledger; nothing a client was given in full may be missing from the ledger.

    python3 scripts/soak_serve.py --model DIR [--kills 10] [--clients 16] [--work DIR]

Clients (threads, standard library only) send chat and text completions, streamed or not; some hang up halfway.
A response counts as *given in full* when it is a 200 JSON body that parses, or an event stream that reached
`data: [DONE]`. Checked at the end:
  1. every such response has its ledger row (by `X-Request-Id`), with the status and token counts it reported;
  2. `PRAGMA integrity_check` is ok;
  3. the daily quota after the last restart equals the ledger's sum: with `--daily-token-quota` set to the key's
     use so far plus 40, a prompt of all that is left is refused (429); one token shorter, it is answered
     with exactly one token (max_tokens is capped by what is left).
Exits non-zero on any failure. Needs only python3 and a built `moe` (default .build/release/moe).
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

from sse import read_events

KEY = "soak-key"
MODEL = None   # the served model's id, read from /v1/models at the first start


def wait_healthy(port, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before answering")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not answer /health in time")


class Server:
    def __init__(self, args, port, extra=()):
        self.args, self.port, self.extra = args, port, list(extra)
        self.proc = None
        self.log = open(os.path.join(args.work, "server.log"), "ab")

    def start(self):
        cmd = [self.args.moe, "serve", "--model", self.args.model, "--port", str(self.port), "--threads", "2",
               "--parallel", "4", "--ledger", os.path.join(self.args.work, "ledger.sqlite"),
               "--api-keys", os.path.join(self.args.work, "keys.txt"), "--price-input", "1", "--price-output", "2"]
        self.proc = subprocess.Popen(cmd + self.extra, stdout=self.log, stderr=self.log)
        wait_healthy(self.port, self.proc)
        global MODEL
        if MODEL is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            c.request("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
            MODEL = json.loads(c.getresponse().read())["data"][0]["id"]
            c.close()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill9()


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.complete = []        # (request id, status, usage or None)
        self.cut = 0              # hung up on purpose
        self.failed = 0           # connection errors (the server was down)

    def add(self, **kw):
        with self.lock:
            if "complete" in kw:
                self.complete.append(kw["complete"])
            self.cut += kw.get("cut", 0)
            self.failed += kw.get("failed", 0)


def one_request(port, rng, results):
    chat = rng.random() < 0.5
    stream = rng.random() < 0.6
    hang_up = rng.random() < 0.2
    body = {"model": MODEL, "max_tokens": rng.randint(1, 24), "stream": stream, "ignore_eos": rng.random() < 0.5}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if chat:
        body["messages"] = [{"role": "user", "content": rng.choice(["Hello", "What is 2+3?", "Tell me a story", "Hi there"])}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = rng.choice(["Once upon a time", "The", "1 2 3 4", "A long time ago in"])
        path = "/v1/completions"
    data = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json",
                                                       "Authorization": f"Bearer {KEY}"})
        r = conn.getresponse()
        rid = r.getheader("X-Request-Id")
        if hang_up:
            r.read(40 if stream else 1)
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
            results.add(cut=1)
            return
        if not stream or r.status != 200:
            raw = r.read()
            parsed = json.loads(raw)   # a truncated body raises: not given in full
            results.add(complete=(rid, r.status, parsed.get("usage") if r.status == 200 else None))
            return
        done, _, usage = read_events(r)
        if done:
            results.add(complete=(rid, 200, usage))
        else:
            results.add(failed=1)
    except (OSError, http.client.HTTPException, json.JSONDecodeError, ValueError):
        results.add(failed=1)
        time.sleep(0.05)
    finally:
        conn.close()


def client_loop(port, seed, stop, results):
    rng = random.Random(seed)
    while not stop.is_set():
        one_request(port, rng, results)


def ledger_rows(path):
    db = sqlite3.connect(path)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = {r[0]: r[1:] for r in db.execute(
            "SELECT request_id, status, prompt_tokens, completion_tokens, cached_tokens FROM requests")}
        key_hashes = [r[0] for r in db.execute("SELECT DISTINCT key_hash FROM requests")]
        used = db.execute("SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM requests "
                          "WHERE created_at >= strftime('%Y-%m-%d 00:00:00', 'now')").fetchone()[0]
        return integrity, rows, key_hashes, used
    finally:
        db.close()


def post(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/v1/completions", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"})
    r = conn.getresponse()
    payload = json.loads(r.read())
    conn.close()
    return r.status, payload


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--moe", default=".build/release/moe")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--work", default="/tmp/moe-soak-serve")
    ap.add_argument("--port", type=int, default=18210)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    ledger = os.path.join(args.work, "ledger.sqlite")
    for f in (ledger, ledger + "-wal", ledger + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    with open(os.path.join(args.work, "keys.txt"), "w") as f:
        f.write(KEY + "\n")
    rng = random.Random(args.seed)

    server = Server(args, args.port)
    server.start()
    results = Results()
    stop = threading.Event()
    clients = [threading.Thread(target=client_loop, args=(args.port, args.seed * 1000 + i, stop, results), daemon=True)
               for i in range(args.clients)]
    for t in clients:
        t.start()
    t0 = time.time()
    for k in range(args.kills):
        time.sleep(rng.uniform(0.5, 3.0))
        server.kill9()
        print(f"kill {k + 1}/{args.kills} at {time.time() - t0:.1f} s: {len(results.complete)} responses given in full so far",
              flush=True)
        server.start()
    time.sleep(rng.uniform(0.5, 2.0))
    stop.set()
    for t in clients:
        t.join(timeout=180)
    server.stop()

    failures = []
    integrity, rows, key_hashes, used = ledger_rows(ledger)
    if integrity != "ok":
        failures.append(f"PRAGMA integrity_check: {integrity}")
    answered = [c for c in results.complete if c[1] == 200]
    for rid, status, usage in results.complete:
        row = rows.get(rid)
        if row is None:
            failures.append(f"request {rid} (status {status}) was given in full but has no ledger row")
            continue
        if row[0] != status:
            failures.append(f"request {rid}: status {status} sent, {row[0]} recorded")
        if usage and (row[1], row[2]) != (usage["prompt_tokens"], usage["completion_tokens"]):
            failures.append(f"request {rid}: usage {usage} sent, {row[1:]} recorded")
    print(f"{len(results.complete)} responses given in full ({len(answered)} answered 200), {results.cut} hung up on "
          f"purpose, {results.failed} cut by kills or refused while down; {len(rows)} ledger rows")

    # The quota after a restart is the ledger's sum: exactly what is left can be reserved, one more cannot.
    server = Server(args, args.port, ["--daily-token-quota", str(used + 40)])
    server.start()
    try:
        status, payload = post(args.port, {"model": MODEL, "prompt": [5] * 10, "max_tokens": 10, "ignore_eos": True})
        if status != 200:
            failures.append(f"a request within the quota was refused: {status} {payload}")
        else:
            # The server caps max_tokens by what is left and refuses only a prompt with no room for one token.
            left = 40 - payload["usage"]["total_tokens"]
            status, payload = post(args.port, {"model": MODEL, "prompt": [5] * left, "max_tokens": 4})
            if status != 429:
                failures.append(f"a prompt of all {left} tokens the quota leaves (no room to answer) got {status}, not 429")
            status, payload = post(args.port, {"model": MODEL, "prompt": [5] * (left - 1), "max_tokens": 4, "ignore_eos": True})
            if status != 200 or payload["usage"]["completion_tokens"] != 1:
                failures.append(f"a prompt leaving room for exactly one token got {status}: {payload}")
    finally:
        server.stop()
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures[:30]))
        sys.exit(1)
    print(f"ok: {args.kills} kills, every response given in full is in the ledger, integrity ok, quota = ledger sum")


if __name__ == "__main__":
    main()
