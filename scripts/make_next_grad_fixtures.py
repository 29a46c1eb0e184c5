#!/usr/bin/env python3
"""Training fixtures (loss + every parameter's gradient) for the hybrid linear-attention models Qwen3-Next and
Qwen3.5-MoE, in the format of make_grad_fixtures.py (Tests/Fixtures/training/<case>/: config.json,
model.safetensors, grads.safetensors, expected.json), so GradientTests reads them the same way.

The reference is torch autograd through transformers' own classes: their Gated DeltaNet runs
`torch_chunk_gated_delta_rule` (chunks of 64) over sequences of 80 tokens, so gradients cross a chunk boundary.
The loss is the mean next-token cross-entropy (router_aux_loss_coef 0: `aux_loss` is the Switch loss swift-moe
reports, weighted 0). Float32, eager attention and experts, one thread. Each case keeps the first seed whose top-k
routing is decided by a margin >= 1e-3 at every token of the batch.

    ~/.cache/moe-peers/bin/python scripts/make_next_grad_fixtures.py [case ...]
"""
from __future__ import annotations

import json, math, shutil, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import Qwen3NextConfig, Qwen3NextForCausalLM  # noqa: E402
from transformers.models.qwen3_5_moe import Qwen3_5MoeForCausalLM, Qwen3_5MoeTextConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_grad_fixtures import aux_loss_ref, ce_loss, to_saved_layout, dir_bytes  # noqa: E402

transformers.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "training"
MARGIN = 1e-3
BATCH, SEQ, VOCAB = 2, 80, 64

COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              max_position_embeddings=256, rms_norm_eps=1e-6, initializer_range=0.2, bos_token_id=1, eos_token_id=2,
              pad_token_id=None, attn_implementation="eager", experts_implementation="eager", moe_intermediate_size=16,
              shared_expert_intermediate_size=12, linear_conv_kernel_dim=4, linear_key_head_dim=8,
              linear_value_head_dim=6, linear_num_key_heads=2, linear_num_value_heads=4, num_experts=4,
              num_experts_per_tok=2)

CASES = [
    dict(name="qwen3_next", cfg_cls=Qwen3NextConfig, model_cls=Qwen3NextForCausalLM,
         what="Qwen3-Next: Gated DeltaNet layers 0-1 (fused in_proj_qkvz / in_proj_ba, 2 key heads of 8, 4 value heads of 6), "
              "gated attention in layer 2 (GQA 4/2, head_dim 8, partial rotary 0.5), zero-centred norms, 4 experts top-2 "
              "+ gated shared expert in layers 0 and 2, layer 1 dense; 2 sequences of 80 tokens (a chunk boundary at 64)",
         config=dict(COMMON, num_hidden_layers=3, intermediate_size=24, mlp_only_layers=[1], norm_topk_prob=True,
                     layer_types=["linear_attention", "linear_attention", "full_attention"], tie_word_embeddings=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5})),
    dict(name="qwen3_5_moe", cfg_cls=Qwen3_5MoeTextConfig, model_cls=Qwen3_5MoeForCausalLM,
         what="Qwen3.5-MoE: a Gated DeltaNet layer (separate in_proj_qkv / z / b / a) then a gated attention layer, "
              "zero-centred norms, 4 experts top-2 + gated shared expert in both, tied embeddings; 2 sequences of 80 tokens",
         config=dict(COMMON, num_hidden_layers=2, layer_types=["linear_attention", "full_attention"],
                     tie_word_embeddings=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.25,
                                      "mrope_section": [1, 1, 0], "mrope_interleaved": False})),
]


def batch():
    gen = torch.Generator().manual_seed(4242)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    labels = ids.clone()
    labels[1, -2:] = -100
    return ids, labels


def randomise(model, gen, std):
    """Norms drawn around their identity: w ~ 0.1·N(0,1) for the zero-centred ones (scale 1 + w), 1 + 0.1·N for the
    DeltaNet's gated norm; A_log and dt_bias around HF's ranges; routers small enough for a decided top-k."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("linear_attn.norm.weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith("norm.weight"):
                v = 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith("A_log"):
                v = torch.log(torch.rand(p.shape, generator=gen) * 4 + 0.5)
            elif name.endswith("dt_bias"):
                v = 0.5 * torch.randn(p.shape, generator=gen)
            elif name.endswith("conv1d.weight"):
                v = 0.3 * torch.randn(p.shape, generator=gen)
            else:
                v = std * torch.randn(p.shape, generator=gen)
            p.copy_(v)


def router_logits(model, ids):
    logits = []
    hooks = [(l.mlp.router if hasattr(l.mlp, "router") else l.mlp.gate).register_forward_hook(lambda m, i, o: logits.append(o[0].detach()))
             for l in model.model.layers if hasattr(l.mlp, "experts")]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    return logits


def margin(model, ids) -> float:
    k, m = model.config.num_experts_per_tok, math.inf
    for lg in router_logits(model, ids):
        s = torch.softmax(lg.reshape(-1, lg.shape[-1]).float(), -1).sort(dim=-1, descending=True).values
        m = min(m, float((s[:, k - 1] - s[:, k]).min()))
    return m


def build(case):
    ids, labels = batch()
    for seed in range(30_000, 30_400):
        torch.manual_seed(seed)
        model = case["model_cls"](case["cfg_cls"](**json.loads(json.dumps(case["config"])))).eval()
        randomise(model, torch.Generator().manual_seed(seed), case["config"]["initializer_range"])
        if margin(model, ids) >= MARGIN:
            break
    else:
        raise RuntimeError(f"{case['name']}: no seed with routing margin >= {MARGIN}")
    rmargin = margin(model, ids)
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, use_cache=False)
    loss = ce_loss(out.logits, labels).float()
    loss.backward()
    named = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in named.values()), [n for n, g in named.items() if g is None]

    d = OUT / case["name"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model.save_pretrained(d, safe_serialization=True)
    (d / "generation_config.json").unlink(missing_ok=True)
    saved = load_file(d / "model.safetensors")
    grads = to_saved_layout(named, mixtral=False)
    assert set(grads) == set(saved), sorted(set(grads) ^ set(saved))
    weights = to_saved_layout(dict(model.named_parameters()), mixtral=False)
    for k, v in weights.items():
        assert torch.equal(saved[k], v), k
    save_file({k: v.contiguous() for k, v in grads.items()}, d / "grads.safetensors", metadata={"format": "pt"})
    ref = case["model_cls"].from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                            experts_implementation="eager").eval()
    with torch.no_grad():
        reloaded = float(ce_loss(ref(input_ids=ids, use_cache=False).logits, labels).float())
    assert abs(reloaded - float(loss.detach())) < 1e-6, (reloaded, float(loss.detach()))
    lg = [v.reshape(-1, v.shape[-1]) for v in router_logits(model, ids)]
    aux = float(aux_loss_ref(lg, lg[0].shape[-1], model.config.num_experts_per_tok))
    expected = dict(case=case["name"], what=case["what"], model_type=model.config.model_type, input_ids=ids.tolist(),
                    labels=labels.tolist(), loss=float(loss), ce_loss=float(loss), aux_loss=aux,
                    router_aux_loss_coef=0.0, router_margin=rmargin, seed=seed, torch=torch.__version__,
                    transformers=transformers.__version__)
    (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{case['name']}: seed {seed}, loss {float(loss):.6f}, routing margin {rmargin:.4g}, {dir_bytes(d)} bytes")


def main(argv):
    wanted = set(argv[1:])
    for case in CASES:
        if not wanted or case["name"] in wanted:
            build(case)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
