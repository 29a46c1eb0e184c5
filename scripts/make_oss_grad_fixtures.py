#!/usr/bin/env python3
"""Training fixture (loss + every parameter's gradient) for gpt-oss, in the format of make_grad_fixtures.py
(Tests/Fixtures/training/gpt_oss/: config.json, model.safetensors, grads.safetensors, expected.json), so GradientTests
reads it the same way.

The reference is torch autograd through transformers' GptOssForCausalLM: attention sinks, a sliding window of 8
on layer 0 (sequences of 40 tokens, so keys leave it), full attention on layer 1, biases on q/k/v/o, the router and the
experts, the clamped SwiGLU (limit 0.75 here, so the clamp's gradient mask matters), yarn RoPE. The checkpoint is as
`save_pretrained` writes it (experts fused: gate_up_proj [E, hidden, 2·width] with gate and up interleaved); the
gradients are written under the names swift-moe trains (one tensor per expert and projection, nn.Linear layout:
`experts.E.gate_proj.weight` = gate_up_proj[E][:, 0::2]ᵀ, `.bias`, …). Float32, eager attention and experts, one
thread; the first seed whose top-k routing is decided by a margin >= 1e-3 at every token.

    ~/.cache/moe-peers/bin/python scripts/make_oss_grad_fixtures.py
"""
from __future__ import annotations

import json, shutil, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import GptOssConfig, GptOssForCausalLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_grad_fixtures import aux_loss_ref, ce_loss, dir_bytes  # noqa: E402
from make_next_grad_fixtures import MARGIN, margin, router_logits  # noqa: E402

transformers.logging.set_verbosity_error()
OUT = Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "training" / "gpt_oss"
BATCH, SEQ, VOCAB = 2, 40, 64
CONFIG = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
              layer_types=["sliding_attention", "full_attention"], swiglu_limit=0.75, max_position_embeddings=256,
              rms_norm_eps=1e-6, initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=None,
              tie_word_embeddings=False, attn_implementation="eager", experts_implementation="eager",
              rope_parameters={"rope_type": "yarn", "rope_theta": 150_000.0, "factor": 4.0, "beta_fast": 32.0,
                               "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 64})


def batch():
    gen = torch.Generator().manual_seed(4242)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    labels = ids.clone()
    labels[1, -2:] = -100
    return ids, labels


def randomise(model, gen, std):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith("sinks"):
                v = torch.randn(p.shape, generator=gen)
            elif name.endswith("bias"):
                v = 0.5 * torch.randn(p.shape, generator=gen)
            else:
                v = std * torch.randn(p.shape, generator=gen)
            p.copy_(v)


def trained_names(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF's fused experts → one tensor per expert and projection, as swift-moe's parameters are named."""
    out = {}
    for name, t in named.items():
        t = t.detach().float()
        if name.endswith("experts.gate_up_proj"):
            p = name[: -len("gate_up_proj")]
            for e in range(t.shape[0]):
                out[f"{p}{e}.gate_proj.weight"] = t[e][:, 0::2].T.contiguous()
                out[f"{p}{e}.up_proj.weight"] = t[e][:, 1::2].T.contiguous()
        elif name.endswith("experts.gate_up_proj_bias"):
            p = name[: -len("gate_up_proj_bias")]
            for e in range(t.shape[0]):
                out[f"{p}{e}.gate_proj.bias"] = t[e][0::2].contiguous()
                out[f"{p}{e}.up_proj.bias"] = t[e][1::2].contiguous()
        elif name.endswith("experts.down_proj"):
            p = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{p}{e}.down_proj.weight"] = t[e].T.contiguous()
        elif name.endswith("experts.down_proj_bias"):
            p = name[: -len("down_proj_bias")]
            for e in range(t.shape[0]):
                out[f"{p}{e}.down_proj.bias"] = t[e].contiguous()
        else:
            out[name] = t.contiguous()
    return out


def main():
    ids, labels = batch()
    for seed in range(31_000, 31_400):
        torch.manual_seed(seed)
        model = GptOssForCausalLM(GptOssConfig(**json.loads(json.dumps(CONFIG)))).eval()
        randomise(model, torch.Generator().manual_seed(seed), CONFIG["initializer_range"])
        if margin(model, ids) >= MARGIN:
            break
    else:
        raise RuntimeError(f"no seed with routing margin >= {MARGIN}")
    rmargin = margin(model, ids)
    model.zero_grad(set_to_none=True)
    loss = ce_loss(model(input_ids=ids, use_cache=False).logits, labels).float()
    loss.backward()
    named = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in named.values()), [n for n, g in named.items() if g is None]

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    model.save_pretrained(OUT, safe_serialization=True)
    (OUT / "generation_config.json").unlink(missing_ok=True)
    saved = load_file(OUT / "model.safetensors")
    for n, p in model.named_parameters():
        assert torch.equal(saved[n], p.detach()), n
    save_file(trained_names(named), OUT / "grads.safetensors", metadata={"format": "pt"})
    ref = GptOssForCausalLM.from_pretrained(OUT, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        reloaded = float(ce_loss(ref(input_ids=ids, use_cache=False).logits, labels).float())
    assert abs(reloaded - float(loss.detach())) < 1e-6, (reloaded, float(loss.detach()))
    lg = [v.reshape(-1, v.shape[-1]) for v in router_logits(model, ids)]
    aux = float(aux_loss_ref(lg, lg[0].shape[-1], model.config.num_experts_per_tok))
    expected = dict(case="gpt_oss", what=__doc__.split("\n\n")[1].replace("\n", " "), model_type="gpt_oss",
                    input_ids=ids.tolist(), labels=labels.tolist(), loss=float(loss), ce_loss=float(loss), aux_loss=aux,
                    router_aux_loss_coef=0.0, router_margin=rmargin, seed=seed, torch=torch.__version__,
                    transformers=transformers.__version__)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"gpt_oss: seed {seed}, loss {float(loss):.6f}, routing margin {rmargin:.4g}, {dir_bytes(OUT)} bytes")


if __name__ == "__main__":
    main()
