#!/usr/bin/env python3
"""Generate the post-training (TRL) loss + gradient fixtures for swift-moe.

Run with the peers venv (torch, transformers, trl):

    ~/.cache/moe-peers/bin/python scripts/make_posttrain_fixtures.py [case ...]

Cases (Tests/Fixtures/posttraining/<case>/, see the README.md there):
  * `dpo`:    DPOTrainer (sigmoid loss, beta 0.1) on 2 preference pairs, policy vs frozen reference checkpoint;
  * `reward`: RewardTrainer (Bradley-Terry) on a Qwen3MoeForSequenceClassification (num_labels 1) for 2 pairs;
  * `grpo`:   GRPOTrainer loss (default loss_type "dapo", beta 0.04, epsilon 0.2, G = 4 completions for 1 prompt,
              old log-probs from a perturbed copy of the policy as with num_iterations = 2).

The losses are TRL's own: a real trainer object is built (CPU, float32, bf16 off) and its `compute_loss` /
`_compute_loss` is called on a batch made by TRL's own collator (DPO, reward) or laid out exactly as
`GRPOTrainer._generate_and_score_completions` lays it out (GRPO). The only lines copied from TRL are GRPO's
group-normalised advantages (they sit in the middle of the generation method; `nanstd` itself is TRL's).
Every loss, log-prob and gradient is then recomputed here independently from the plain HF forward (logits ->
log_softmax, own masked load-balancing loss) and must agree.

Model: the tiny Qwen3-MoE of scripts/make_grad_fixtures.py (vocab 64, hidden 32, 2 layers, 4 heads / 2 KV,
head_dim 8, 8 experts top-2, width 16, norm_topk_prob, output_router_logits, router_aux_loss_coef 0.02,
weights 0.2*randn, norms 1+0.1*randn), float32, eager attention, eager experts, 1 thread, deterministic.
Seeds are looped until every router top-k choice of every attended token (every model that is evaluated, every
input) has a probability margin >= 1e-3. Gradients are written under save_pretrained's names with the fused
experts split per expert by make_grad_fixtures.to_saved_layout.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_grad_fixtures as mg  # noqa: E402  (sets 1 thread + deterministic algorithms)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

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
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, RewardConfig, RewardTrainer  # noqa: E402
from trl.trainer.utils import nanstd  # noqa: E402

datasets.disable_progress_bars()
transformers.logging.set_verbosity_error()

ROOT = mg.ROOT
OUT = ROOT / "Tests" / "Fixtures" / "posttraining"

MARGIN = mg.MARGIN
AUX_COEF = mg.AUX_COEF
PAD, BOS, EOS = 0, 1, 2
CONFIG = dict(mg.QWEN3_MOE, norm_topk_prob=True)  # pad_token_id None at construction (TRL sets it afterwards)
E, K = CONFIG["num_experts"], CONFIG["num_experts_per_tok"]

BASE_SEED = 21000  # causal-LM base (reference) model shared by dpo and grpo
REWARD_SEED = 22000
POLICY_NOISE = 0.02  # policy = reference + 0.02*randn on every tensor
OLD_NOISE = 0.01  # grpo: old policy = policy + 0.01*randn on every tensor

DPO_BETA = 0.1
GRPO = dict(beta=0.04, epsilon=0.2, num_generations=4, num_iterations=2, rewards=[1.0, 0.0, 0.5, 0.0])


# --------------------------------------------------------------------------------------------------------------
# inputs (token ids; 0 = pad, 1 = bos, 2 = eos; content tokens drawn from 3..63)


def _toks(gen, n):
    return [int(t) for t in torch.randint(3, CONFIG["vocab_size"], (n,), generator=gen)]


def dpo_examples():
    g = torch.Generator().manual_seed(5151)
    # TRL appends EOS to (non-conversational) chosen / rejected texts, so the completions end with EOS here too.
    return [
        {"prompt_ids": [BOS] + _toks(g, 4), "chosen_ids": _toks(g, 3) + [EOS], "rejected_ids": _toks(g, 1) + [EOS]},
        {"prompt_ids": [BOS] + _toks(g, 2), "chosen_ids": _toks(g, 1) + [EOS], "rejected_ids": _toks(g, 5) + [EOS]},
    ]


def reward_examples():
    g = torch.Generator().manual_seed(6161)
    # RewardTrainer examples are whole sequences (prompt + completion, EOS appended by TRL's tokenisation)
    return [
        {"chosen_ids": [BOS] + _toks(g, 6) + [EOS], "rejected_ids": [BOS] + _toks(g, 3) + [EOS]},
        {"chosen_ids": [BOS] + _toks(g, 2) + [EOS], "rejected_ids": [BOS] + _toks(g, 8) + [EOS]},
    ]


def grpo_rollout():
    g = torch.Generator().manual_seed(7171)
    prompt = [BOS] + _toks(g, 4)
    # completions of different lengths; #2 ends without EOS (truncated at max_completion_length; the default
    # mask_truncated_completions=False keeps it in the loss)
    completions = [_toks(g, 5) + [EOS], _toks(g, 2) + [EOS], _toks(g, 6), _toks(g, 3) + [EOS]]
    return prompt, completions


# --------------------------------------------------------------------------------------------------------------
# helpers


def make_tokenizer():
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{f"t{i}": i for i in range(3, CONFIG["vocab_size"])}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def new_config(**over):
    return Qwen3MoeConfig(**json.loads(json.dumps(dict(CONFIG, **over))))


def perturb(model, gen, std):
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))


def copy_weights(dst, src):
    with torch.no_grad():
        sd = dict(src.named_parameters())
        for n, p in dst.named_parameters():
            p.copy_(sd[n])


def router_margin_masked(model, input_ids, attention_mask):
    """min over MoE layers and attended tokens of p_k - p_(k+1) (plain forward)."""
    with torch.no_grad():
        out = model.model(input_ids=input_ids, attention_mask=attention_mask, output_router_logits=True,
                          use_cache=False)
    keep = attention_mask.reshape(-1).bool()
    m = math.inf
    for lg in out.router_logits:
        s = torch.softmax(lg[keep].float(), -1).sort(-1, descending=True).values
        m = min(m, float((s[:, K - 1] - s[:, K]).min()))
    return m


def aux_masked_ref(router_logits, attention_mask):
    """Independent load-balancing loss over attended tokens only, all MoE layers pooled:
    f_e = (#top-k picks of e over layers x attended tokens) / (layers * attended tokens), P_e = mean prob over the
    same rows, aux = E * sum_e f_e P_e."""
    keep = attention_mask.reshape(-1).bool()
    cat = torch.cat([lg[keep] for lg in router_logits], 0).float()
    probs = torch.softmax(cat, -1)
    sel = probs.topk(K, -1).indices
    f = F.one_hot(sel, E).sum((0, 1)).float() / cat.shape[0]
    return E * (f * probs.mean(0)).sum()


def plain_token_logps(model, input_ids, attention_mask):
    """HF's own forward (no fused head): logits[:, :-1] scored at input_ids[:, 1:], log_softmax in float32."""
    out = type(model).forward(model, input_ids=input_ids, attention_mask=attention_mask, output_router_logits=True,
                              use_cache=False)
    lp = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return lp, out


def save_model(model, d: Path):
    model.save_pretrained(d, safe_serialization=True)
    (d / "generation_config.json").unlink(missing_ok=True)
    saved = load_file(d / "model.safetensors")
    weights = mg.to_saved_layout(dict(model.named_parameters()), False)
    assert set(weights) == set(saved)
    for k, v in saved.items():
        assert v.dtype == torch.float32 and torch.equal(v, weights[k]), k
    return saved


def save_grads(model, d: Path, saved_names) -> dict[str, torch.Tensor]:
    named = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
    grads = mg.to_saved_layout(named, False)
    assert set(grads) == set(saved_names)
    for k, g in grads.items():
        assert torch.isfinite(g).all(), k
    # the pad token (id 0) only ever appears as padding: its embedding row gets no gradient
    assert float(grads["model.embed_tokens.weight"][PAD].abs().max()) == 0.0
    save_file(grads, d / "grads.safetensors", metadata={"format": "pt"})
    return grads


def grad_diff(model_a, model_b) -> float:
    gb = dict(model_b.named_parameters())
    m = 0.0
    for n, p in model_a.named_parameters():
        a = p.grad if p.grad is not None else torch.zeros_like(p)
        b = gb[n].grad if gb[n].grad is not None else torch.zeros_like(p)
        m = max(m, float((a - b).abs().max()))
    return m


def grad_norm(grads):
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))


def fl(t):
    """float32 tensor -> nested lists of exact float values."""
    return t.detach().float().tolist()


def finish(d: Path, expected: dict):
    expected.update(torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__,
                    attn_implementation="eager", experts_implementation="eager", dtype="float32")
    (d / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for f in d.rglob("*"):
        if f.is_file():
            f.chmod(0o644)


def common_args(tmp):
    return dict(output_dir=str(tmp), use_cpu=True, bf16=False, fp16=False, report_to="none", seed=0,
                gradient_checkpointing=False, save_strategy="no", logging_strategy="no", dataloader_num_workers=0)


def fresh_dir(name):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


# --------------------------------------------------------------------------------------------------------------
# base causal-LM models (shared by dpo and grpo): reference R, policy P = R + noise, old O = P + noise


def lm_inputs_for_margins():
    tok_pad = PAD
    batches = []
    ex = dpo_examples()
    seqs = [e["prompt_ids"] + e["chosen_ids"] for e in ex] + [e["prompt_ids"] + e["rejected_ids"] for e in ex]
    prompt, comps = grpo_rollout()
    seqs += [prompt + c for c in comps]
    L = max(map(len, seqs))
    ids = torch.tensor([s + [tok_pad] * (L - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
    batches.append((ids, mask))
    return batches


def build_lm_models():
    batches = lm_inputs_for_margins()
    for seed in range(BASE_SEED, BASE_SEED + mg.MAX_SEED_TRIES):
        torch.manual_seed(seed)
        ref = Qwen3MoeForCausalLM(new_config()).eval()
        assert ref.config._experts_implementation == "eager" and ref.config._attn_implementation == "eager"
        mg.randomise(ref, torch.Generator().manual_seed(seed), CONFIG["initializer_range"])
        pol = Qwen3MoeForCausalLM(new_config()).eval()
        copy_weights(pol, ref)
        perturb(pol, torch.Generator().manual_seed(seed + 50_000), POLICY_NOISE)
        old = Qwen3MoeForCausalLM(new_config()).eval()
        copy_weights(old, pol)
        perturb(old, torch.Generator().manual_seed(seed + 60_000), OLD_NOISE)
        margins = {n: min(router_margin_masked(m, i, a) for i, a in batches)
                   for n, m in (("reference", ref), ("policy", pol), ("old", old))}
        if min(margins.values()) >= MARGIN:
            return seed, ref, pol, old, margins
    raise RuntimeError("no base seed with router margins >= 1e-3")


# --------------------------------------------------------------------------------------------------------------
# DPO


def build_dpo(seed, ref0, pol0, margins):
    d = fresh_dir("dpo")
    pol0.config.pad_token_id = PAD  # what DPOTrainer does to the model config
    ref0.config.pad_token_id = PAD
    saved = save_model(pol0, d / "policy")
    save_model(ref0, d / "reference")
    pol = mg.load(d / "policy", Qwen3MoeForCausalLM)
    ref = mg.load(d / "reference", Qwen3MoeForCausalLM)

    tok = make_tokenizer()
    ds = datasets.Dataset.from_dict({"prompt": ["t3 t4"], "chosen": [" t5"], "rejected": [" t6"]})
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(**common_args(tmp), beta=DPO_BETA, per_device_train_batch_size=2)
        tr = DPOTrainer(model=pol, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
        assert tr.loss_types == ["sigmoid"] and tr.beta == DPO_BETA and tr.aux_loss_enabled
        assert tr.router_aux_loss_coef == AUX_COEF and not tr.precompute_ref_logps and tr.ld_alpha is None
        assert args.label_smoothing == 0.0 and not args.use_weighting and args.f_divergence_type == "reverse_kl"
        examples = dpo_examples()
        batch = tr.data_collator(examples)
        tr.model.train()
        tr.model.zero_grad(set_to_none=True)
        loss = tr.compute_loss(tr.model, dict(batch))
        loss.backward()
        metrics = {k: v[-1] for k, v in tr._metrics["train"].items()}
        # TRL's per-token log-probs (fused LM head, exactly as _compute_loss gets them) for the record
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        with torch.no_grad():
            pol_tok = tr.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                               fused_lm_head=True, use_cache=False)
            ref_tok = tr.ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   labels=labels, fused_lm_head=True, use_cache=False)
    total = float(loss.detach())
    pol_lp_tok, ref_lp_tok = pol_tok.log_probs, ref_tok.log_probs
    pol_seq, ref_seq = pol_lp_tok.sum(1), ref_lp_tok.sum(1)
    aux = float(pol_tok.aux_loss)

    # ---- independent recomputation (plain forward, own formulas)
    chk = mg.load(d / "policy", Qwen3MoeForCausalLM).train()
    refm = mg.load(d / "reference", Qwen3MoeForCausalLM)
    ids, am, cm = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    smask = cm[:, 1:].float()
    lp, out = plain_token_logps(chk, ids, am)
    with torch.no_grad():
        rlp, _ = plain_token_logps(refm, ids, am)
    seq = (lp * smask).sum(1)
    rseq = (rlp * smask).sum(1)
    c, r = seq.chunk(2)
    rc, rr = rseq.chunk(2)
    per_pair = -F.logsigmoid(DPO_BETA * ((c - rc) - (r - rr)))
    aux_ind = aux_masked_ref(out.router_logits, am)
    loss_ind = per_pair.mean() + AUX_COEF * aux_ind
    loss_ind.backward()
    chk_loss = abs(float(loss_ind) - total)
    assert chk_loss < 2e-6, (float(loss_ind), total)
    assert abs(float(aux_ind) - aux) < 1e-6
    assert float((seq.detach() - pol_seq).abs().max()) < 2e-5 and float((rseq - ref_seq).abs().max()) < 2e-5
    assert float(((lp.detach() - pol_lp_tok) * smask).abs().max()) < 2e-6
    gd = grad_diff(tr.model, chk)
    assert gd < 1e-5, gd

    grads = save_grads(tr.model, d, saved)
    chosen_rewards = DPO_BETA * (pol_seq[:2] - ref_seq[:2])
    rejected_rewards = DPO_BETA * (pol_seq[2:] - ref_seq[2:])
    dpo_part = -F.logsigmoid(chosen_rewards - rejected_rewards)
    assert abs(float(dpo_part.mean() + AUX_COEF * aux) - total) < 2e-6
    assert abs(metrics["rewards/chosen"] - float(chosen_rewards.mean())) < 1e-6
    assert abs(metrics["aux_loss"] - aux) < 1e-7

    expected = {
        "case": "dpo",
        "what": "TRL DPOTrainer.compute_loss, loss_type ['sigmoid'], beta 0.1, reference = separate frozen model "
                "(reference/), policy = reference + 0.02*randn on every tensor (policy/), MoE aux loss added",
        "examples": examples,
        "input_ids": batch["input_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(),
        "completion_mask": batch["completion_mask"].tolist(),
        "row_order": "rows 0..1 = prompt+chosen of pairs 0..1, rows 2..3 = prompt+rejected of pairs 0..1",
        "pad_token_id": PAD,
        "beta": DPO_BETA,
        "policy_per_token_logps": fl(pol_lp_tok),
        "reference_per_token_logps": fl(ref_lp_tok),
        "per_token_logps_layout": "[4][L-1]: entry t = log p(input_ids[t+1] | input_ids[..t]), 0 where "
                                  "completion_mask[t+1] == 0",
        "policy_chosen_logps": fl(pol_seq[:2]),
        "policy_rejected_logps": fl(pol_seq[2:]),
        "reference_chosen_logps": fl(ref_seq[:2]),
        "reference_rejected_logps": fl(ref_seq[2:]),
        "chosen_rewards": fl(chosen_rewards),
        "rejected_rewards": fl(rejected_rewards),
        "per_pair_dpo_loss": fl(dpo_part),
        "dpo_loss": float(dpo_part.mean()),
        "aux_loss": aux,
        "router_aux_loss_coef": AUX_COEF,
        "loss": total,
        "trl_metrics": metrics,
        "grad_norm": grad_norm(grads),
        "router_margin": margins,
        "seed": seed,
        "policy_noise_std": POLICY_NOISE,
        "independent_check": {"abs_loss_diff": chk_loss, "max_abs_grad_diff": gd},
    }
    finish(d, expected)
    return dict(case="dpo", loss=total, aux=aux, bytes=mg.dir_bytes(d), grad_diff=gd, seed=seed)


# --------------------------------------------------------------------------------------------------------------
# reward model


def build_reward():
    examples = reward_examples()
    seqs = [e["chosen_ids"] for e in examples] + [e["rejected_ids"] for e in examples]
    L = max(map(len, seqs))
    ids = torch.tensor([s + [PAD] * (L - len(s)) for s in seqs])
    am = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
    for seed in range(REWARD_SEED, REWARD_SEED + mg.MAX_SEED_TRIES):
        torch.manual_seed(seed)
        model = Qwen3MoeForSequenceClassification(new_config(num_labels=1)).eval()
        mg.randomise(model, torch.Generator().manual_seed(seed), CONFIG["initializer_range"])
        margin = router_margin_masked(model, ids, am)
        if margin >= MARGIN:
            break
    else:
        raise RuntimeError("reward: no seed")
    model.config.pad_token_id = PAD  # what RewardTrainer does (sequence classification needs it)
    d = fresh_dir("reward")
    saved = save_model(model, d)
    model = mg.load(d, Qwen3MoeForSequenceClassification)

    tok = make_tokenizer()
    ds = datasets.Dataset.from_dict({"chosen_ids": [[3, 4]], "rejected_ids": [[5]]})
    with tempfile.TemporaryDirectory() as tmp:
        args = RewardConfig(**common_args(tmp), per_device_train_batch_size=2)
        assert args.center_rewards_coefficient is None
        tr = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        batch = tr.data_collator(examples)
        assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["attention_mask"], am)
        tr.model.train()
        tr.model.zero_grad(set_to_none=True)
        loss, outputs = tr.compute_loss(tr.model, dict(batch), return_outputs=True)
        loss.backward()
        metrics = {k: v[-1] for k, v in tr._metrics["train"].items()}
    total = float(loss.detach())
    rewards = outputs.logits.detach().squeeze(-1)
    rc, rr = rewards.chunk(2)

    # ---- independent: base model hidden states at the last attended token, times score.weight
    chk = mg.load(d, Qwen3MoeForSequenceClassification).train()
    h = chk.model(input_ids=ids, attention_mask=am, use_cache=False).last_hidden_state
    last = am.sum(1) - 1
    r_ind = (h[torch.arange(4), last] @ chk.score.weight.T).squeeze(-1)
    c, r = r_ind.chunk(2)
    loss_ind = -F.logsigmoid(c - r).mean()
    loss_ind.backward()
    chk_loss = abs(float(loss_ind) - total)
    assert chk_loss < 1e-6 and float((r_ind.detach() - rewards).abs().max()) < 1e-6
    gd = grad_diff(tr.model, chk)
    assert gd < 1e-5, gd
    grads = save_grads(tr.model, d, saved)
    assert "score.weight" in grads and grads["score.weight"].shape == (1, CONFIG["hidden_size"])

    expected = {
        "case": "reward",
        "what": "TRL RewardTrainer.compute_loss on Qwen3MoeForSequenceClassification (num_labels 1, no score bias): "
                "loss = mean_pairs -logsigmoid(r_chosen - r_rejected); center_rewards_coefficient None (default); "
                "no margin; no MoE aux loss (RewardTrainer never adds it)",
        "examples": examples,
        "input_ids": ids.tolist(),
        "attention_mask": am.tolist(),
        "row_order": "rows 0..1 = chosen of pairs 0..1, rows 2..3 = rejected of pairs 0..1",
        "pad_token_id": PAD,
        "scored_token_index": last.tolist(),
        "rewards_chosen": fl(rc),
        "rewards_rejected": fl(rr),
        "loss": total,
        "center_rewards_coefficient": None,
        "aux_loss_included": False,
        "trl_metrics": metrics,
        "grad_norm": grad_norm(grads),
        "router_margin": margin,
        "seed": seed,
        "independent_check": {"abs_loss_diff": chk_loss, "max_abs_grad_diff": gd},
    }
    finish(d, expected)
    return dict(case="reward", loss=total, bytes=mg.dir_bytes(d), grad_diff=gd, seed=seed)


# --------------------------------------------------------------------------------------------------------------
# GRPO


def grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str) -> torch.Tensor:
    """Copied from trl/trainer/grpo_trainer.py GRPOTrainer._generate_and_score_completions (TRL 1.16.0,
    multi_objective_aggregation='sum_then_normalize', one reward function of weight 1), `nanstd` is TRL's."""
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
        std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    elif scale_rewards == "batch":
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def build_grpo(seed, ref0, pol0, old0, margins, dpo_dir: Path):
    d = fresh_dir("grpo")
    pol0.config.pad_token_id = PAD
    saved = save_model(pol0, d / "policy")
    ref_path = dpo_dir / "reference"  # TRL builds the reference from the policy's initial checkpoint path
    old_dir = Path(tempfile.mkdtemp(prefix="grpo-old-"))
    old0.config.pad_token_id = PAD
    save_model(old0, old_dir)

    prompt, completions = grpo_rollout()
    G = GRPO["num_generations"]
    tok = make_tokenizer()
    ds = datasets.Dataset.from_dict({"prompt": ["t3 t4"] * G})

    def reward_fn(completions, **kw):
        return [0.0] * len(completions)

    model = mg.load(ref_path, Qwen3MoeForCausalLM)  # the initial policy == reference checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(**common_args(tmp), beta=GRPO["beta"], epsilon=GRPO["epsilon"], num_generations=G,
                          num_iterations=GRPO["num_iterations"], per_device_train_batch_size=G,
                          max_completion_length=max(map(len, completions)),
                          model_init_kwargs={"attn_implementation": "eager", "experts_implementation": "eager"})
        tr = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=ds, processing_class=tok)
        loss_type = tr.loss_type
        assert loss_type == "dapo" and args.scale_rewards == "group" and args.importance_sampling_level == "token"
        assert args.use_bias_correction_kl and args.delta is None and args.epsilon_high is None
        assert tr.top_entropy_quantile == 1.0 and not tr._entropy_bonus_enabled and not tr.use_vllm
        assert tr.off_policy_mask_threshold is None and tr.temperature == 1.0 and tr.aux_loss_enabled
        assert tr.ref_model is not None and tr.ref_model.config._experts_implementation == "eager"
        # the policy after some updates
        copy_weights(tr.model, pol0)
        old = mg.load(old_dir, Qwen3MoeForCausalLM)
        from trl.trainer.utils import add_fused_lm_head
        add_fused_lm_head(old, temperature=tr.temperature)

        # ---- the rollout tensors, laid out as _generate_and_score_completions does
        from trl.trainer.utils import pad
        prompt_ids = pad([torch.tensor(prompt)] * G, padding_value=PAD, padding_side="left")
        prompt_mask = pad([torch.ones(len(prompt), dtype=torch.long)] * G, padding_value=0, padding_side="left")
        completion_ids = pad([torch.tensor(c) for c in completions], padding_value=PAD, padding_side="right")
        completion_mask = pad([torch.ones(len(c), dtype=torch.long) for c in completions], padding_value=0,
                              padding_side="right")
        num_items_in_batch = completion_mask.sum()
        pc_ids = torch.cat([prompt_ids, completion_ids], 1)
        attn = torch.cat([prompt_mask, completion_mask], 1)
        C = completion_ids.size(1)
        with torch.no_grad():
            old_lp, _, _ = tr._get_per_token_logps_and_entropies(old, pc_ids, attn, C, batch_size=G)
            ref_lp, _, _ = tr._get_per_token_logps_and_entropies(tr.ref_model, pc_ids, attn, C, batch_size=G)
        rewards = torch.tensor(GRPO["rewards"])
        adv = grpo_advantages(rewards, G, args.scale_rewards)
        inputs = {
            "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "advantages": adv, "old_per_token_logps": old_lp,
            "ref_per_token_logps": ref_lp, "num_items_in_batch": num_items_in_batch,
        }
        tr.model.train()
        tr.current_gradient_accumulation_steps = 1
        assert args.gradient_accumulation_steps == 1 and args.steps_per_generation == 1
        tr.model.zero_grad(set_to_none=True)
        loss = tr.compute_loss(tr.model, dict(inputs))
        loss.backward()
        metrics = {k: v[-1] for k, v in tr._metrics["train"].items()}
        with torch.no_grad():
            cur_lp, ent, aux_t = tr._get_per_token_logps_and_entropies(tr.model, pc_ids, attn, C,
                                                                       compute_entropy=True, compute_aux_loss=True)
            # the other loss types on the same tensors (loss values only)
            alt = {}
            for lt in ("grpo", "bnpo", "dr_grpo"):
                tr.loss_type = lt
                alt[lt] = float(tr.compute_loss(tr.model, dict(inputs)))
            tr.loss_type = loss_type
    shutil.rmtree(old_dir)
    total = float(loss.detach())
    aux = float(aux_t)
    mask = completion_mask.float()

    # ---- independent recomputation
    chk = mg.load(d / "policy", Qwen3MoeForCausalLM).train()
    lp_full, out = plain_token_logps(chk, pc_ids, attn)
    lp = lp_full[:, -C:]
    ratio = torch.exp(lp - old_lp)
    A = adv[:, None]
    pg = -torch.min(ratio * A, ratio.clamp(1 - GRPO["epsilon"], 1 + GRPO["epsilon"]) * A)
    kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
    kl_corr = kl * ratio  # use_bias_correction_kl
    per_token = pg + GRPO["beta"] * kl_corr
    aux_ind = aux_masked_ref(out.router_logits, attn)
    loss_ind = (per_token * mask).sum() / mask.sum() + AUX_COEF * aux_ind
    loss_ind.backward()
    chk_loss = abs(float(loss_ind) - total)
    assert chk_loss < 2e-6, (float(loss_ind), total)
    assert abs(float(aux_ind) - aux) < 1e-6
    assert float(((lp.detach() - cur_lp) * mask).abs().max()) < 2e-6
    gd = grad_diff(tr.model, chk)
    assert gd < 1e-5, gd

    with torch.no_grad():
        ratio_d = ratio.detach()
        low = ((ratio_d < 1 - GRPO["epsilon"]) & (A < 0)).float()
        high = ((ratio_d > 1 + GRPO["epsilon"]) & (A > 0)).float()
        n_tok = mask.sum()
        clip_low, clip_high = float((low * mask).sum() / n_tok), float((high * mask).sum() / n_tok)
        kl_mean = float((kl_corr.detach() * mask).sum() / n_tok)
        pg_mean = float((pg.detach() * mask).sum() / n_tok)
        # distance of every ratio from the clip edges (to keep the clipping decisions robust)
        edge = float(torch.minimum((ratio_d - 0.8).abs(), (ratio_d - 1.2).abs())[mask.bool()].min())
        clipped_any = float(((ratio_d < 0.8) | (ratio_d > 1.2))[mask.bool()].float().sum())
    assert abs(metrics["clip_ratio/low_mean"] - clip_low) < 1e-7 and abs(metrics["kl"] - kl_mean) < 1e-6
    assert edge > 1e-3, edge
    grads = save_grads(tr.model, d, saved)

    expected = {
        "case": "grpo",
        "what": "TRL GRPOTrainer._compute_loss, default loss_type 'dapo', beta 0.04 (k3 KL to the reference, times "
                "the importance ratio: use_bias_correction_kl=True), epsilon 0.2 (low = high), G = 4 completions "
                "of 1 prompt, old log-probs from a perturbed copy of the policy (as with num_iterations 2), MoE aux",
        "loss_type": loss_type,
        "prompt": prompt,
        "completions": completions,
        "rewards": GRPO["rewards"],
        "prompt_ids": prompt_ids.tolist(),
        "prompt_mask": prompt_mask.tolist(),
        "completion_ids": completion_ids.tolist(),
        "completion_mask": completion_mask.tolist(),
        "input_ids": pc_ids.tolist(),
        "attention_mask": attn.tolist(),
        "pad_token_id": PAD,
        "num_generations": G,
        "beta": GRPO["beta"],
        "epsilon": GRPO["epsilon"],
        "num_iterations": GRPO["num_iterations"],
        "scale_rewards": args.scale_rewards,
        "advantages": fl(adv),
        "per_token_logps": fl(cur_lp * completion_mask),
        "old_per_token_logps": fl(old_lp * completion_mask),
        "ref_per_token_logps": fl(ref_lp * completion_mask),
        "per_token_logps_layout": "[G][C]: entry t = log p(completion_ids[t] | prompt, completion[..t-1]) "
                                  "(temperature 1); 0 where completion_mask == 0 (TRL's tensors hold 0 there too)",
        "ratio": fl(ratio_d * mask),
        "per_token_kl": fl(kl_corr.detach() * mask),
        "per_token_loss": fl(per_token.detach() * mask),
        "num_items_in_batch": int(num_items_in_batch),
        "policy_loss": float((per_token.detach() * mask).sum() / n_tok),
        "pg_loss_mean": pg_mean,
        "kl_mean": kl_mean,
        "clip_ratio_low_mean": clip_low,
        "clip_ratio_high_mean": clip_high,
        "clip_ratio_region_mean": clip_low + clip_high,
        "tokens_outside_clip_range": clipped_any,
        "min_ratio_distance_to_clip_edge": edge,
        "aux_loss": aux,
        "router_aux_loss_coef": AUX_COEF,
        "loss": total,
        "other_loss_types": alt,
        "max_completion_length": args.max_completion_length,
        "trl_metrics": metrics,
        "grad_norm": grad_norm(grads),
        "router_margin": margins,
        "seed": seed,
        "policy_noise_std": POLICY_NOISE,
        "old_noise_std": OLD_NOISE,
        "reference_checkpoint": "../dpo/reference (byte-identical model; not duplicated here)",
        "policy_checkpoint_equals": "../dpo/policy weights (same tensors; config identical)",
        "independent_check": {"abs_loss_diff": chk_loss, "max_abs_grad_diff": gd},
    }
    finish(d, expected)
    return dict(case="grpo", loss=total, aux=aux, bytes=mg.dir_bytes(d), grad_diff=gd, seed=seed, alt=alt,
                clip_low=clip_low, clip_high=clip_high, kl=kl_mean)


# --------------------------------------------------------------------------------------------------------------


def main(argv):
    wanted = {a for a in argv[1:] if not a.startswith("--")} or {"dpo", "reward", "grpo"}
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    if wanted & {"dpo", "grpo"}:
        seed, ref, pol, old, margins = build_lm_models()
        print(f"base seed {seed}, router margins {margins}", flush=True)
        if "dpo" in wanted or not (OUT / "dpo" / "reference").exists():
            rows.append(build_dpo(seed, ref, pol, margins))
        if "grpo" in wanted:
            rows.append(build_grpo(seed, ref, pol, old, margins, OUT / "dpo"))
    if "reward" in wanted:
        rows.append(build_reward())
    for r in rows:
        print(r, flush=True)
    print(f"total post-training fixtures: {mg.dir_bytes(OUT)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
