#!/usr/bin/env python3
"""Writes Tests/Fixtures/sampling.json: reference outputs of Hugging Face's logits processors for the Swift sampler.

Run with the peers venv (torch + transformers==5.23.0):

    ~/.cache/moe-peers/bin/python scripts/make_sampling_fixtures.py

The processor list is HF's own: `GenerationMixin._get_logits_processor` of a tiny randomly initialised Llama, given a
`GenerationConfig` built from each case's parameters. That yields, for a sampling config,

    RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper

(only the ones whose setting is not neutral), and for a greedy one (temperature 0 -> do_sample=False) only the
repetition penalty. HF has no presence/frequency penalties; they follow vLLM's `apply_penalties`
(vllm/model_executor/layers/utils.py), which runs after the repetition penalty and before temperature:

    logits -= frequency_penalties.unsqueeze(dim=1) * output_bin_counts   # counts over generated tokens only
    logits -= presence_penalties.unsqueeze(dim=1) * output_mask

so this script inserts that step right after HF's repetition-penalty processor (or first when there is none).

Each case: params (SamplingParameters' JSON keys), logits (vocab 64), history (prompt + generated: what the
repetition penalty sees, as HF's input_ids), generated (the suffix that presence/frequency count),
expected_scores (scores after the processors, -inf as null), expected_probs (softmax of those, float64 from the
float32 scores), expected_argmax (torch.argmax of expected_scores) and tie_split (top-p cut through a group of equal
scores, so which of the tied ids survive is up to torch.sort's unstable order).
"""

import json
import os
import sys

import torch
import transformers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TopPLogitsWarper,
)

VOCAB = 64
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "sampling.json")


class PresenceFrequencyPenalty(LogitsProcessor):
    """vLLM's (OpenAI's) presence/frequency penalties, counting only the generated tokens."""

    def __init__(self, presence: float, frequency: float, generated: list[int]):
        self.presence = torch.tensor([presence], dtype=torch.float32)
        self.frequency = torch.tensor([frequency], dtype=torch.float32)
        self.generated = torch.tensor([generated if generated else [VOCAB]], dtype=torch.long)

    def __call__(self, input_ids, scores):
        counts = torch.zeros((1, VOCAB + 1), dtype=torch.long)
        counts.scatter_add_(1, self.generated, torch.ones_like(self.generated))
        counts = counts[:, :VOCAB]
        mask = counts > 0
        scores = scores.clone()
        scores -= self.frequency.unsqueeze(dim=1) * counts
        scores -= self.presence.unsqueeze(dim=1) * mask
        return scores


def processors_for(model, params, history):
    temperature = params["temperature"]
    do_sample = temperature > 0
    kwargs = dict(do_sample=do_sample)
    if do_sample:
        kwargs["temperature"] = temperature
        kwargs["top_k"] = params["topK"]  # 0 = off in HF too
        kwargs["top_p"] = params["topP"]
        if params["minP"] > 0:
            kwargs["min_p"] = params["minP"]
    else:
        kwargs["temperature"] = None  # greedy: HF skips every warper
        kwargs["top_k"] = None
        kwargs["top_p"] = None
    kwargs["repetition_penalty"] = params["repetitionPenalty"]
    config = GenerationConfig(**kwargs)
    ids = torch.tensor([history], dtype=torch.long)
    procs = model._get_logits_processor(
        generation_config=config,
        input_ids_seq_length=ids.shape[1],
        encoder_input_ids=ids,
        logits_processor=LogitsProcessorList(),
        device="cpu",
        model_kwargs={},
    )
    procs = list(procs)
    if params["presencePenalty"] != 0 or params["frequencyPenalty"] != 0:
        gen = history[len(history) - len(params["_generated"]):] if params["_generated"] else []
        pf = PresenceFrequencyPenalty(params["presencePenalty"], params["frequencyPenalty"], gen)
        at = 0
        for i, p in enumerate(procs):
            if isinstance(p, RepetitionPenaltyLogitsProcessor):
                at = i + 1
        procs.insert(at, pf)
    return procs, ids


def make_logits(gen, kind):
    if kind == "normal":
        x = torch.randn(VOCAB, generator=gen) * 3
    elif kind == "small":
        x = torch.randn(VOCAB, generator=gen) * 0.3
    elif kind == "large":
        x = torch.randn(VOCAB, generator=gen) * 12
    elif kind == "ties":
        # Coarse grid: many exact ties, including at top-k / top-p boundaries.
        x = torch.round(torch.randn(VOCAB, generator=gen) * 2) / 2
    elif kind == "tieboundary":
        # One leader and ten exact ties straddling the top-p 0.5 boundary (which tied ids survive depends on the
        # order torch.sort gives equal values), the rest far below.
        x = torch.full((VOCAB,), -5.0)
        x[33] = 3.0
        for i in (2, 5, 11, 17, 23, 29, 41, 47, 53, 60):
            x[i] = 2.0
    elif kind == "peaked":
        x = torch.randn(VOCAB, generator=gen) * 2
        x[7] = 15.0
        x[40] = 14.0
    else:
        raise ValueError(kind)
    return x.to(torch.float32)


def make_history(gen, prompt_len, gen_len):
    # Small id range so that repeats are common.
    prompt = torch.randint(0, 24, (prompt_len,), generator=gen).tolist()
    generated = torch.randint(0, 24, (gen_len,), generator=gen).tolist()
    return prompt + generated, generated


def base(**kw):
    p = dict(temperature=1.0, topK=0, topP=1.0, minP=0.0, repetitionPenalty=1.0,
             presencePenalty=0.0, frequencyPenalty=0.0, seed=None)
    p.update(kw)
    return p


CASES = [
    # (name, params, logits kind)
    ("neutral", base(), "normal"),
    ("temperature_0.7", base(temperature=0.7), "normal"),
    ("temperature_1.3", base(temperature=1.3), "normal"),
    ("top_k_1", base(topK=1), "normal"),
    ("top_k_5", base(topK=5), "normal"),
    ("top_k_5_ties", base(topK=5), "ties"),
    ("top_k_1_ties", base(topK=1), "ties"),
    ("top_p_0.9", base(topP=0.9), "normal"),
    ("top_p_0.5", base(topP=0.5), "normal"),
    ("top_p_0.9_small", base(topP=0.9), "small"),
    ("top_p_0.5_ties", base(topP=0.5), "ties"),
    ("top_p_0.5_tie_boundary", base(topP=0.5), "tieboundary"),
    ("top_k_3_tie_boundary", base(topK=3), "tieboundary"),
    ("min_p_0.1", base(minP=0.1), "normal"),
    ("min_p_0.1_small", base(minP=0.1), "small"),
    ("repetition_1.3", base(repetitionPenalty=1.3), "normal"),
    ("repetition_0.8", base(repetitionPenalty=0.8), "normal"),
    ("presence_0.5", base(presencePenalty=0.5), "normal"),
    ("frequency_0.3", base(frequencyPenalty=0.3), "normal"),
    ("presence_frequency_negative", base(presencePenalty=-0.4, frequencyPenalty=-0.2), "small"),
    ("greedy", base(temperature=0.0), "normal"),
    ("greedy_repetition_1.3", base(temperature=0.0, repetitionPenalty=1.3), "peaked"),
    ("greedy_ties", base(temperature=0.0), "ties"),
    ("temp_0.7_top_k_5_top_p_0.9", base(temperature=0.7, topK=5, topP=0.9), "small"),
    ("temp_1.3_top_p_0.9_min_p_0.1", base(temperature=1.3, topP=0.9, minP=0.1), "normal"),
    ("rep_1.3_temp_0.7_top_k_5", base(repetitionPenalty=1.3, temperature=0.7, topK=5), "normal"),
    ("rep_0.8_top_p_0.5_min_p_0.1", base(repetitionPenalty=0.8, topP=0.5, minP=0.1), "small"),
    ("top_k_5_top_p_0.5_large", base(topK=5, topP=0.5), "large"),
    ("all_temp_0.7", base(temperature=0.7, topK=5, topP=0.9, minP=0.1, repetitionPenalty=1.3,
                          presencePenalty=0.5, frequencyPenalty=0.3), "normal"),
    ("all_temp_1.3", base(temperature=1.3, topK=20, topP=0.9, minP=0.1, repetitionPenalty=0.8,
                          presencePenalty=0.2, frequencyPenalty=0.1), "small"),
    ("all_peaked", base(temperature=1.3, topK=5, topP=0.5, minP=0.1, repetitionPenalty=1.3,
                        presencePenalty=1.0, frequencyPenalty=0.5), "peaked"),
    ("all_ties", base(temperature=0.7, topK=8, topP=0.9, minP=0.1, repetitionPenalty=1.3,
                      presencePenalty=0.5, frequencyPenalty=0.3), "ties"),
    ("all_large", base(temperature=0.7, topK=5, topP=0.9, minP=0.1, repetitionPenalty=1.3,
                       presencePenalty=0.5, frequencyPenalty=0.3), "large"),
]


def splits_ties(before, after):
    """True when top-p removed some but not all tokens of a group of equal scores. Which of them HF keeps then
    depends on the order torch.sort (not stable by default) leaves equal values in, so the Swift test compares such
    cases only up to a permutation of the tied ids."""
    removed = set(before[torch.isinf(after) & ~torch.isinf(before)].tolist())
    kept = set(before[~torch.isinf(after)].tolist())
    return bool(removed & kept)


def num(x):
    x = float(x)
    if x == float("-inf"):
        return None
    if x != x or x == float("inf"):
        raise ValueError("unexpected non-finite score %r" % x)
    return x


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(20240611)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                      num_key_value_heads=1, intermediate_size=8)
    model = LlamaForCausalLM(cfg)
    cases = []
    for name, params, kind in CASES:
        logits = make_logits(gen, kind)
        history, generated = make_history(gen, 10, 12)
        params = dict(params)
        params["_generated"] = generated
        procs, ids = processors_for(model, params, history)
        del params["_generated"]
        scores = logits.clone().unsqueeze(0)
        tie_split = False
        for p in procs:
            before = scores
            scores = p(ids, scores)
            if isinstance(p, TopPLogitsWarper):
                tie_split = tie_split or splits_ties(before[0], scores[0])
        scores = scores[0]
        probs = torch.softmax(scores.to(torch.float64), dim=-1)
        cases.append(dict(
            name=name,
            processors=[type(p).__name__ for p in procs],
            params=params,
            logits=[num(v) for v in logits.tolist()],
            history=history,
            generated=generated,
            expected_scores=[num(v) for v in scores.tolist()],
            expected_probs=[float(v) for v in probs.tolist()],
            expected_argmax=int(torch.argmax(scores).item()),
            tie_split=tie_split,
        ))
    doc = dict(
        generator="scripts/make_sampling_fixtures.py",
        transformers=transformers.__version__,
        torch=torch.__version__,
        vocab=VOCAB,
        cases=cases,
    )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("{\n")
        for key in ("generator", "transformers", "torch", "vocab"):
            f.write(f"  {json.dumps(key)}: {json.dumps(doc[key])},\n")
        f.write('  "cases": [\n')
        for i, c in enumerate(cases):
            f.write("    " + json.dumps(c, separators=(",", ":")) + ("," if i + 1 < len(cases) else "") + "\n")
        f.write("  ]\n}\n")
    for c in cases:
        kept = sum(1 for v in c["expected_scores"] if v is not None)
        print(f"{c['name']:32s} kept={kept:2d} argmax={c['expected_argmax']:2d} {' > '.join(c['processors'])}")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
