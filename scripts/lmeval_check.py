#!/usr/bin/env python3
"""lm-evaluation-harness against `moe serve`: a multiple-choice task scored through the server (lm-eval's
`local-completions` model: echo + logprobs on /v1/completions) must give the accuracy, and per choice the
log-likelihood, that `moe eval --choices` computes directly from the model.

    python scripts/lmeval_check.py --moe .build/release/moe --model DIR [--items 60]

The task is local: a JSONL of sums (`{"question", "choices", "answer"}`) and a task YAML over it (no hub). Needs
`lm-eval` from PyPI (it brings torch and transformers; e.g. in the peers venv of ../shared/tools/peers-setup.sh) and
a model directory with a tokenizer.json. Prints both accuracies and the largest log-likelihood difference; exits 1
when they disagree.
"""
import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moe", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--items", type=int, default=60)
    args = ap.parse_args()
    import lm_eval
    from lm_eval.tasks import TaskManager

    work = tempfile.mkdtemp(prefix="moe-lmeval-")
    rng = random.Random(7)
    items = []
    for _ in range(args.items):
        a, b = rng.randint(0, 49), rng.randint(0, 49)
        right = a + b
        wrong = rng.sample([x for x in range(max(0, right - 9), right + 10) if x != right], 3)
        choices = [str(x) for x in wrong] + [str(right)]
        rng.shuffle(choices)
        items.append({"question": f"{a} + {b} =", "choices": choices, "answer": choices.index(str(right))})
    data = os.path.join(work, "sums.jsonl")
    with open(data, "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    with open(os.path.join(work, "moe_sums.yaml"), "w") as f:
        f.write(f"""task: moe_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
""")

    direct = subprocess.run([args.moe, "eval", "--model", args.model, "--choices", data, "--threads", "2"],
                            capture_output=True, text=True, check=True)
    mine = json.loads(direct.stdout.strip().splitlines()[-1])

    port = free_port()
    name = os.path.basename(os.path.normpath(args.model))
    server = subprocess.Popen([args.moe, "serve", "--model", args.model, "--port", str(port), "--ledger", os.path.join(work, "ledger.sqlite"),
                               "--threads", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        out = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=f"model={name},base_url=http://127.0.0.1:{port}/v1/completions,tokenizer={args.model},"
                       "tokenizer_backend=huggingface,num_concurrent=1,max_retries=1",
            tasks=["moe_sums"], task_manager=TaskManager(include_path=work), log_samples=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = out["results"]["moe_sums"]
    served = [[float(r[0][0]) for r in s["resps"]] for s in sorted(out["samples"]["moe_sums"], key=lambda s: s["doc_id"])]
    diff = max(abs(x - y) for a, b in zip(served, mine["loglikelihoods"]) for x, y in zip(a, b))
    print(f"lm-eval via moe serve: acc {result['acc,none']:.4f}, acc_norm {result['acc_norm,none']:.4f}")
    print(f"moe eval --choices:    acc {mine['accuracy']:.4f}, acc_norm {mine['accuracy_norm']:.4f}")
    print(f"largest log-likelihood difference over {len(items)} items x 4 choices: {diff:.2e}")
    same = abs(result["acc,none"] - mine["accuracy"]) < 1e-9 and abs(result["acc_norm,none"] - mine["accuracy_norm"]) < 1e-9 and diff < 1e-3
    print("same" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
