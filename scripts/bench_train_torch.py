#!/usr/bin/env python3
"""PyTorch peer for `moe bench train`: the same model's training throughput on the CPU.

    ~/.cache/moe-peers/bin/python scripts/bench_train_torch.py [--steps 10] [--warmup 2] [--batch 16]
        [--seq-len 256] [--threads 2] [--config PRESET.json]

--config: a config.json of any architecture (`moe bench train` writes its preset's), trained through transformers'
own class for it (Qwen3-Next's Gated DeltaNet: its torch fallback, `torch_chunk_gated_delta_rule`). Without it:

bench-small: Qwen3MoeForCausalLM, vocab 8192, hidden 256, 4 layers (all MoE), 4 heads / 2 KV heads,
head_dim 64, 32 experts top-4, expert width 128, norm_topk_prob, untied, float32; loss = CE + 0.01 * aux
(output_router_logits); AdamW lr 3e-4 wd 0.1; grad clipping 1.0; random tokens (seeded), labels = inputs.
transformers' default experts and attention implementations are used (printed). The last line is
`tokens/s: X` = batch * seq_len * timed steps / timed seconds (the warm-up steps are not timed).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="config.json of the model to train (default: bench-small, below)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    import transformers
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    transformers.logging.set_verbosity_error()

    config = Qwen3MoeConfig(
        vocab_size=8192,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        num_experts=32,
        num_experts_per_tok=4,
        moe_intermediate_size=128,
        intermediate_size=512,  # unused: every layer is MoE
        decoder_sparse_step=1,
        mlp_only_layers=[],
        norm_topk_prob=True,
        tie_word_embeddings=False,
        max_position_embeddings=512,
        output_router_logits=True,
        router_aux_loss_coef=0.01,
        dtype="float32",
    )
    if args.config:
        import json
        from transformers import AutoConfig, AutoModelForCausalLM
        fields = json.load(open(args.config))
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        config.output_router_logits = True
        model = AutoModelForCausalLM.from_config(config).to(torch.float32).train()
    else:
        model = Qwen3MoeForCausalLM(config).to(torch.float32).train()
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    print(f"experts implementation: {getattr(model.config, '_experts_implementation', None)}")
    print(f"attention implementation: {getattr(model.config, '_attn_implementation', None)}")
    print(f"params: {nparams / 1e6:.2f} M, batch {args.batch} x seq {args.seq_len}, "
          f"warmup {args.warmup}, timed steps {args.steps}", flush=True)

    gen = torch.Generator().manual_seed(args.seed + 1)
    timed = 0.0
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, config.vocab_size, (args.batch, args.seq_len), generator=gen)
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=ids, output_router_logits=True, use_cache=False)
        out.loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        warm = step < args.warmup
        if not warm:
            timed += dt
        print(f"step {step:3d}{' (warmup)' if warm else ''}: loss {float(out.loss.detach()):.4f} "
              f"aux {float(out.aux_loss.detach()):.4f} grad_norm {float(gnorm):.3f} time {dt:.3f} s "
              f"({args.batch * args.seq_len / dt:.1f} tokens/s)", flush=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"peak RSS: {peak:.1f} MiB")
    tps = args.batch * args.seq_len * args.steps / timed if args.steps > 0 and timed > 0 else 0.0
    print(f"tokens/s: {tps:.1f}")


if __name__ == "__main__":
    main()
