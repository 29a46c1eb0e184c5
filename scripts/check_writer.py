"""Checks that a safetensors checkpoint written by swift-moe loads in `transformers` and gives the same logits.
Usage: python scripts/check_writer.py MODEL_DIR [--moe PATH_TO_MOE_BINARY]
Example: moe bench make-model --out /tmp/bm1 --layers 1 && python scripts/check_writer.py /tmp/bm1"""
import argparse, json, subprocess
import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("--moe", default=".build/release/moe")
a = ap.parse_args()
tokens = [1, 500, 151000, 42, 7]
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
with torch.no_grad():
    ref = model(torch.tensor([tokens])).logits[0]
out = subprocess.run([a.moe, "logits", "--model", a.model, "--tokens", ",".join(map(str, tokens))],
                     capture_output=True, text=True, check=True).stdout
ours = torch.tensor(json.loads(out)["logits"])
diff = (ours - ref).abs().max().item()
print(f"transformers loaded {a.model}; max |Δlogit| vs swift-moe = {diff:.3g}")
assert diff < 1e-3, diff
