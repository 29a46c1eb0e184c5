#!/usr/bin/env python3
"""Training fixtures (loss + every parameter's gradient) for DeepSeek-V2/V3 and GLM-4.5, in the format of
make_grad_fixtures.py (Tests/Fixtures/training/<case>/: config.json, model.safetensors, grads.safetensors,
expected.json), so GradientTests reads them the same way.

These models balance their experts without an auxiliary loss (the selection bias), and transformers computes none
for them: the loss is the mean next-token cross-entropy (`aux_loss` 0). Float32, eager attention and experts, one
thread. (`aux_loss`: the Switch loss swift-moe reports for softmax routers, weighted 0 here.) Each case keeps the first seed whose routing (group choice and top-k on the scores used for choosing) is
decided by a margin >= 1e-3 at every token of the batch, so a float difference cannot flip an expert.

The `_mtp` cases add DeepSeek-V3's multi-token-prediction module of depth 1, which transformers does not implement:
`MTP` below writes it from the paper's equations (section 2.2, eqs. 21-25) over transformers' own decoder layer, and
its loss and gradients are checked against central finite differences in float64 before they are written.

    ~/.cache/moe-peers/bin/python scripts/make_mla_grad_fixtures.py [case ...]
"""
from __future__ import annotations

import contextlib, copy, json, math, shutil, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (DeepseekV2Config, DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM,  # noqa: E402
                          Glm4MoeConfig, Glm4MoeForCausalLM)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_grad_fixtures import aux_loss_ref, batch, ce_loss, to_saved_layout, dir_bytes  # noqa: E402
from make_fixtures import routing_choice  # noqa: E402

transformers.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "training"
MARGIN = 1e-3

COMMON = dict(vocab_size=64, hidden_size=32, num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6,
              initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False,
              attn_implementation="eager", experts_implementation="eager", moe_intermediate_size=16,
              intermediate_size=40)
MLA = dict(num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12)

CASES = [
    dict(name="deepseek_v3", cfg_cls=DeepseekV3Config, model_cls=DeepseekV3ForCausalLM, bias=0.3,
         what="DeepSeek-V3: MLA with q_lora_rank 16, rope_interleave, sigmoid routing with selection bias, 4 groups "
              "(2 kept) ranked by their two best, top-3 of 8, norm_topk_prob, scaling 2.5, 1 shared expert, layer 0 dense",
         config=dict(COMMON, **MLA, num_hidden_layers=2, q_lora_rank=16, n_routed_experts=8, num_experts_per_tok=3,
                     n_shared_experts=1, first_k_dense_replace=1, n_group=4, topk_group=2, norm_topk_prob=True,
                     routed_scaling_factor=2.5, rope_interleave=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})),
    dict(name="deepseek_v3_seq_aux", cfg_cls=DeepseekV3Config, model_cls=DeepseekV3ForCausalLM, bias=0.3, seq_aux=0.3,
         what="as deepseek_v3, the loss adding DeepSeek-V3's sequence-wise balance loss (weight 0.3) as the paper "
              "defines it (eqs. 17-20): per sequence and MoE layer sum_i f_i P_i, averaged over both",
         config=None),
    dict(name="deepseek_v2", cfg_cls=DeepseekV2Config, model_cls=DeepseekV2ForCausalLM, bias=None,
         what="DeepSeek-V2-Lite shape: MLA without q_lora_rank, softmax greedy top-2 of 8, scaling 1.5, 2 shared experts",
         config=dict(COMMON, **MLA, num_hidden_layers=2, q_lora_rank=None, n_routed_experts=8, num_experts_per_tok=2,
                     n_shared_experts=2, first_k_dense_replace=0, topk_method="greedy", routed_scaling_factor=1.5,
                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0})),
    dict(name="glm4_moe", cfg_cls=Glm4MoeConfig, model_cls=Glm4MoeForCausalLM, bias=0.3,
         what="GLM-4.5: GQA 4/2 head_dim 8 with q/k/v bias, q/k norms, partial rotary 0.5, sigmoid routing with "
              "selection bias, 2 groups (1 kept), top-2 of 8, norm_topk_prob, scaling 1.8, 1 shared expert, layer 0 dense",
         config=dict(COMMON, num_hidden_layers=2, num_key_value_heads=2, head_dim=8, attention_bias=True,
                     use_qk_norm=True, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
                     first_k_dense_replace=1, n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.8,
                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5})),
]


def sequence_balance_loss(model, ids) -> torch.Tensor:
    """DeepSeek-V3 paper, section 2.1.2: for each MoE layer and each sequence of T tokens,
    f_i = N_r / (K_r T) * #tokens whose top-k includes expert i (no gradient),
    P_i = 1/T * sum_t s_{i,t} / sum_j s_{j,t} (s: the router's sigmoid scores), loss = sum_i f_i P_i;
    the mean over layers and sequences. Differentiable through P."""
    captured = []
    hooks = [l.mlp.gate.register_forward_hook(lambda m, i, o: captured.append((o[0], o[2])))
             for l in model.model.layers if hasattr(l.mlp, "experts")]
    model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    B, T = ids.shape
    E, k = model.config.n_routed_experts, model.config.num_experts_per_tok
    losses = []
    for logits, idx in captured:
        s = torch.sigmoid(logits.float()).reshape(B, T, E)
        count = torch.nn.functional.one_hot(idx.reshape(B, T, k), E).sum(dim=(1, 2)).float()
        f = E / (k * T) * count
        P = (s / s.sum(-1, keepdim=True)).mean(1)
        losses.append((f * P).sum(-1))
    return torch.stack(losses).mean()


def randomise(model, gen, std, bias):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith(".bias"):
                v = 0.3 * torch.randn(p.shape, generator=gen)
            else:
                v = std * torch.randn(p.shape, generator=gen)
            p.copy_(v)
        for layer in model.model.layers:
            gate = getattr(layer.mlp, "gate", None)
            if bias and gate is not None and hasattr(gate, "e_score_correction_bias"):
                b = gate.e_score_correction_bias
                b.copy_(torch.randn(b.shape, generator=gen) * bias)


def router_logits(model, ids) -> dict:
    logits = {}
    hooks = [l.mlp.gate.register_forward_hook(lambda m, i, o, n=n: logits.__setitem__(n, o[0].detach()))
             for n, l in enumerate(model.model.layers) if hasattr(l.mlp, "experts")]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    return logits


def switch_aux(model, ids) -> float:
    """The Switch load-balancing loss swift-moe reports (weighted by --aux-loss-coef, 0 here) for softmax routers:
    HF's formula over every MoE layer's router logits. Sigmoid routers take no part (0)."""
    if model.config.model_type != "deepseek_v2":
        return 0.0
    lg = [v.reshape(-1, v.shape[-1]) for v in router_logits(model, ids).values()]
    return float(aux_loss_ref(lg, lg[0].shape[-1], model.config.num_experts_per_tok))


def margin(model, ids) -> float:
    logits = router_logits(model, ids)
    k, m = model.config.num_experts_per_tok, math.inf
    for n, lg in logits.items():
        gate = model.model.layers[n].mlp.gate
        scores, gmargin = routing_choice(lg.reshape(-1, lg.shape[-1]), gate, model.config)
        s = scores.sort(dim=-1, descending=True).values
        m = min(m, float((s[:, k - 1] - s[:, k]).min()), gmargin)
    return m


def build(case):
    ids, labels = batch()
    for seed in range(20_000, 20_400):
        torch.manual_seed(seed)
        model = case["model_cls"](case["cfg_cls"](**json.loads(json.dumps(case["config"])))).eval()
        randomise(model, torch.Generator().manual_seed(seed), case["config"]["initializer_range"], case["bias"])
        if margin(model, ids) >= MARGIN:
            break
    else:
        raise RuntimeError(f"{case['name']}: no seed with routing margin >= {MARGIN}")
    rmargin = margin(model, ids)
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, use_cache=False)
    ce = ce_loss(out.logits, labels).float()
    seq_coef = case.get("seq_aux", 0.0)
    seq_aux = sequence_balance_loss(model, ids) if seq_coef else torch.zeros(())
    loss = ce + seq_coef * seq_aux
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
    # Buffers (the selection bias) have no gradient: zeros under their name, as the store keeps them frozen.
    for k, v in saved.items():
        grads.setdefault(k, torch.zeros_like(v))
    assert set(grads) == set(saved), sorted(set(grads) ^ set(saved))
    weights = to_saved_layout(dict(model.named_parameters()), mixtral=False)
    for k, v in weights.items():
        assert torch.equal(saved[k], v), k
    save_file({k: v.contiguous() for k, v in grads.items()}, d / "grads.safetensors", metadata={"format": "pt"})
    # Reloads to the same loss.
    ref = case["model_cls"].from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                            experts_implementation="eager").eval()
    with torch.no_grad():
        assert float(ce_loss(ref(input_ids=ids, use_cache=False).logits, labels).float()) == float(ce)
    expected = dict(case=case["name"], what=case["what"], model_type=model.config.model_type, input_ids=ids.tolist(),
                    labels=labels.tolist(), loss=float(loss), ce_loss=float(ce), aux_loss=switch_aux(model, ids),
                    router_aux_loss_coef=0.0, router_margin=rmargin, seed=seed, torch=torch.__version__,
                    transformers=transformers.__version__)
    if seq_coef:
        expected.update(seq_aux_loss_coef=seq_coef, seq_aux_loss=float(seq_aux))
    (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{case['name']}: seed {seed}, loss {float(loss):.6f}, routing margin {rmargin:.4g}, {dir_bytes(d)} bytes")


CASES[1]["config"] = CASES[0]["config"]
MTP_WEIGHT = 0.3
CASES += [
    dict(CASES[0], name="deepseek_v3_mtp", mtp=MTP_WEIGHT,
         what="as deepseek_v3, plus a multi-token-prediction module of depth 1 (an MoE decoder layer at index 2), "
              f"the loss CE + {MTP_WEIGHT} * CE of its token-(i+2) predictions"),
    dict(CASES[3], name="glm4_moe_mtp", mtp=MTP_WEIGHT,
         what=f"as glm4_moe, plus a multi-token-prediction module of depth 1, the loss CE + {MTP_WEIGHT} * CE_MTP"),
]


class MTP(torch.nn.Module):
    """DeepSeek-V3's multi-token-prediction module of depth 1 (paper section 2.2), over a model's last hidden states.

    At positions i = 0..T-2 of each sequence, with h_i the main model's last-layer output (before its final norm):
        h'_i = eh_proj([enorm(Emb(t_{i+1})); hnorm(h_i)])     (eq. 21, in the order DeepSeek's weights use)
        o    = TRM(h'_0..h'_{T-2})                            (eq. 22: one decoder layer of the model's kind)
        P_i  = softmax(OutHead(norm(o_i)))                    (eq. 23: embedding and head shared with the model)
        L    = -mean_i log P_i[t_{i+2}]                       (eq. 24; labels -100 ignored)
    """

    def __init__(self, model):
        super().__init__()
        cfg, H = model.config, model.config.hidden_size
        norm = type(model.model.norm)
        self.layer = cfg.num_hidden_layers
        self.enorm, self.hnorm = norm(H, eps=cfg.rms_norm_eps), norm(H, eps=cfg.rms_norm_eps)
        self.shared_head = torch.nn.Module()   # its `head` is the model's lm_head
        self.shared_head.norm = norm(H, eps=cfg.rms_norm_eps)
        self.eh_proj = torch.nn.Linear(2 * H, H, bias=False)
        self.block = type(model.model.layers[-1])(cfg, layer_idx=self.layer)

    def forward(self, model, ids, labels, last_hidden):
        B, T = ids.shape
        x = self.eh_proj(torch.cat([self.enorm(model.model.embed_tokens(ids[:, 1:])), self.hnorm(last_hidden[:, :-1])], -1))
        pos = torch.arange(T - 1).unsqueeze(0).expand(B, -1)
        mask = torch.full((T - 1, T - 1), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)[None, None].expand(B, 1, -1, -1)
        o = self.block(x, attention_mask=mask, position_ids=pos, position_embeddings=model.model.rotary_emb(x, pos))
        logits = model.lm_head(self.shared_head.norm(o))
        lg = logits[:, :-1].reshape(-1, logits.shape[-1]).double()
        return torch.nn.functional.cross_entropy(lg, labels[:, 2:].reshape(-1), ignore_index=-100), o

    def named_for_checkpoint(self):
        """Parameters (and the router's selection bias) under the checkpoint names, experts as saved."""
        pre = f"model.layers.{self.layer}"
        named = {f"{pre}.{n.removeprefix('block.')}": p for n, p in self.named_parameters()}
        gate = getattr(self.block.mlp, "gate", None)
        if gate is not None and hasattr(gate, "e_score_correction_bias"):
            named[f"{pre}.mlp.gate.e_score_correction_bias"] = gate.e_score_correction_bias
        return named


def last_hidden(model, ids):
    """The main model's last-layer output before the final norm, and the logits."""
    seen = {}
    hook = model.model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("h", i[0]))
    logits = model(input_ids=ids, use_cache=False).logits
    hook.remove()
    return seen["h"], logits


def mtp_margin(model, mtp, ids) -> float:
    gate = getattr(mtp.block.mlp, "gate", None)
    if gate is None:
        return math.inf
    seen = {}
    hook = gate.register_forward_hook(lambda m, i, o: seen.__setitem__("logits", o[0].detach()))
    with torch.no_grad():
        h, _ = last_hidden(model, ids)
        mtp(model, ids, ids, h)
    hook.remove()
    scores, gmargin = routing_choice(seen["logits"].reshape(-1, seen["logits"].shape[-1]), gate, model.config)
    s = scores.sort(dim=-1, descending=True).values
    k = model.config.num_experts_per_tok
    return min(float((s[:, k - 1] - s[:, k]).min()), gmargin)


def mtp_loss(model, mtp, ids, labels, weight):
    h, logits = last_hidden(model, ids)
    ce = ce_loss(logits, labels)
    m, _ = mtp(model, ids, labels, h)
    return ce + weight * m, ce, m


@contextlib.contextmanager
def exact_float64(model):
    """transformers computes RMSNorm, the router logits and the attention softmax in float32 even in a float64
    model (`.to(torch.float32)`), which makes the loss a step function at float32 resolution: finite differences
    need float64 throughout, so the modeling module sees a `torch` whose float32 is float64 meanwhile."""
    class Torch64:
        float32 = torch.float64

        def __getattr__(self, name):
            return getattr(torch, name)

    module = sys.modules[type(model).__module__]
    module.torch = Torch64()
    try:
        yield
    finally:
        module.torch = torch


def finite_difference_check(model, mtp, ids, labels, weight, names, eps=1e-5):
    """d loss / d theta by autograd against central differences, in float64, at one coordinate of each named tensor."""
    model, mtp = copy.deepcopy(model).double(), copy.deepcopy(mtp).double()
    with exact_float64(model):
        return _finite_differences(model, mtp, ids, labels, weight, names, eps)


def _finite_differences(model, mtp, ids, labels, weight, names, eps):
    params = {**dict(model.named_parameters()), **{f"mtp.{n}": p for n, p in mtp.named_parameters()}}
    model.zero_grad(); mtp.zero_grad()
    mtp_loss(model, mtp, ids, labels, weight)[0].backward()
    gen = torch.Generator().manual_seed(7)
    worst = 0.0
    for name in names:
        p = params[name]
        i = int(torch.randint(0, p.numel(), (1,), generator=gen))
        with torch.no_grad():
            old = p.view(-1)[i].item()
            p.view(-1)[i] = old + eps
            up = float(mtp_loss(model, mtp, ids, labels, weight)[0])
            p.view(-1)[i] = old - eps
            down = float(mtp_loss(model, mtp, ids, labels, weight)[0])
            p.view(-1)[i] = old
        fd, ag = (up - down) / (2 * eps), float(p.grad.view(-1)[i])
        err = abs(fd - ag) / max(abs(fd), 1e-4)
        worst = max(worst, err)
        assert err < 1e-6, f"{name}[{i}]: finite difference {fd} vs autograd {ag}"
    return worst


def build_mtp(case):
    ids, labels = batch()
    weight = case["mtp"]
    for seed in range(20_000, 20_400):
        torch.manual_seed(seed)
        model = case["model_cls"](case["cfg_cls"](**json.loads(json.dumps(case["config"])))).eval()
        randomise(model, torch.Generator().manual_seed(seed), case["config"]["initializer_range"], case["bias"])
        mtp = MTP(model).eval()
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for n, p in mtp.named_for_checkpoint().items():
                if n.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                elif n.endswith("e_score_correction_bias"):
                    p.copy_(torch.randn(p.shape, generator=gen) * case["bias"])
                elif n.endswith(".bias"):
                    p.copy_(0.3 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(case["config"]["initializer_range"] * torch.randn(p.shape, generator=gen))
        if min(margin(model, ids), mtp_margin(model, mtp, ids)) >= MARGIN:
            break
    else:
        raise RuntimeError(f"{case['name']}: no seed with routing margin >= {MARGIN}")
    rmargin = min(margin(model, ids), mtp_margin(model, mtp, ids))
    checked = ["mtp.eh_proj.weight", "mtp.enorm.weight", "mtp.hnorm.weight", "mtp.shared_head.norm.weight",
               "mtp.block.input_layernorm.weight", "mtp.block.mlp.experts.gate_up_proj", "model.embed_tokens.weight",
               "lm_head.weight", "model.layers.1.mlp.experts.down_proj", "model.layers.0.self_attn.o_proj.weight"]
    fd_error = finite_difference_check(model, mtp, ids, labels, weight, checked)

    model.zero_grad(set_to_none=True); mtp.zero_grad(set_to_none=True)
    loss, ce, m = mtp_loss(model, mtp, ids, labels, weight)
    loss.backward()
    named = {n: p.grad for n, p in model.named_parameters()}
    mtp_named = mtp.named_for_checkpoint()
    named.update({n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in mtp_named.items()})

    d = OUT / case["name"]
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model.config.num_nextn_predict_layers = 1
    model.save_pretrained(d, safe_serialization=True)
    (d / "generation_config.json").unlink(missing_ok=True)
    saved = load_file(d / "model.safetensors")
    pre = f"model.layers.{mtp.layer}"
    extra = to_saved_layout({n: p.detach() for n, p in mtp_named.items()}, mixtral=False)
    saved.update(extra)
    saved[f"{pre}.embed_tokens.weight"] = model.model.embed_tokens.weight.detach().clone()
    saved[f"{pre}.shared_head.head.weight"] = model.lm_head.weight.detach().clone()
    save_file({k: v.contiguous() for k, v in saved.items()}, d / "model.safetensors", metadata={"format": "pt"})
    grads = to_saved_layout(named, mixtral=False)
    for k, v in saved.items():
        if not k.endswith(("embed_tokens.weight", "shared_head.head.weight")) or not k.startswith(pre):
            grads.setdefault(k, torch.zeros_like(v))
    save_file({k: v.contiguous() for k, v in grads.items()}, d / "grads.safetensors", metadata={"format": "pt"})
    # transformers loads the checkpoint (the module's tensors are unexpected keys there) to the same main loss.
    ref = case["model_cls"].from_pretrained(d, dtype=torch.float32, attn_implementation="eager",
                                            experts_implementation="eager").eval()
    with torch.no_grad():
        assert float(ce_loss(ref(input_ids=ids, use_cache=False).logits, labels)) == float(ce)
    expected = dict(case=case["name"], what=case["what"], model_type=model.config.model_type, input_ids=ids.tolist(),
                    labels=labels.tolist(), loss=float(loss.detach()), ce_loss=float(ce), aux_loss=0.0,
                    router_aux_loss_coef=0.0, mtp_loss_weight=weight, mtp_loss=float(m.detach()), router_margin=rmargin,
                    finite_difference_max_rel_error=fd_error, seed=seed, torch=torch.__version__,
                    transformers=transformers.__version__)
    (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"{case['name']}: seed {seed}, loss {float(loss):.6f} (MTP {float(m):.6f}), routing margin {rmargin:.4g}, "
          f"finite differences within {fd_error:.2g}, {dir_bytes(d)} bytes")

if __name__ == "__main__":
    wanted = set(sys.argv[1:])
    for c in CASES:
        if not wanted or c["name"] in wanted:
            build_mtp(c) if "mtp" in c else build(c)
