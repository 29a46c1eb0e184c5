#!/usr/bin/env python3
"""Kill -9 soak of `moe pretrain`: a run killed with SIGKILL at random moments (some while a checkpoint is being
written) and resumed each time with `--resume` must end with the same weights and the same losses as the same run
left alone, and no checkpoint may ever be half written.

    python3 scripts/soak_train.py [--kills 5] [--steps 300] [--work DIR]

The corpus is generated here (no downloads); the tokenizer is trained with `moe tokenizer train`. After every kill,
each `checkpoint-N/` in the output directory must be complete: trainer_state.json parses and model.safetensors /
optimizer.safetensors have the size their headers promise. At the end: model.safetensors equal byte for byte, and
every step's training loss in metrics.jsonl equal. Exits non-zero on any failure. Needs only python3 and a built
`moe` (default .build/release/moe).
"""
import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time


def corpus(path, documents=600, seed=3):
    rng = random.Random(seed)
    words = ("the quick brown fox jumps over a lazy dog while seven small experts route every token to "
             "one of many little networks and learn to share the work").split()
    with open(path, "w") as f:
        for _ in range(documents):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(20, 80))) + "\n")


def safetensors_complete(path):
    """Whether the file holds its whole header and every byte its tensors' offsets promise."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        n = struct.unpack("<Q", head)[0]
        if 8 + n > size:
            return False
        header = json.loads(f.read(n))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return 8 + n + end == size


def check_checkpoints(out):
    problems = []
    for name in sorted(os.listdir(out)):
        if not name.startswith("checkpoint-"):
            continue
        d = os.path.join(out, name)
        try:
            json.load(open(os.path.join(d, "trainer_state.json")))
            for f in ("model.safetensors", "optimizer.safetensors"):
                if not safetensors_complete(os.path.join(d, f)):
                    problems.append(f"{d}/{f} is incomplete")
        except (OSError, ValueError) as e:
            problems.append(f"{d}: {e}")
    return problems


def losses(out):
    by_step = {}
    for line in open(os.path.join(out, "metrics.jsonl")):
        row = json.loads(line)
        if "loss" in row and "step" in row:
            by_step[row["step"]] = row["loss"]
    return by_step


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", default=".build/release/moe")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--work", default="/tmp/moe-soak-train")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    data = os.path.join(args.work, "corpus.txt")
    corpus(data)
    tok = os.path.join(args.work, "tokenizer")
    subprocess.run([args.moe, "tokenizer", "train", "--input", data, "--vocab-size", "300", "--out", tok],
                   check=True, stdout=subprocess.DEVNULL)

    def command(out, resume):
        cmd = [args.moe, "pretrain", "--config", "tiny", "--data", data, "--tokenizer", tok, "--out", out,
               "--steps", str(args.steps), "--batch", "4", "--seq-len", "32", "--checkpoint-every", "4",
               "--eval-every", "0", "--eval-batches", "1", "--threads", "2", "--quiet", "--seed", "7"]
        return cmd + (["--resume"] if resume else [])

    reference = os.path.join(args.work, "reference")
    t0 = time.time()
    subprocess.run(command(reference, False), check=True, stdout=subprocess.DEVNULL)
    duration = time.time() - t0
    print(f"uninterrupted run: {args.steps} steps in {duration:.1f} s", flush=True)

    rng = random.Random(args.seed)
    out = os.path.join(args.work, "killed")
    failures, kills, resumed = [], 0, False
    while True:
        proc = subprocess.Popen(command(out, resumed), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < args.kills:
            # Half the kills wait for a checkpoint being written (its temporary directory appears), the others
            # come at a random moment.
            during_write = kills % 2 == 1
            deadline = time.time() + rng.uniform(0.05, 0.25) * duration
            while proc.poll() is None and time.time() < deadline + (duration if during_write else 0):
                if during_write and time.time() >= deadline and os.path.isdir(out) and \
                        any(n.endswith(".tmp") for n in os.listdir(out)):
                    break
                if not during_write and time.time() >= deadline:
                    break
                time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                writing = os.path.isdir(out) and any(n.endswith(".tmp") for n in os.listdir(out))
                print(f"kill {kills}/{args.kills}{' during a checkpoint write' if writing else ''}", flush=True)
                failures += check_checkpoints(out)
                resumed = os.path.isdir(out) and any(n.startswith("checkpoint-") for n in os.listdir(out))
                if not resumed:
                    shutil.rmtree(out, ignore_errors=True)   # killed before the first checkpoint: start again
                continue
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(err.decode(errors="replace"))
            raise SystemExit(f"the resumed run failed with {proc.returncode}")
        break

    a = open(os.path.join(reference, "model.safetensors"), "rb").read()
    b = open(os.path.join(out, "model.safetensors"), "rb").read()
    if a != b:
        failures.append("the final model.safetensors differs from the uninterrupted run's")
    la, lb = losses(reference), losses(out)
    if la != lb:
        diff = [s for s in sorted(set(la) | set(lb)) if la.get(s) != lb.get(s)]
        failures.append(f"losses differ at steps {diff[:10]}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print(f"ok: {kills} kills, {len(la)} logged losses and the final weights equal the uninterrupted run's; "
          f"no checkpoint was ever incomplete")


if __name__ == "__main__":
    main()
