#!/usr/bin/env python3
"""Generate the LoRA fixtures for swift-moe from PEFT (the reference), or check a Swift-saved adapter with PEFT.

Run with the peers venv (torch, transformers, peft -- `~/.cache/moe-peers/bin/pip install peft` if missing):

    ~/.cache/moe-peers/bin/python scripts/make_lora_fixtures.py
    ~/.cache/moe-peers/bin/python scripts/make_lora_fixtures.py --check BASE ADAPTER LOGITS.json TOKENS

The first form writes Tests/Fixtures/lora/:
  * `base/`: a tiny Qwen3-MoE (vocab 64, hidden 32, 2 layers, 4 heads / 2 KV, head_dim 8, 4 experts top-2, width 16,
    norm_topk_prob, untied; weights 0.2*randn, norms 1+0.1*randn) as `save_pretrained` writes it;
  * `adapter/`: a PEFT LoRA on it (r 4, lora_alpha 8, targets q/k/v/o_proj, dropout 0, bias none) as
    `PeftModel.save_pretrained` writes it (adapter_config.json, adapter_model.safetensors), with lora_A ~ U(+-1/sqrt(in))
    and lora_B ~ 0.3*randn (non-zero, so that the adapter changes the model);
  * `grads.safetensors`: d(loss)/d(lora_A, lora_B) of PEFT's model by autograd, under the adapter file's names;
  * `expected.json`: the PEFT model's logits on `tokens`, the batch (input_ids, labels: HF's shifted causal-LM
    convention, -100 ignored) and its loss: plain next-token cross-entropy (output_router_logits off, so no aux loss).
Seeds are looped until every router top-k choice (logits sequence and batch) has a probability margin >= 1e-3.

The second form loads BASE with the adapter in ADAPTER through `PeftModel.from_pretrained` (a Swift-saved adapter),
runs it on TOKENS (comma-separated ids) and compares its logits with LOGITS.json ({"logits": [[...]]}, e.g. from
`moe logits --model MERGED --tokens TOKENS`); prints the max difference and exits non-zero above 1e-4.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_grad_fixtures as mg  # noqa: E402  (sets 1 thread + deterministic algorithms)

import torch  # noqa: E402

warnings.filterwarnings("ignore")

import peft  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM  # noqa: E402

transformers.logging.set_verbosity_error()

ROOT = mg.ROOT
OUT = ROOT / "Tests" / "Fixtures" / "lora"
CONFIG = dict(mg.QWEN3_MOE, num_experts=4, norm_topk_prob=True, output_router_logits=False)
K = CONFIG["num_experts_per_tok"]
RANK, ALPHA = 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
BASE_SEED = 31000
TOKENS = [1, 17, 5, 42, 9, 33, 60, 2, 8, 25]


def margin(model, ids) -> float:
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True, use_cache=False)
    return mg.router_margin(out.router_logits, K)


def build(seed: int):
    gen = torch.Generator().manual_seed(seed)
    model = Qwen3MoeForCausalLM(Qwen3MoeConfig(**CONFIG)).float().eval()
    mg.randomise(model, gen, 0.2)
    lora = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, lora)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if ".lora_A." in name:
                bound = 1 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            elif ".lora_B." in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model, pm


def saved_name(name: str) -> str:
    """PEFT's in-memory name (`….lora_A.default.weight`) as save_pretrained writes it."""
    return name.replace(".default.", ".")


def make() -> int:
    ids, labels = mg.batch()
    logits_ids = torch.tensor([TOKENS])
    for seed in range(BASE_SEED, BASE_SEED + mg.MAX_SEED_TRIES):
        base, pm = build(seed)
        m = min(margin(pm, ids), margin(pm, logits_ids))
        if m >= mg.MARGIN:
            break
    else:
        raise SystemExit("no seed with a router margin >= 1e-3")
    print(f"seed {seed}: router margin {m:.2e}")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    base_dir = OUT / "base"
    # Save the plain base model: a fresh model with the base weights (PEFT wraps q/k/v/o in its layers).
    plain = Qwen3MoeForCausalLM(Qwen3MoeConfig(**CONFIG)).float().eval()
    state = {k.replace(".base_layer.", "."): v for k, v in pm.get_base_model().state_dict().items() if "lora_" not in k}
    missing = plain.load_state_dict(state, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    plain.save_pretrained(base_dir)
    pm.peft_config["default"].base_model_name_or_path = "base"
    pm.save_pretrained(OUT / "adapter")
    (OUT / "adapter" / "README.md").unlink(missing_ok=True)  # PEFT's model card template

    pm.eval()
    with torch.no_grad():
        logits = pm(input_ids=logits_ids, use_cache=False).logits[0]
    pm.zero_grad()
    out = pm(input_ids=ids, labels=labels, use_cache=False)
    out.loss.backward()
    grads = {saved_name(n): p.grad.detach().float().contiguous().clone() for n, p in pm.named_parameters() if "lora_" in n}
    assert all(n.startswith("base_model.model.") for n in grads)
    save_file(grads, OUT / "grads.safetensors", metadata={"format": "pt"})
    ce = mg.ce_loss(out.logits, labels)
    assert abs(float(ce) - float(out.loss)) < 1e-5, (float(ce), float(out.loss))

    # Reloading through PEFT gives the same logits, and merge_and_unload agrees.
    reloaded = PeftModel.from_pretrained(mg.load(base_dir, Qwen3MoeForCausalLM), OUT / "adapter").eval()
    with torch.no_grad():
        again = reloaded(input_ids=logits_ids, use_cache=False).logits[0]
        merged = reloaded.merge_and_unload()(input_ids=logits_ids, use_cache=False).logits[0]
    assert float((again - logits).abs().max()) < 1e-6
    assert float((merged - logits).abs().max()) < 1e-4

    expected = {
        "what": "PEFT LoRA (r 4, alpha 8, q/k/v/o_proj) on a tiny Qwen3-MoE: logits on `tokens`; CE loss of the batch "
        "(HF labels, shifted inside the model); lora grads in grads.safetensors",
        "seed": seed,
        "router_margin": m,
        "rank": RANK,
        "lora_alpha": ALPHA,
        "target_modules": TARGETS,
        "tokens": TOKENS,
        "logits": [[round(float(x), 7) for x in row] for row in logits],
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "loss": float(out.loss),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {OUT} ({mg.dir_bytes(OUT)} bytes), loss {float(out.loss):.6f}")
    return 0


def check(base: str, adapter: str, logits_path: str, tokens: str) -> int:
    ids = torch.tensor([[int(t) for t in tokens.split(",")]])
    model = PeftModel.from_pretrained(mg.load(Path(base), Qwen3MoeForCausalLM), adapter).eval()
    with torch.no_grad():
        got = model(input_ids=ids, use_cache=False).logits[0]
    want = torch.tensor(json.loads(Path(logits_path).read_text())["logits"])
    diff = float((got - want).abs().max())
    print(f"PEFT (base + Swift-saved adapter) vs the merged model's logits: max |diff| {diff:.3e} over {tuple(want.shape)}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--check":
        sys.exit(check(*sys.argv[2:]))
    sys.exit(make())
