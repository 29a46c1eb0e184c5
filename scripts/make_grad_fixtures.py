#!/usr/bin/env python3
"""Generate the Hugging Face training (loss + gradient) fixtures for swift-moe.

Run with the peers venv (created by `bash ../shared/tools/peers-setup.sh`):

    ~/.cache/moe-peers/bin/python scripts/make_grad_fixtures.py [case ...] [--no-fd]

For every case this writes `Tests/Fixtures/training/<case>/`:
  * `config.json` + `model.safetensors` exactly as `save_pretrained(safe_serialization=True)` writes them
    (transformers 5 splits the in-memory fused experts into one tensor per expert on save);
  * `grads.safetensors`: d(out.loss)/d(parameter) in float32 for every tensor of `model.safetensors`, under the
    same names and shapes (fused `experts.gate_up_proj` / `experts.down_proj` grads split per expert exactly as
    save_pretrained splits the weights; tied models: the embedding grad, which includes the lm_head
    contribution, only under `model.embed_tokens.weight`);
  * `expected.json`: batch, labels, total / CE / aux loss, router margin, versions (see README.md there).

The loss is HF's own: `model(input_ids, labels=labels, output_router_logits=True).loss`
= mean next-token CE over non-ignored targets + router_aux_loss_coef * load-balancing aux loss.
Everything is float32, eager attention, eager experts, 1 thread, deterministic algorithms. Each case loops over
weight seeds and keeps the first one whose router top-k choice has a probability margin >= 1e-3 everywhere.

Checks done while generating: the per-expert split reproduces the saved weights bit-exactly and the grads
written through `save_pretrained` itself; the checkpoint reloads to the same loss; CE and aux are recomputed
independently; the grads agree with grouped_mm experts; and (unless --no-fd) central finite differences of the
loss in float64 -- perturbing entries of the *saved* tensors and reloading with `from_pretrained` -- match
the grads for a few entries per tensor kind, and a float64 autograd pass bounds the float32 error of all grads.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    MixtralConfig,
    MixtralForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "training"

MARGIN = 1e-3
MAX_SEED_TRIES = 400
AUX_COEF = 0.02
BATCH, SEQ = 2, 12
IDS_SEED = 4242  # input ids are the same for every case
FD_STEP = 1e-5

COMMON = dict(
    vocab_size=64,
    hidden_size=32,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    initializer_range=0.2,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=None,
    output_router_logits=True,
    router_aux_loss_coef=AUX_COEF,
    rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
    attn_implementation="eager",
    experts_implementation="eager",
)

QWEN2_MOE = dict(
    COMMON,
    num_hidden_layers=3,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=16,
    shared_expert_intermediate_size=24,
    intermediate_size=40,
    decoder_sparse_step=1,
    mlp_only_layers=[1],
    qkv_bias=True,
    use_sliding_window=False,
)

QWEN3_MOE = dict(
    COMMON,
    num_hidden_layers=2,
    num_experts=8,
    num_experts_per_tok=2,
    moe_intermediate_size=16,
    intermediate_size=40,  # unused: every layer is MoE
    decoder_sparse_step=1,
    mlp_only_layers=[],
    tie_word_embeddings=False,
)

CASES = [
    dict(
        name="qwen2_moe",
        what="Qwen2-MoE: shared expert (24) + sigmoid shared_expert_gate, norm_topk_prob=false, random qkv bias, "
        "3 layers with mlp_only_layers=[1] (dense MLP 40), untied",
        cfg_cls=Qwen2MoeConfig,
        model_cls=Qwen2MoeForCausalLM,
        config=dict(QWEN2_MOE, norm_topk_prob=False, tie_word_embeddings=False),
        base_seed=11000,
    ),
    dict(
        name="qwen2_moe_topk_norm",
        what="as qwen2_moe but norm_topk_prob=true and tie_word_embeddings=true (no lm_head.weight saved)",
        cfg_cls=Qwen2MoeConfig,
        model_cls=Qwen2MoeForCausalLM,
        config=dict(QWEN2_MOE, norm_topk_prob=True, tie_word_embeddings=True),
        base_seed=12000,
    ),
    dict(
        name="qwen3_moe",
        what="Qwen3-MoE: norm_topk_prob=true, q_norm/k_norm (per head_dim 8), 2 MoE layers, untied",
        cfg_cls=Qwen3MoeConfig,
        model_cls=Qwen3MoeForCausalLM,
        config=dict(QWEN3_MOE, norm_topk_prob=True),
        base_seed=13000,
    ),
    dict(
        name="qwen3_moe_no_norm",
        what="Qwen3-MoE with norm_topk_prob=false",
        cfg_cls=Qwen3MoeConfig,
        model_cls=Qwen3MoeForCausalLM,
        config=dict(QWEN3_MOE, norm_topk_prob=False),
        base_seed=14000,
    ),
    dict(
        name="mixtral",
        what="Mixtral (always renormalises top-k), experts width = intermediate_size 16, saved as "
        "block_sparse_moe.experts.E.w1/w2/w3, 2 layers, untied",
        cfg_cls=MixtralConfig,
        model_cls=MixtralForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            num_local_experts=8,
            num_experts_per_tok=2,
            intermediate_size=16,
            router_jitter_noise=0.0,
            sliding_window=None,
            tie_word_embeddings=False,
        ),
        base_seed=15000,
    ),
    dict(
        name="olmoe",
        what="OLMoE: norm_topk_prob=false, q_norm over all q heads (32) / k_norm over kv dim (16), clip_qkv=None, "
        "2 layers, untied",
        cfg_cls=OlmoeConfig,
        model_cls=OlmoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            num_experts=8,
            num_experts_per_tok=2,
            intermediate_size=16,
            norm_topk_prob=False,
            clip_qkv=None,
            tie_word_embeddings=False,
        ),
        base_seed=16000,
    ),
]


# --------------------------------------------------------------------------------------------------------------
# helpers


def randomise(model: torch.nn.Module, gen: torch.Generator, std: float) -> None:
    """Re-initialise every parameter from `gen` (independent of HF's own init)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # all RMSNorms incl. q_norm / k_norm
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen)
            elif name.endswith(".bias"):
                v = 0.3 * torch.randn(p.shape, generator=gen)
            else:  # embeddings, projections, fused experts, routers, shared_expert_gate, lm_head
                v = std * torch.randn(p.shape, generator=gen)
            p.copy_(v)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(IDS_SEED)
    ids = torch.randint(0, COMMON["vocab_size"], (BATCH, SEQ), generator=gen)
    labels = ids.clone()
    labels[1, -2:] = -100
    return ids, labels


def run(model, ids, labels):
    out = model(input_ids=ids, labels=labels, output_router_logits=True, use_cache=False)
    return out


def loss64(model, ids, labels) -> torch.Tensor:
    """The same loss, in float64 (HF's loss function upcasts logits to float32, so it is recomputed here)."""
    out = model(input_ids=ids, output_router_logits=True, use_cache=False)
    assert out.logits.dtype == torch.float64 and out.aux_loss.dtype == torch.float64
    return ce_loss(out.logits, labels) + AUX_COEF * out.aux_loss


def router_margin(router_logits, k: int) -> float:
    m = math.inf
    for lg in router_logits:
        s = torch.softmax(lg.detach().float(), dim=-1).sort(dim=-1, descending=True).values
        m = min(m, float((s[:, k - 1] - s[:, k]).min()))
    return m


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE over targets != -100 (logits[:, :-1] predict labels[:, 1:])."""
    lg = logits[:, :-1].reshape(-1, logits.shape[-1]).double()
    tg = labels[:, 1:].reshape(-1)
    return torch.nn.functional.cross_entropy(lg, tg, ignore_index=-100, reduction="mean")


def aux_loss_ref(router_logits, num_experts: int, k: int) -> torch.Tensor:
    """Load-balancing loss as HF computes it (no attention mask): ALL MoE layers' rows pooled together,
    f_e = (#top-k assignments to e over all layers and tokens) / (layers * tokens)   (sums to k),
    P_e = mean softmax prob of e over all layers and tokens,   aux = E * sum_e f_e * P_e."""
    cat = torch.cat([lg.double() for lg in router_logits], 0)
    probs = torch.softmax(cat, dim=-1)
    sel = probs.topk(k, dim=-1).indices
    f = torch.nn.functional.one_hot(sel, num_experts).sum(dim=(0, 1)).double() / cat.shape[0]
    p = probs.mean(0)
    return num_experts * (f * p).sum()


EXPERT_RE = re.compile(r"model\.layers\.(\d+)\.mlp\.experts\.(gate_up_proj|down_proj)")
MIXTRAL_GATE_RE = re.compile(r"model\.layers\.(\d+)\.mlp\.gate\.weight")


def to_saved_layout(named: dict[str, torch.Tensor], mixtral: bool) -> dict[str, torch.Tensor]:
    """In-memory parameter name -> tensor  ==>  save_pretrained's name -> tensor.

    gate_up_proj [E, 2W, H]: rows [:W] are the gate (Mixtral w1), rows [W:] the up projection (Mixtral w3);
    down_proj [E, H, W] is per-expert down (Mixtral w2). Mixtral's `mlp` is saved as `block_sparse_moe`."""
    out: dict[str, torch.Tensor] = {}
    names = ("w1", "w3", "w2") if mixtral else ("gate_proj.weight", "up_proj.weight", "down_proj.weight")
    for name, t in named.items():
        t = t.detach()
        m = EXPERT_RE.fullmatch(name)
        if m:
            layer, kind = m.group(1), m.group(2)
            pre = f"model.layers.{layer}.{'block_sparse_moe' if mixtral else 'mlp'}.experts"
            suffix = (lambda n: f"{n}.weight") if mixtral else (lambda n: n)
            for e in range(t.shape[0]):
                if kind == "gate_up_proj":
                    w = t.shape[1] // 2
                    out[f"{pre}.{e}.{suffix(names[0])}"] = t[e, :w].contiguous().clone()
                    out[f"{pre}.{e}.{suffix(names[1])}"] = t[e, w:].contiguous().clone()
                else:
                    out[f"{pre}.{e}.{suffix(names[2])}"] = t[e].contiguous().clone()
            continue
        m = MIXTRAL_GATE_RE.fullmatch(name)
        if mixtral and m:
            out[f"model.layers.{m.group(1)}.block_sparse_moe.gate.weight"] = t.contiguous().clone()
            continue
        out[name] = t.contiguous().clone()
    return out


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def load(path: Path, model_cls, dtype=torch.float32, experts="eager"):
    return model_cls.from_pretrained(
        path, dtype=dtype, attn_implementation="eager", experts_implementation=experts
    ).eval()


# --------------------------------------------------------------------------------------------------------------
# float64 evaluation: HF upcasts/downcasts to float32 in RMSNorm, softmaxes and routers; for the float64 checks
# those are replaced by dtype-preserving versions (same math).


def _rms_fwd(self, x):
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def _router_fwd(self, h):
    h = h.reshape(-1, self.hidden_dim)
    logits = torch.nn.functional.linear(h, self.weight)
    probs = torch.softmax(logits, dim=-1)
    top, idx = torch.topk(probs, self.top_k, dim=-1)
    if getattr(self, "norm_topk_prob", True):  # Mixtral always renormalises
        top = top / top.sum(dim=-1, keepdim=True)
    return logits, top, idx


def _aux64(gate_logits, num_experts=None, top_k=2, attention_mask=None):
    assert attention_mask is None
    return aux_loss_ref(gate_logits, num_experts, top_k).to(gate_logits[0].dtype)


@contextmanager
def float64_exact():
    import transformers.models.mixtral.modeling_mixtral as mx
    import transformers.models.olmoe.modeling_olmoe as ol
    import transformers.models.qwen2_moe.modeling_qwen2_moe as q2
    import transformers.models.qwen3_moe.modeling_qwen3_moe as q3

    F = torch.nn.functional
    orig_softmax = F.softmax

    def softmax(input, dim=None, _stacklevel=3, dtype=None):
        if dtype is not None and input.dtype == torch.float64:
            dtype = None
        return orig_softmax(input, dim=dim, dtype=dtype)

    saved = []

    def patch(obj, attr, val):
        saved.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, val)

    patch(F, "softmax", softmax)
    for mod, pre in ((q2, "Qwen2Moe"), (q3, "Qwen3Moe"), (mx, "Mixtral"), (ol, "Olmoe")):
        patch(getattr(mod, f"{pre}RMSNorm"), "forward", _rms_fwd)
        patch(getattr(mod, f"{pre}TopKRouter"), "forward", _router_fwd)
        patch(mod, "load_balancing_loss_func", _aux64)
    try:
        yield
    finally:
        for obj, attr, val in reversed(saved):
            setattr(obj, attr, val)


def fd_check(d: Path, case: dict, grads: dict[str, torch.Tensor], ids, labels, gen: torch.Generator):
    """Central differences in float64 through the saved file layout (perturb a saved tensor entry, reload with
    from_pretrained, which re-fuses the experts itself) vs the float32 grads under that saved name."""
    base = {k: v.double() for k, v in load_file(d / "model.safetensors").items()}
    cfg_text = (d / "config.json").read_text()
    tmp = Path(tempfile.mkdtemp(prefix="gradfd-"))
    (tmp / "config.json").write_text(cfg_text)

    def loss_with(name, idx, delta):
        sd = dict(base)
        t = base[name].clone()
        t[idx] += delta
        sd[name] = t
        save_file(sd, tmp / "model.safetensors", metadata={"format": "pt"})
        m = load(tmp, case["model_cls"], dtype=torch.float64)
        with torch.no_grad():
            return float(loss64(m, ids, labels))

    # one tensor per kind, at its largest-|grad| entry, plus random (tensor, entry) picks
    kinds = [
        r"embed_tokens", r"lm_head", r"model\.norm", r"input_layernorm", r"post_attention_layernorm",
        r"q_proj\.weight", r"k_proj\.bias", r"v_proj\.weight", r"o_proj", r"q_norm", r"k_norm",
        r"(mlp|block_sparse_moe)\.gate\.weight", r"experts\.\d+\.(gate_proj|w1)", r"experts\.\d+\.(up_proj|w3)",
        r"experts\.\d+\.(down_proj|w2)", r"shared_expert\.(up|gate|down)_proj", r"shared_expert_gate",
        r"layers\.1\.mlp\.(gate|up|down)_proj",
    ]
    names = sorted(grads)
    picks = []
    for pat in kinds:
        cands = [n for n in names if re.search(pat, n) and float(grads[n].abs().max()) > 0]
        if not cands:
            continue
        n = cands[int(torch.randint(len(cands), (1,), generator=gen))]
        picks.append((n, tuple(int(i) for i in torch.unravel_index(grads[n].abs().argmax(), grads[n].shape))))
    for _ in range(4):
        n = names[int(torch.randint(len(names), (1,), generator=gen))]
        flat = int(torch.randint(grads[n].numel(), (1,), generator=gen))
        picks.append((n, tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), grads[n].shape))))

    worst = 0.0
    rows = []
    with float64_exact():
        for n, idx in picks:
            fd = (loss_with(n, idx, FD_STEP) - loss_with(n, idx, -FD_STEP)) / (2 * FD_STEP)
            g = float(grads[n][idx])
            err = abs(fd - g)
            rows.append((n, idx, g, fd, err))
            ok = err <= 1e-5 + 1e-3 * abs(g)
            worst = max(worst, err / (1e-5 + 1e-3 * abs(g)))
            assert ok, f"{case['name']}: FD mismatch at {n}{list(idx)}: grad {g:.8g} fd {fd:.8g}"
    shutil.rmtree(tmp)
    return rows, worst


def f64_grads(d: Path, case: dict, ids, labels, mixtral: bool) -> dict[str, torch.Tensor]:
    with float64_exact():
        m = load(d, case["model_cls"], dtype=torch.float64)
        loss = loss64(m, ids, labels)
        loss.backward()
        g = to_saved_layout({n: p.grad for n, p in m.named_parameters()}, mixtral)
        return g, float(loss.detach())


# --------------------------------------------------------------------------------------------------------------


def build_case(case: dict, do_fd: bool) -> dict:
    name = case["name"]
    mixtral = case["cfg_cls"] is MixtralConfig
    ids, labels = batch()
    std = case["config"]["initializer_range"]
    tries = 0
    for seed in range(case["base_seed"], case["base_seed"] + MAX_SEED_TRIES):
        tries += 1
        torch.manual_seed(seed)
        config = case["cfg_cls"](**json.loads(json.dumps(case["config"])))
        model = case["model_cls"](config).eval()
        assert model.config._attn_implementation == "eager"
        assert model.config._experts_implementation == "eager"
        randomise(model, torch.Generator().manual_seed(seed), std)
        with torch.no_grad():
            out = run(model, ids, labels)
        rmargin = router_margin(out.router_logits, config.num_experts_per_tok)
        if rmargin >= MARGIN:
            break
    else:
        raise RuntimeError(f"{name}: no seed with router margin >= {MARGIN}")

    # ---- loss + grads (float32)
    model.zero_grad(set_to_none=True)
    out = run(model, ids, labels)
    loss = out.loss  # NB: HF adds coef*aux to the CE tensor in place
    loss.backward()
    total, aux = float(out.loss.detach()), float(out.aux_loss.detach())
    ce = float(ce_loss(out.logits.detach(), labels))
    aux_ref = float(aux_loss_ref([lg.detach() for lg in out.router_logits], _num_experts(model.config), model.config.num_experts_per_tok))
    assert abs(aux - aux_ref) < 1e-5, (aux, aux_ref)
    assert abs(total - (ce + AUX_COEF * aux)) < 1e-5, (total, ce, aux)
    n_moe = len(out.router_logits)
    named_grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in named_grads.values()), [n for n, g in named_grads.items() if g is None]

    # ---- save the checkpoint
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    model.save_pretrained(d, safe_serialization=True)
    (d / "generation_config.json").unlink(missing_ok=True)
    saved = load_file(d / "model.safetensors")

    # ---- the split, checked on the weights: must reproduce the saved tensors bit-exactly
    weights = to_saved_layout(dict(model.named_parameters()), mixtral)
    assert set(weights) == set(saved), (sorted(set(weights) ^ set(saved)))
    for k, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(v, weights[k]), k
    tied = bool(model.config.tie_word_embeddings)
    assert ("lm_head.weight" in saved) == (not tied)

    grads = to_saved_layout(named_grads, mixtral)
    assert set(grads) == set(saved)
    for k in grads:
        assert grads[k].shape == saved[k].shape and torch.isfinite(grads[k]).all(), k
    save_file(grads, d / "grads.safetensors", metadata={"format": "pt"})

    # ---- the grads written through save_pretrained itself must be the same tensors
    gm = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in gm.named_parameters():
            p.copy_(named_grads[n])
    with tempfile.TemporaryDirectory() as td:
        gm.save_pretrained(td, safe_serialization=True)
        via_hf = load_file(Path(td) / "model.safetensors")
    assert set(via_hf) == set(grads) and all(torch.equal(via_hf[k], grads[k]) for k in grads)

    # ---- reload: same loss; grouped_mm experts give the same grads (to float32 noise)
    ref = load(d, case["model_cls"])
    with torch.no_grad():
        assert float(run(ref, ids, labels).loss) == total
    gmm = load(d, case["model_cls"], experts="grouped_mm")
    assert gmm.config._experts_implementation == "grouped_mm"
    o2 = run(gmm, ids, labels)
    o2.loss.backward()
    g2 = to_saved_layout({n: p.grad for n, p in gmm.named_parameters()}, mixtral)
    gmm_diff = max(float((g2[k] - grads[k]).abs().max()) for k in grads)
    assert gmm_diff < 1e-5, gmm_diff

    grad_norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))
    zero_experts = sorted(k for k, g in grads.items() if ".experts." in k and float(g.abs().max()) == 0.0)

    expected = {
        "case": name,
        "what": case["what"],
        "model_type": model.config.model_type,
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "loss": total,
        "ce_loss": ce,
        "aux_loss": aux,
        "router_aux_loss_coef": AUX_COEF,
        "router_margin": rmargin,
        "num_targets": int((labels[:, 1:] != -100).sum()),
        "num_moe_layers": n_moe,
        "grad_norm": grad_norm,
        "tie_word_embeddings": tied,
        "seed": seed,
        "experts_implementation": "eager",
        "attn_implementation": "eager",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for f in d.iterdir():
        f.chmod(0o644)

    res = dict(case=name, seed=seed, tries=tries, rmargin=rmargin, loss=total, ce=ce, aux=aux,
               bytes=dir_bytes(d), ntensors=len(saved), gmm_diff=gmm_diff, grad_norm=grad_norm,
               zero_experts=len(zero_experts), tied=tied)
    if do_fd:
        g64, l64 = f64_grads(d, case, ids, labels, mixtral)
        res["f32_vs_f64_loss"] = abs(l64 - total)
        res["f32_vs_f64_grad"] = max(float((g64[k] - grads[k].double()).abs().max()) for k in grads)
        rows, worst = fd_check(d, case, grads, ids, labels, torch.Generator().manual_seed(seed))
        res["fd_rows"] = rows
        res["fd_worst"] = worst
    return res


def _num_experts(cfg) -> int:
    return getattr(cfg, "num_local_experts", None) or cfg.num_experts


def main(argv: list[str]) -> int:
    do_fd = "--no-fd" not in argv
    wanted = {a for a in argv[1:] if not a.startswith("--")}
    cases = [c for c in CASES if not wanted or c["name"] in wanted]
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in cases:
        print(f"== {case['name']}", flush=True)
        r = build_case(case, do_fd)
        rows.append(r)
        print(f"   seed={r['seed']} (try {r['tries']}) loss={r['loss']:.6f} ce={r['ce']:.6f} aux={r['aux']:.6f} "
              f"router_margin={r['rmargin']:.4g} tensors={r['ntensors']} tied={r['tied']} "
              f"grad_norm={r['grad_norm']:.4g} zero-grad expert tensors={r['zero_experts']} "
              f"|grouped_mm - eager| grads={r['gmm_diff']:.2e}")
        if do_fd:
            print(f"   float64: |loss32-loss64|={r['f32_vs_f64_loss']:.2e} max|grad32-grad64|={r['f32_vs_f64_grad']:.2e}"
                  f"  FD worst err/tol={r['fd_worst']:.3f}")
            for n, idx, g, fd, err in r["fd_rows"]:
                print(f"     {n}{list(idx)}: grad {g:+.7e} fd64 {fd:+.7e} |d| {err:.1e}")
    print()
    print(f"{'case':<22} {'bytes':>8} {'seed':>6} {'router margin':>14} {'loss':>10}")
    for r in rows:
        print(f"{r['case']:<22} {r['bytes']:>8} {r['seed']:>6} {r['rmargin']:>14.4g} {r['loss']:>10.6f}")
    print(f"total training fixtures: {dir_bytes(OUT)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
