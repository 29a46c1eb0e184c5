#!/usr/bin/env python3
"""Generate the PPO (TRL) reference fixture for swift-moe: Tests/Fixtures/posttraining/ppo/.

TRL 1.16 (the peers venv) no longer ships PPO. The newest release that still has it is **trl 1.12.0**
(`trl.experimental.ppo.PPOTrainer` / `PPOConfig`; 1.13.0 removed `trl/experimental/ppo`). It is the "PPOv2"
(N+ implementation details) trainer: separate value model, GAE, advantage whitening, per-token KL penalty,
`logits /= temperature + 1e-7`, INVALID_LOGPROB = 1.0. trl 1.12.0 imports and runs unchanged on the peers venv's
torch 2.15 / transformers 5.23 / accelerate, so it is used as a *source overlay*: the wheel is unpacked (no deps)
into ~/.cache/moe-trl-ppo/trl-1.12.0 and put first on sys.path by this script (it downloads + unpacks the wheel
with the venv's own pip when the directory is missing; override the location with MOE_TRL_PPO_DIR):

    ~/.cache/moe-peers/bin/python -m pip download trl==1.12.0 --no-deps -d ~/.cache/moe-trl-ppo
    unzip ~/.cache/moe-trl-ppo/trl-1.12.0-py3-none-any.whl -d ~/.cache/moe-trl-ppo/trl-1.12.0

Run:

    ~/.cache/moe-peers/bin/python scripts/make_ppo_fixtures.py

What it does: builds tiny Qwen3-MoE models (policy, reference = policy + noise, reward and value =
Qwen3MoeForSequenceClassification num_labels 1, value = reward + noise), builds a real `PPOTrainer`
(CPU, float32) and runs `PPOTrainer.train()` for exactly one rollout batch (3 left-padded queries, response_length
7, temperature 0.7, k1 KL 0.05, GAE gamma 1 / lam 0.95, 2 PPO epochs of 1 minibatch, stop_token_id = EOS,
missing_eos_penalty 1.0). Nothing of TRL's algorithm is copied: every number is read out of TRL's own `train()`
frame with a line tracer (sys.settrace on `PPOTrainer.train` only; locals are read at fixed source lines found by
their text), the gradients at the `optimizer.step()` line (after `accelerator.backward(loss)`, before the step;
TRL's PPO loop never clips gradients), the weights at the training `forward(...)` line of the captured
(second-epoch) minibatch. A second run with `kl_estimator="k3"` and the same seed (identical rollout) gives the
k3 rewards / advantages / returns.

Independent checks (own code on the saved checkpoints): rollout log-probs (full forward at temperature 0.7 vs
TRL's generation-time scores) and reference log-probs, values, scores; rewards / GAE / returns / whitening in
float64; the second-epoch losses and every gradient from the saved epoch-2 weights (loss < 2e-6, grads < 1e-5).

Model: Qwen3-MoE like the other post-training fixtures but with 4 experts (vocab 64, hidden 32, 2 MoE layers,
4 heads / 2 KV heads, head_dim 8, 4 experts top-2, expert width 16, norm_topk_prob, q/k norm, untied,
weights 0.2*randn, norms 1+0.1*randn), float32, eager attention, eager experts, 1 thread, deterministic.
Seeds are looped until every router top-k choice (all four models, every token the losses depend on, initial and
epoch-2 weights) has probability margin >= 1e-3 and the rollout has the wanted shape (one response stopped early
and padded, one without EOS), with no clip decision closer than 1e-3 to its edge.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

TRL_PPO_VERSION = "1.12.0"
OVERLAY = Path(os.environ.get("MOE_TRL_PPO_DIR", Path.home() / ".cache" / "moe-trl-ppo" / f"trl-{TRL_PPO_VERSION}"))


def ensure_overlay() -> None:
    if (OVERLAY / "trl" / "experimental" / "ppo" / "ppo_trainer.py").exists():
        return
    dl = OVERLAY.parent
    dl.mkdir(parents=True, exist_ok=True)
    print(f"fetching trl=={TRL_PPO_VERSION} (no deps) into {dl}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", f"trl=={TRL_PPO_VERSION}", "--no-deps", "-d",
                    str(dl)], check=True)
    with zipfile.ZipFile(dl / f"trl-{TRL_PPO_VERSION}-py3-none-any.whl") as z:
        z.extractall(OVERLAY)


ensure_overlay()
sys.path.insert(0, str(OVERLAY))
sys.path.insert(1, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import make_grad_fixtures as mg  # noqa: E402  (sets 1 thread + deterministic algorithms)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import accelerate  # noqa: E402
import datasets  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    PreTrainedTokenizerFast,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    Qwen3MoeForSequenceClassification,
)
from trl.experimental.ppo import PPOConfig, PPOTrainer  # noqa: E402
from trl.experimental.ppo import ppo_trainer as trl_ppo  # noqa: E402

assert trl.__version__ == TRL_PPO_VERSION and trl.__file__.startswith(str(OVERLAY)), (trl.__version__, trl.__file__)
datasets.disable_progress_bars()
transformers.logging.set_verbosity_error()

ROOT = mg.ROOT
OUT = ROOT / "Tests" / "Fixtures" / "posttraining" / "ppo"

MARGIN = mg.MARGIN
PAD, BOS, EOS = 0, 1, 2
# output_router_logits=False (the Qwen3-MoE default): with True, transformers 5.23's generate() crashes inside
# load_balancing_loss_func (KV-cache step: 3 routed rows vs an 18-long attention mask), so PPO cannot even sample.
CONFIG = dict(mg.QWEN3_MOE, norm_topk_prob=True, num_experts=4, pad_token_id=PAD, output_router_logits=False)
E, K = CONFIG["num_experts"], CONFIG["num_experts_per_tok"]
INVALID_LOGPROB = 1.0

POLICY_SEED = 31000  # policy weights; reference = policy + REF_NOISE * randn
REWARD_SEED = 32000  # reward weights; value = reward + VALUE_NOISE * randn
REF_NOISE = 0.05
VALUE_NOISE = 0.05
TRL_SEED0 = 0  # PPOConfig.seed is looped from here
MAX_TRIES = 400

PPO = dict(
    response_length=7,
    temperature=0.7,
    kl_coef=0.05,
    kl_estimator="k1",
    gamma=1.0,
    lam=0.95,
    cliprange=0.2,
    cliprange_value=0.2,
    vf_coef=0.1,
    num_ppo_epochs=2,
    num_mini_batches=1,
    whiten_rewards=False,
    stop_token_id=EOS,
    missing_eos_penalty=1.0,
    learning_rate=3e-4,
)
CAPTURE_EPOCH = 1  # 0-based: the second PPO epoch (ratio != 1)
QUERY_LENGTHS = (5, 3, 4)


def queries():
    g = torch.Generator().manual_seed(8181)
    return [[BOS] + [int(t) for t in torch.randint(3, CONFIG["vocab_size"], (n - 1,), generator=g)]
            for n in QUERY_LENGTHS]


# --------------------------------------------------------------------------------------------------------------
# helpers (small copies of make_posttrain_fixtures' helpers, which imports trl 1.16-only trainers)


def make_tokenizer():
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{f"t{i}": i for i in range(3, CONFIG["vocab_size"])}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   padding_side="left")


def new_config(**over):
    return Qwen3MoeConfig(**json.loads(json.dumps(dict(CONFIG, **over))))


def perturb(model, gen, std):
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def load_state(model, state):
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state[n])


def save_model(model, d: Path):
    model.save_pretrained(d, safe_serialization=True)
    (d / "generation_config.json").unlink(missing_ok=True)
    saved = load_file(d / "model.safetensors")
    weights = mg.to_saved_layout(dict(model.named_parameters()), False)
    assert set(weights) == set(saved)
    for k, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(v, weights[k]), k
    return saved


def fl(t):
    return t.detach().float().tolist()


def trl_inputs(query_responses):
    """What TRL's `forward` / `get_reward` feed the model (own code, for the independent checks)."""
    am = query_responses != PAD
    pos = am.long().cumsum(1) - am.long()
    ids = torch.masked_fill(query_responses, ~am, 0)
    return ids, am, pos


def router_margin(model, query_responses, keep):
    """min over MoE layers and kept positions of p_k - p_(k+1), TRL's forward conventions."""
    ids, am, pos = trl_inputs(query_responses)
    base = model.model
    with torch.no_grad():
        out = base(input_ids=ids, attention_mask=am, position_ids=pos, output_router_logits=True, use_cache=False)
    m = math.inf
    for lg in out.router_logits:
        s = torch.softmax(lg.float(), -1).sort(-1, descending=True).values
        m = min(m, float((s[:, K - 1] - s[:, K])[keep.reshape(-1)].min()))
    return m


# --------------------------------------------------------------------------------------------------------------
# models


def _swap_rows(w, i, j):
    with torch.no_grad():
        a, b = w[i].clone(), w[j].clone()
        w[i], w[j] = b, a


def build_models():
    """Loop the weight seeds until every model's routers have margin >= 1e-3 on the queries (the sampled
    responses are checked later, per TRL seed)."""
    qs = queries()
    L = max(map(len, qs))
    q = torch.tensor([[PAD] * (L - len(x)) + x for x in qs])
    for i in range(mg.MAX_SEED_TRIES):
        ps, rs = POLICY_SEED + i, REWARD_SEED + i
        torch.manual_seed(ps)
        pol = Qwen3MoeForCausalLM(new_config()).eval()
        mg.randomise(pol, torch.Generator().manual_seed(ps), CONFIG["initializer_range"])
        # Relabel two output rows so that EOS is likely enough to stop some responses early and the pad id is
        # (almost) never sampled: lm_head rows EOS <-> the content token with the highest mean predicted
        # probability, PAD <-> the one with the lowest (on random contexts). Still a random matrix.
        g = torch.Generator().manual_seed(ps + 7)
        ctx = torch.randint(3, CONFIG["vocab_size"], (64, 10), generator=g)
        ctx[:, 0] = BOS
        with torch.no_grad():
            p = torch.softmax(pol(input_ids=ctx, use_cache=False).logits / PPO["temperature"], -1).mean((0, 1))
        order = [int(t) for t in p[3:].argsort() + 3]
        _swap_rows(pol.lm_head.weight, EOS, order[-1])
        _swap_rows(pol.lm_head.weight, PAD, order[0])
        ref = Qwen3MoeForCausalLM(new_config()).eval()
        load_state(ref, snapshot(pol))
        perturb(ref, torch.Generator().manual_seed(ps + 1), REF_NOISE)
        torch.manual_seed(rs)
        rew = Qwen3MoeForSequenceClassification(new_config(num_labels=1)).eval()
        mg.randomise(rew, torch.Generator().manual_seed(rs), CONFIG["initializer_range"])
        val = Qwen3MoeForSequenceClassification(new_config(num_labels=1)).eval()
        load_state(val, snapshot(rew))
        perturb(val, torch.Generator().manual_seed(rs + 1), VALUE_NOISE)
        for m in (pol, ref, rew, val):
            assert m.config._experts_implementation == "eager" and m.config._attn_implementation == "eager"
        if min(router_margin(m, q, q != PAD) for m in (pol, ref, rew, val)) >= MARGIN:
            states = {"policy": snapshot(pol), "reference": snapshot(ref), "reward": snapshot(rew),
                      "value": snapshot(val)}
            return states, {"policy": ps, "reward": rs, "eos_row_from": order[-1], "pad_row_from": order[0]}
    raise RuntimeError("no weight seed with router margins >= 1e-3 on the queries")


def instantiate(states):
    pol = Qwen3MoeForCausalLM(new_config())
    ref = Qwen3MoeForCausalLM(new_config())
    rew = Qwen3MoeForSequenceClassification(new_config(num_labels=1))
    val = Qwen3MoeForSequenceClassification(new_config(num_labels=1))
    for m, k in ((pol, "policy"), (ref, "reference"), (rew, "reward"), (val, "value")):
        load_state(m, states[k])
        m.eval()
    return pol, ref, rew, val


# --------------------------------------------------------------------------------------------------------------
# running TRL's PPOTrainer.train() with a line tracer on its frame


def _marker_lines():
    import inspect

    src, first = inspect.getsourcelines(PPOTrainer.train)
    markers = {
        "pre_eos_filter": "contain_eos_token = torch.any(postprocessed_responses",
        "rollout_done": "for ppo_epoch_idx in range(args.num_ppo_epochs):",
        "train_forward": "output, vpred_temp = forward(model, mb_query_responses",
        "backward": "accelerator.backward(loss)",
        "step": "optimizer.step()",
        "stats_done": "ratio_stats[ppo_epoch_idx, minibatch_idx, gradient_accumulation_idx] = ratio.mean()",
    }
    lines = {}
    for key, text in markers.items():
        hits = [first + i for i, s in enumerate(src) if s.strip().startswith(text)]
        assert len(hits) == 1, (key, hits)
        lines[hits[0]] = key
    return lines


LINES = _marker_lines()
TRAIN_CODE = PPOTrainer.train.__code__


def _c(x):
    return x.detach().clone() if torch.is_tensor(x) else x


def run_trl(states, seed, kl_estimator="k1", lr=None):
    pol, ref, rew, val = instantiate(states)
    tok = make_tokenizer()
    qs = queries()
    ds = datasets.Dataset.from_dict({"input_ids": qs})
    cap = {"epochs": []}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dict(PPO, kl_estimator=kl_estimator)
        if lr is not None:
            cfg["learning_rate"] = lr
        args = PPOConfig(
            output_dir=tmp, use_cpu=True, bf16=False, fp16=False, report_to="none", seed=seed,
            gradient_checkpointing=False, save_strategy="no", logging_strategy="no", dataloader_num_workers=0,
            disable_tqdm=True, per_device_train_batch_size=len(qs), gradient_accumulation_steps=1,
            total_episodes=len(qs), num_sample_generations=0, **cfg)
        tr = PPOTrainer(args=args, processing_class=tok, model=pol, ref_model=ref, reward_model=rew,
                        train_dataset=ds, value_model=val, eval_dataset=ds)
        assert args.num_total_batches == 1 and args.local_batch_size == len(qs) and args.local_mini_batch_size == len(qs)
        logged = []
        tr.log = lambda logs, *a, **k: logged.append(dict(logs))
        wrapper = tr.model
        cap["optimizer"] = type(tr.optimizer.optimizer).__name__
        cap["optimizer_groups"] = [
            {"params": len(g["params"]), "lr": g["lr"], "betas": list(g["betas"]), "eps": g["eps"],
             "weight_decay": g["weight_decay"], "fused": g.get("fused")} for g in tr.optimizer.optimizer.param_groups]

        def local(frame, event, arg):
            if event != "line":
                return local
            key = LINES.get(frame.f_lineno)
            if key is None:
                return local
            L = frame.f_locals
            if key == "pre_eos_filter":
                cap["scores_before_penalty"] = _c(L["scores"])
                for n in ("queries", "query_responses", "responses", "postprocessed_responses", "sequence_lengths",
                          "logprobs", "ref_logprobs", "values", "context_length"):
                    cap["raw_" + n] = _c(L[n])
            elif key == "rollout_done" and "rollout" not in cap:
                cap["rollout"] = {n: _c(L[n]) for n in (
                    "queries", "query_responses", "responses", "postprocessed_responses", "context_length",
                    "sequence_lengths", "sequence_lengths_p1", "contain_eos_token", "padding_mask", "padding_mask_p1",
                    "logprobs", "ref_logprobs", "values", "scores", "kl", "non_score_reward", "rewards",
                    "actual_end", "advantages", "returns")}
                cap["torch_rng_after_rollout"] = int(torch.random.initial_seed())
            elif key == "train_forward":
                e = {"epoch": L["ppo_epoch_idx"], "minibatch": L["minibatch_idx"], "micro": L["gradient_accumulation_idx"],
                     "b_inds": [int(i) for i in L["b_inds"]], "micro_batch_inds": [int(i) for i in L["micro_batch_inds"]]}
                if L["ppo_epoch_idx"] == CAPTURE_EPOCH and L["minibatch_idx"] == 0:
                    e["policy_weights"] = snapshot(wrapper.policy)
                    e["value_weights"] = snapshot(wrapper.value_model)
                cap["epochs"].append(e)
            elif key == "backward":
                e = cap["epochs"][-1]
                for n in ("new_logprobs", "vpred", "vpredclipped", "vf_losses1", "vf_losses2", "vf_loss", "vf_clipfrac",
                          "logprobs_diff", "ratio", "pg_losses", "pg_losses2", "pg_loss", "loss", "mb_advantage",
                          "mb_return", "mb_values", "mb_logprobs", "mb_responses", "mb_query_responses", "logits"):
                    e[n] = _c(L[n])
            elif key == "step":
                e = cap["epochs"][-1]
                if e["epoch"] == CAPTURE_EPOCH and e["minibatch"] == 0:
                    e["policy_grads"] = {n: _c(p.grad) for n, p in wrapper.policy.named_parameters()}
                    e["value_grads"] = {n: _c(p.grad) for n, p in wrapper.value_model.named_parameters()}
            elif key == "stats_done":
                e = cap["epochs"][-1]
                for n in ("pg_clipfrac", "entropy", "approxkl"):
                    e[n] = _c(L[n])
            return local

        def tracer(frame, event, arg):
            if event == "call" and frame.f_code is TRAIN_CODE:
                return local
            return None

        np.random.seed(seed)  # TRL draws the minibatch permutation from numpy's global RNG without seeding it
        sys.settrace(tracer)
        try:
            tr.train()
        finally:
            sys.settrace(None)
        cap["metrics"] = logged[-1]
        cap["final_policy"] = snapshot(wrapper.policy)
        cap["final_value"] = snapshot(wrapper.value_model)
        cap["args"] = args
        cap["generation_eos"] = tr.policy_model.generation_config.eos_token_id
    return cap


# --------------------------------------------------------------------------------------------------------------
# conditions on a run


def check_run(cap, states):
    r = cap["rollout"]
    resp, post = r["responses"], r["postprocessed_responses"]
    R = resp.shape[1]
    if R != PPO["response_length"]:
        return "generation stopped early for every row"
    # no sampled pad: pads only after a stop token
    for b in range(resp.shape[0]):
        toks = resp[b].tolist()
        stop = toks.index(EOS) if EOS in toks else R
        if any(t == PAD for t in toks[: stop + 1]):
            return "sampled the pad token"
    stopped_early = [(EOS in resp[b].tolist()) and resp[b].tolist().index(EOS) < R - 2 for b in range(resp.shape[0])]
    no_eos = [EOS not in resp[b].tolist() for b in range(resp.shape[0])]
    if not any(stopped_early) or not any(no_eos):
        return f"rollout shape (stopped early {stopped_early}, no eos {no_eos})"
    # router margins: every model on the positions that matter
    qr = r["query_responses"]
    ctx = r["context_length"]
    am = qr != PAD
    keep = am.clone()
    keep[:, ctx:] = True  # right pads: their logits enter TRL's (unmasked) entropy / approxkl statistics
    pq = torch.cat([r["queries"], post], 1)
    pol, ref, rew, val = instantiate(states)
    e2 = next(e for e in cap["epochs"] if e["epoch"] == CAPTURE_EPOCH)
    pol2 = Qwen3MoeForCausalLM(new_config()).eval()
    load_state(pol2, e2["policy_weights"])
    val2 = Qwen3MoeForSequenceClassification(new_config(num_labels=1)).eval()
    load_state(val2, e2["value_weights"])
    margins = {
        "policy": router_margin(pol, qr, keep), "reference": router_margin(ref, qr, am),
        "value": router_margin(val, qr, am), "reward": router_margin(rew, pq, pq != PAD),
        "policy_epoch2": router_margin(pol2, qr, keep), "value_epoch2": router_margin(val2, qr, am),
    }
    if min(margins.values()) < MARGIN:
        return f"router margin {min(margins.values()):.2e}"
    # clip decisions of the captured epoch must not sit on an edge
    pm = r["padding_mask"][e2["micro_batch_inds"]]
    pm1 = r["padding_mask_p1"][e2["micro_batch_inds"]]
    ratio = e2["ratio"]
    d_ratio = float(torch.minimum((ratio - 0.8).abs(), (ratio - 1.2).abs())[~pm].min())
    lo, hi = e2["mb_values"] - PPO["cliprange_value"], e2["mb_values"] + PPO["cliprange_value"]
    d_v = float(torch.minimum((e2["vpred"] - lo).abs(), (e2["vpred"] - hi).abs())[~pm1].min())
    d_vl = float((e2["vf_losses2"] - e2["vf_losses1"]).abs()[~pm1 & (e2["vf_losses2"] != e2["vf_losses1"])].min()) \
        if bool((e2["vf_losses2"] != e2["vf_losses1"])[~pm1].any()) else math.inf
    adv_min = float(e2["mb_advantage"].abs()[~pm].min())
    if min(d_ratio, d_v, d_vl) < 1e-3 or adv_min < 1e-3:
        return f"edge distances ratio {d_ratio:.2e} v {d_v:.2e} vl {d_vl:.2e} |A| {adv_min:.2e}"
    pg_cf, vf_cf = float(e2["pg_clipfrac"]), float(e2["vf_clipfrac"])
    if not (0 < pg_cf < 1) or not (0 < vf_cf < 1):
        return f"clip fractions pg {pg_cf:.3f} vf {vf_cf:.3f}"
    cap["margins"] = margins
    cap["edges"] = {"min_ratio_distance_to_clip_edge": d_ratio, "min_vpred_distance_to_value_clip_edge": d_v,
                    "min_abs_vf_losses2_minus_vf_losses1": d_vl, "min_abs_advantage": adv_min}
    return None


# --------------------------------------------------------------------------------------------------------------
# independent checks (own code, from the saved checkpoints)


def own_logprobs(model, qr, ctx, responses, temperature):
    ids, am, pos = trl_inputs(qr)
    out = model(input_ids=ids, attention_mask=am, position_ids=pos, use_cache=False)
    lg = out.logits[:, ctx - 1: -1].float() / (temperature + 1e-7)
    return torch.log_softmax(lg, -1).gather(-1, responses[..., None]).squeeze(-1), lg


def own_values(model, qr):
    ids, am, pos = trl_inputs(qr)
    h = model.model(input_ids=ids, attention_mask=am, position_ids=pos, use_cache=False).last_hidden_state
    return (h @ model.score.weight.T).squeeze(-1)


def own_rollout_math(r, kl_estimator):
    """float64 rewards / GAE / returns / whitening from TRL's captured logprobs, values and scores."""
    lp, rlp, v = r["logprobs"].double(), r["ref_logprobs"].double(), r["values"].double()
    s = r["scores"].double()
    B, R = lp.shape
    sl = r["sequence_lengths"]
    idx = torch.arange(R)[None]
    pm = idx > sl[:, None]  # padding_mask
    pm1 = idx > (sl + 1)[:, None]  # padding_mask_p1
    logr = rlp - lp
    kl = -logr if kl_estimator == "k1" else logr.exp() - 1 - logr
    rew = -PPO["kl_coef"] * kl
    end = torch.where(sl + 1 < R, sl + 1, sl)
    rew[torch.arange(B), end] += s
    adv = torch.zeros(B, R, dtype=torch.float64)
    last = torch.zeros(B, dtype=torch.float64)
    for t in reversed(range(R)):
        nv = v[:, t + 1] if t < R - 1 else 0.0
        delta = rew[:, t] + PPO["gamma"] * nv - v[:, t]
        last = delta + PPO["gamma"] * PPO["lam"] * last
        adv[:, t] = last
    ret = adv + v
    m = (~pm).double()
    mean = (adv * m).sum() / m.sum()
    var = (((adv - mean) ** 2) * m).sum() / m.sum() * (m.sum() / (m.sum() - 1))
    wadv = ((adv - mean) / torch.sqrt(var + 1e-8)).masked_fill(pm, 0)
    return dict(kl=kl, rewards=rew, advantages=wadv, returns=ret, padding_mask=pm, padding_mask_p1=pm1, end=end,
                adv_mean=float(mean), adv_var=float(var))


def mmean(x, m):
    return (x * m).sum() / m.sum()


def own_epoch_loss(d: Path, r, e):
    """PPO loss of one minibatch from the saved epoch weights (own code) -> (models, terms)."""
    pol = mg.load(d / "policy_epoch2", Qwen3MoeForCausalLM).train()
    val = mg.load(d / "value_epoch2", Qwen3MoeForSequenceClassification).train()
    inds = e["micro_batch_inds"]
    qr, ctx = r["query_responses"][inds], r["context_length"]
    resp = r["responses"][inds]
    pm = r["padding_mask"][inds]
    pm1 = r["padding_mask_p1"][inds]
    lp, lg = own_logprobs(pol, qr, ctx, resp, PPO["temperature"])
    lp = lp.masked_fill(pm, INVALID_LOGPROB)
    vpred = own_values(val, qr)[:, ctx - 1: -1].masked_fill(pm1, 0)
    oldv, ret, adv, oldlp = r["values"][inds], r["returns"][inds], r["advantages"][inds], r["logprobs"][inds]
    vclip = torch.maximum(torch.minimum(vpred, oldv + PPO["cliprange_value"]), oldv - PPO["cliprange_value"])
    vl1, vl2 = (vpred - ret) ** 2, (vclip - ret) ** 2
    vf_loss = 0.5 * mmean(torch.maximum(vl1, vl2), (~pm1).float())
    ratio = torch.exp(lp - oldlp)
    p1 = -adv * ratio
    p2 = -adv * ratio.clamp(1 - PPO["cliprange"], 1 + PPO["cliprange"])
    pg_loss = mmean(torch.maximum(p1, p2), (~pm).float())
    loss = pg_loss + PPO["vf_coef"] * vf_loss
    loss.backward()
    with torch.no_grad():
        ent = torch.logsumexp(lg, -1) - (torch.softmax(lg, -1) * lg).sum(-1)
    return pol, val, dict(loss=loss, pg_loss=pg_loss, vf_loss=vf_loss, ratio=ratio.detach(), vpred=vpred.detach(),
                          new_logprobs=lp.detach(), entropy=ent,
                          vf_clipfrac=mmean((vl2 > vl1).float(), (~pm1).float()),
                          pg_clipfrac=mmean((p2 > p1).float(), (~pm).float()),
                          approxkl=0.5 * ((lp.detach() - oldlp) ** 2).mean())


# --------------------------------------------------------------------------------------------------------------


def fresh_dir(d: Path):
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def save_grads(named_by_prefix: dict[str, dict[str, torch.Tensor]], path: Path, saved_names):
    out = {}
    for prefix, named in named_by_prefix.items():
        g = mg.to_saved_layout({n: (t if t is not None else torch.zeros(1)) for n, t in named.items()}, False)
        assert set(g) == set(saved_names[prefix]), prefix
        for k, v in g.items():
            assert v.dtype == torch.float32 and torch.isfinite(v).all(), (prefix, k)
            out[f"{prefix}.{k}"] = v
    save_file(out, path, metadata={"format": "pt"})
    return out


def grad_norm(ts):
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in ts))


def reorder(t, inds):
    """minibatch-order rows -> batch-order rows (row j of the minibatch is batch row inds[j])."""
    out = torch.empty_like(t)
    out[torch.tensor(inds)] = t
    return out


def maxdiff(a, b, mask=None):
    d = (a.double() - b.double()).abs()
    if mask is not None:
        d = d[mask]
    return float(d.max()) if d.numel() else 0.0


WHAT = {
    "shapes": "B = 3 rollout rows (TRL's dataloader order, see dataset_queries/queries), Q = context_length = 5 "
              "(queries left-padded to the longest), R = response_length = 7. Every [B][...] array is in that batch "
              "row order, also the per-token arrays of the optimisation step (TRL shuffles rows into minibatch "
              "order; they are put back here, and the permutation is in ppo_epochs[*].micro_batch_inds).",
    "queries": "[B][Q] left-padded prompt ids (pad 0) as TRL's DataCollatorWithPadding (tokenizer padding_side left) "
               "builds them; the model input is attention_mask = ids != pad, position_ids = cumsum(mask) - mask "
               "(0 for left pads, 0.. for real tokens, and a right pad at index j gets the count of real tokens "
               "before it), input_ids with pads set to 0 (TRL's forward/get_reward).",
    "query_responses": "[B][Q+R] queries ++ the raw sampled responses (before truncation). generate() stops a row at "
                       "the stop token (TRL copies stop_token_id into generation_config.eos_token_id) and fills the "
                       "rest with pad 0, so here raw == postprocessed; this is the tensor every training forward "
                       "(policy, value) runs on, and the one the value model is evaluated on in the rollout.",
    "responses": "[B][R] query_responses[:, Q:]; the targets of logprobs / new_logprobs.",
    "postprocessed_responses": "[B][R] responses with every position AFTER the first stop token set to pad (the stop "
                               "token itself is kept). The reward model scores queries ++ postprocessed_responses.",
    "sequence_lengths": "[B] first index of pad in postprocessed_responses minus 1 = index of the last real response "
                        "token (the stop token when there is one); R-1 when the row has no pad. (A row whose first "
                        "response token were the pad id would get -1; excluded here.)",
    "sequence_lengths_p1": "[B] sequence_lengths + 1",
    "padding_mask": "[B][R] 1 where response index t > sequence_lengths (after the stop token). ~padding_mask = the "
                    "policy-loss tokens (t <= sequence_length, the stop token included).",
    "padding_mask_p1": "[B][R] 1 where t > sequence_lengths + 1. ~padding_mask_p1 = the value-loss tokens: one MORE "
                       "position than the policy tokens (t <= sequence_length + 1, when that exists).",
    "contain_eos_token": "[B] any(postprocessed_responses == eos_token_id)",
    "logprobs": "[B][R] rollout log-probs of responses[t] from generate()'s processed scores = "
                "log_softmax(policy_logits / (temperature + 1e-7)) at position Q-1+t (KV-cached decoding); "
                "INVALID_LOGPROB = 1.0 where padding_mask.",
    "ref_logprobs": "[B][R] same from the reference model (one full forward on query_responses, logits[:, Q-1:-1] / "
                    "(temperature + 1e-7)); 1.0 where padding_mask.",
    "values": "[B][R] value model on query_responses: score.weight . h where h = final (post-norm) hidden state of "
              "the backbone at sequence position Q-1+t (i.e. the value of the state BEFORE response token t; t = 0 "
              "is the last query token); set to 0 where padding_mask_p1 (so the position of the stop token, "
              "t = sequence_length+1, keeps its value).",
    "scores_before_penalty": "[B] reward model on queries ++ postprocessed_responses: score.weight . h at sequence "
                             "index Q + sequence_lengths (the last real token, the stop token if any).",
    "scores": "[B] scores_before_penalty - missing_eos_penalty for rows with contain_eos_token false.",
    "kl": "[B][R] k1: -(ref_logprobs - logprobs) = logprobs - ref_logprobs (0 at padding: both are 1.0 there)",
    "non_score_reward": "[B][R] -kl_coef * kl",
    "rewards": "[B][R] non_score_reward, plus scores[b] added at index actual_end[b]",
    "actual_end": "[B] sequence_lengths_p1 if < R else sequence_lengths: the score goes ONE PAST the stop token "
                  "(a padding position, outside the policy mask but inside the value mask) when there is room, "
                  "else on the last token.",
    "advantages": "[B][R] GAE over all R positions (no mask inside the recursion; t = R-1 uses next value 0): "
                  "delta_t = rewards_t + gamma*values_{t+1} - values_t, A_t = delta_t + gamma*lam*A_{t+1}; then "
                  "whitened with masked_whiten(A, ~padding_mask): mean and UNBIASED variance (n/(n-1)) over the "
                  "policy tokens of the whole batch, (A - mean) * rsqrt(var + 1e-8) (shift_mean=True), then 0 "
                  "where padding_mask.",
    "advantages_raw": "[B][R] returns - values (the GAE advantages before whitening; derived, not a TRL tensor).",
    "returns": "[B][R] GAE advantages (before whitening) + values, all positions (only ~padding_mask_p1 is used).",
    "k3": "the same rollout with kl_estimator='k3' (second TRL run, same seed: identical samples, logprobs, values, "
          "scores): kl = (exp(logr) - 1) - logr with logr = ref_logprobs - logprobs, and the rewards / advantages / "
          "returns that follow.",
    "ppo_epochs": "per PPO epoch (one minibatch of all B rows, one micro batch, gradient_accumulation 1): the "
                  "numpy permutation b_inds / micro_batch_inds TRL drew, TRL's pg_loss, vf_loss, loss = pg_loss + "
                  "vf_coef*vf_loss, pg_clipfrac, vf_clipfrac, approxkl, entropy_mean. Epoch 0 runs on the initial "
                  "weights (ratio = 1 up to KV-cache float noise); optimizer.step() follows each backward.",
    "step": "the captured optimisation step = the first (only) minibatch of the SECOND epoch, on the weights in "
            "policy_epoch2/ and value_epoch2/ (after the epoch-0 AdamW step). Per-token [B][R] arrays in batch row "
            "order: logits_t = policy_logits(Q-1+t) / (temperature + 1e-7); new_logprobs = log_softmax(logits_t)"
            "[responses[t]], 1.0 where padding_mask; ratio = exp(new_logprobs - logprobs); pg_losses = -A*ratio; "
            "pg_losses2 = -A*clamp(ratio, 1-cliprange, 1+cliprange); pg_loss = masked_mean(max(pg_losses, "
            "pg_losses2), ~padding_mask) (sum over all rows' policy tokens / their count); vpred = value at Q-1+t, 0 "
            "where padding_mask_p1; vpredclipped = clamp(vpred, values-cliprange_value, values+cliprange_value); "
            "vf_losses1 = (vpred-returns)^2, vf_losses2 = (vpredclipped-returns)^2; vf_loss = 0.5 * masked_mean("
            "max(vf_losses1, vf_losses2), ~padding_mask_p1); loss = pg_loss + vf_coef * vf_loss (no MoE aux loss). "
            "pg_clipfrac = masked_mean(pg_losses2 > pg_losses, ~padding_mask); vf_clipfrac = masked_mean(vf_losses2 "
            "> vf_losses1, ~padding_mask_p1); approxkl = 0.5 * mean((new_logprobs - logprobs)^2) over ALL B*R "
            "entries (pads contribute 0 but count); entropy [B][R] = logsumexp(logits_t) - sum softmax*logits_t at "
            "ALL positions incl. padding ones (logits of the pad-token inputs), entropy_mean = its plain mean.",
    "grads": "grads.safetensors: d(step.loss)/d(param) for every policy (prefix 'policy.') and value-model (prefix "
             "'value.') tensor under save_pretrained's names (experts split per expert), read at TRL's "
             "optimizer.step() line: after accelerator.backward(loss), before the AdamW step. TRL's PPO loop never "
             "clips gradients (max_grad_norm is ignored), so these are also what the optimizer consumed.",
}


def main(argv):
    verbose = "--verbose" in argv
    states, wseeds = build_models()
    print("weight seeds", wseeds, flush=True)
    cap = None
    for seed in range(TRL_SEED0, TRL_SEED0 + MAX_TRIES):
        c = run_trl(states, seed)
        why = check_run(c, states)
        if verbose or why is None:
            print(f"trl seed {seed}: {why or 'ok'}", flush=True)
        if why is None:
            cap = c
            break
    if cap is None:
        raise RuntimeError("no TRL seed satisfied the fixture conditions")
    r = cap["rollout"]
    cap_k3 = run_trl(states, seed, kl_estimator="k3")
    for n in ("queries", "query_responses", "postprocessed_responses", "logprobs", "ref_logprobs", "values", "scores"):
        assert torch.equal(r[n], cap_k3["rollout"][n]), n
    again = run_trl(states, seed)  # determinism: the same seed reproduces TRL's run bit for bit
    e2 = next(e for e in cap["epochs"] if e["epoch"] == CAPTURE_EPOCH)
    e2a = next(e for e in again["epochs"] if e["epoch"] == CAPTURE_EPOCH)
    for n in ("query_responses", "advantages", "returns"):
        assert torch.equal(again["rollout"][n], r[n]), n
    assert torch.equal(e2a["loss"], e2["loss"])
    assert len(cap["epochs"]) == PPO["num_ppo_epochs"]
    args = cap["args"]
    # generate() itself stops a row at the stop token and pads it with 0, so TRL's truncation is a no-op here
    assert torch.equal(r["responses"], r["postprocessed_responses"])

    # ---- write the checkpoints and grads
    d = fresh_dir(OUT)
    pol, ref, rew, val = instantiate(states)
    saved = {"policy": save_model(pol, d / "policy")}
    save_model(ref, d / "reference")
    save_model(rew, d / "reward")
    saved["value"] = save_model(val, d / "value")
    load_state(pol, e2["policy_weights"])
    save_model(pol, d / "policy_epoch2")
    load_state(val, e2["value_weights"])
    save_model(val, d / "value_epoch2")
    grads = save_grads({"policy": e2["policy_grads"], "value": e2["value_grads"]}, d / "grads.safetensors", saved)
    assert float(grads["policy.model.embed_tokens.weight"][PAD].abs().max()) == 0.0

    # ---- independent checks from the saved files
    ctx, qr, resp, post = r["context_length"], r["query_responses"], r["responses"], r["postprocessed_responses"]
    pm, pm1, sl = r["padding_mask"], r["padding_mask_p1"], r["sequence_lengths"]
    B = resp.shape[0]
    chk = {}
    with torch.no_grad():
        P = mg.load(d / "policy", Qwen3MoeForCausalLM)
        Rf = mg.load(d / "reference", Qwen3MoeForCausalLM)
        Rw = mg.load(d / "reward", Qwen3MoeForSequenceClassification)
        V = mg.load(d / "value", Qwen3MoeForSequenceClassification)
        lp, _ = own_logprobs(P, qr, ctx, resp, PPO["temperature"])
        rlp, _ = own_logprobs(Rf, qr, ctx, resp, PPO["temperature"])
        chk["logprobs"] = maxdiff(lp, r["logprobs"], ~pm)
        chk["ref_logprobs"] = maxdiff(rlp, r["ref_logprobs"], ~pm)
        assert torch.all(r["logprobs"][pm] == INVALID_LOGPROB) and torch.all(r["ref_logprobs"][pm] == INVALID_LOGPROB)
        v = own_values(V, qr)[:, ctx - 1: -1]
        chk["values"] = maxdiff(v, r["values"], ~pm1)
        assert torch.all(r["values"][pm1] == 0)
        pq = torch.cat([r["queries"], post], 1)
        sc = own_values(Rw, pq)[torch.arange(B), ctx + sl]
        chk["scores"] = maxdiff(sc, cap["scores_before_penalty"])
        pen = torch.where(r["contain_eos_token"], 0.0, PPO["missing_eos_penalty"])
        chk["scores_penalty"] = maxdiff(cap["scores_before_penalty"] - pen, r["scores"])
        # TRL's epoch-0 training forward (initial weights, full forward) vs the rollout (generation) log-probs
        e1 = next(e for e in cap["epochs"] if e["epoch"] == 0)
        chk["epoch0_new_logprobs_vs_rollout"] = maxdiff(reorder(e1["new_logprobs"], e1["micro_batch_inds"]),
                                                        r["logprobs"], ~pm)
        for est, cc in (("k1", cap), ("k3", cap_k3)):
            o = own_rollout_math(cc["rollout"], est)
            rr = cc["rollout"]
            assert torch.equal(o["padding_mask"], pm) and torch.equal(o["padding_mask_p1"], pm1)
            assert torch.equal(o["end"], rr["actual_end"])
            chk[f"{est}_kl"] = maxdiff(o["kl"], rr["kl"])
            chk[f"{est}_rewards"] = maxdiff(o["rewards"], rr["rewards"])
            chk[f"{est}_advantages"] = maxdiff(o["advantages"], rr["advantages"])
            chk[f"{est}_returns"] = maxdiff(o["returns"], rr["returns"])
    Pe, Ve, t = own_epoch_loss(d, r, e2)
    inds = e2["micro_batch_inds"]
    chk["step_loss"] = abs(float(t["loss"]) - float(e2["loss"]))
    chk["step_pg_loss"] = abs(float(t["pg_loss"]) - float(e2["pg_loss"]))
    chk["step_vf_loss"] = abs(float(t["vf_loss"]) - float(e2["vf_loss"]))
    chk["step_ratio"] = maxdiff(t["ratio"], e2["ratio"])
    chk["step_vpred"] = maxdiff(t["vpred"], e2["vpred"])
    chk["step_entropy_all_positions"] = maxdiff(t["entropy"], e2["entropy"])
    chk["step_approxkl"] = abs(float(t["approxkl"]) - float(e2["approxkl"]))
    assert float(t["pg_clipfrac"]) == float(e2["pg_clipfrac"]) and float(t["vf_clipfrac"]) == float(e2["vf_clipfrac"])
    own_grads = {"policy": mg.to_saved_layout({n: p.grad for n, p in Pe.named_parameters()}, False),
                 "value": mg.to_saved_layout({n: p.grad for n, p in Ve.named_parameters()}, False)}
    chk["step_grads"] = max(maxdiff(own_grads[k.split(".", 1)[0]][k.split(".", 1)[1]], g) for k, g in grads.items())
    print("independent check:", json.dumps(chk), flush=True)
    for k, lim in (("logprobs", 1e-5), ("ref_logprobs", 1e-5), ("values", 1e-5), ("scores", 1e-5),
                   ("scores_penalty", 1e-6), ("epoch0_new_logprobs_vs_rollout", 1e-5), ("k1_rewards", 1e-5),
                   ("k1_advantages", 1e-5), ("k1_returns", 1e-5), ("k3_rewards", 1e-5), ("k3_advantages", 1e-5),
                   ("k3_returns", 1e-5), ("k1_kl", 1e-5), ("k3_kl", 1e-5), ("step_loss", 2e-6),
                   ("step_pg_loss", 2e-6), ("step_vf_loss", 2e-6), ("step_ratio", 1e-5), ("step_vpred", 1e-5),
                   ("step_entropy_all_positions", 1e-4), ("step_approxkl", 1e-5), ("step_grads", 1e-5)):
        assert chk[k] < lim, (k, chk[k])

    # ---- expected.json
    def bo(x):
        return x.int().tolist()

    ep = []
    for e in cap["epochs"]:
        ep.append({
            "epoch": e["epoch"], "b_inds": e["b_inds"], "micro_batch_inds": e["micro_batch_inds"],
            "pg_loss": float(e["pg_loss"]), "vf_loss": float(e["vf_loss"]), "loss": float(e["loss"]),
            "pg_clipfrac": float(e["pg_clipfrac"]), "vf_clipfrac": float(e["vf_clipfrac"]),
            "approxkl": float(e["approxkl"]), "entropy_mean": float(e["entropy"].mean()),
            "ratio_mean": float(e["ratio"].mean()),
        })
    step = {
        "epoch": CAPTURE_EPOCH, "minibatch": 0, "micro_batch_inds": inds,
        "weights": "policy_epoch2/ and value_epoch2/",
        **{n: fl(reorder(e2[n], inds)) for n in ("new_logprobs", "ratio", "pg_losses", "pg_losses2", "vpred",
                                                "vpredclipped", "vf_losses1", "vf_losses2", "entropy")},
        "pg_loss": float(e2["pg_loss"]), "vf_loss": float(e2["vf_loss"]), "loss": float(e2["loss"]),
        "pg_clipfrac": float(e2["pg_clipfrac"]), "vf_clipfrac": float(e2["vf_clipfrac"]),
        "approxkl": float(e2["approxkl"]), "entropy_mean": float(e2["entropy"].mean()),
        "entropy_mean_over_policy_tokens": float((reorder(e2["entropy"], inds)[~pm]).mean()),
        "grad_norm_policy": grad_norm(v for k, v in grads.items() if k.startswith("policy.")),
        "grad_norm_value": grad_norm(v for k, v in grads.items() if k.startswith("value.")),
        "grad_norm_total": grad_norm(grads.values()),
    }
    k3 = cap_k3["rollout"]
    expected = {
        "case": "ppo",
        "what": WHAT,
        "trl": TRL_PPO_VERSION,
        "trl_module": "trl.experimental.ppo (PPOTrainer.train, one outer step)",
        "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS, "stop_token_id": PPO["stop_token_id"],
        "config": {
            **{k: v for k, v in PPO.items()},
            "temperature_divisor": PPO["temperature"] + 1e-7,
            "INVALID_LOGPROB": INVALID_LOGPROB,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "local_batch_size": args.local_batch_size, "local_mini_batch_size": args.local_mini_batch_size,
            "total_episodes": args.total_episodes, "num_total_batches": args.num_total_batches,
            "max_grad_norm_ignored_by_ppo": args.max_grad_norm,
            "whiten_advantages": "always (masked_whiten over ~padding_mask, shift_mean=True, unbiased var, eps 1e-8)",
            "generation": {"max_new_tokens": PPO["response_length"], "temperature": PPO["temperature"] + 1e-7,
                           "top_k": 0, "top_p": 1.0, "do_sample": True, "eos_token_id": cap["generation_eos"]},
            "optimizer": cap["optimizer"],
            "optimizer_param_groups": cap["optimizer_groups"],
            "lr_scheduler": f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)} (stepped after "
                            "the outer step: the lr is constant within it)",
            "seed": seed,
        },
        "aux_loss_included": False,
        "aux_loss_note": "PPO calls the policy/value with a plain forward (no labels, no output_router_logits): "
                         "no MoE load-balancing loss enters the PPO loss. The configs have output_router_logits="
                         "false; with true, transformers 5.23's generate() crashes in load_balancing_loss_func "
                         "(KV-cache step vs full attention mask), so PPO could not even sample.",
        "dataset_queries": queries(),
        "queries": r["queries"].tolist(),
        "context_length": ctx,
        "query_responses": qr.tolist(),
        "responses": resp.tolist(),
        "postprocessed_responses": post.tolist(),
        "sequence_lengths": sl.tolist(),
        "sequence_lengths_p1": r["sequence_lengths_p1"].tolist(),
        "contain_eos_token": bo(r["contain_eos_token"]),
        "padding_mask": bo(pm),
        "padding_mask_p1": bo(pm1),
        "logprobs": fl(r["logprobs"]),
        "ref_logprobs": fl(r["ref_logprobs"]),
        "values": fl(r["values"]),
        "scores_before_penalty": fl(cap["scores_before_penalty"]),
        "scores": fl(r["scores"]),
        "kl": fl(r["kl"]),
        "non_score_reward": fl(r["non_score_reward"]),
        "actual_end": r["actual_end"].tolist(),
        "rewards": fl(r["rewards"]),
        "advantages": fl(r["advantages"]),
        "advantages_raw": fl(r["returns"] - r["values"]),
        "returns": fl(r["returns"]),
        "k3": {n: fl(k3[n]) for n in ("kl", "non_score_reward", "rewards", "advantages", "returns")},
        "ppo_epochs": ep,
        "step": step,
        "trl_metrics": {k: v for k, v in cap["metrics"].items() if k != "eps"},  # eps = episodes/s (timing)
        "router_margin": cap["margins"],
        "clip_edge_distances": cap["edges"],
        "weight_seeds": wseeds,
        "ref_noise_std": REF_NOISE,
        "value_noise_std": VALUE_NOISE,
        "independent_check": chk,
        "torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__,
        "attn_implementation": "eager", "experts_implementation": "eager", "dtype": "float32",
    }
    (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for f in d.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    print(f"trl seed {seed}, sequence_lengths {sl.tolist()}, contain_eos {r['contain_eos_token'].tolist()}, "
          f"step loss {float(e2['loss']):.6f} pg_clipfrac {float(e2['pg_clipfrac']):.3f} "
          f"vf_clipfrac {float(e2['vf_clipfrac']):.3f}", flush=True)
    for f in sorted(d.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(d)}  {f.stat().st_size}")
    print(f"total {mg.dir_bytes(d)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
