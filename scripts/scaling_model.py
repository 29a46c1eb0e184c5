#!/usr/bin/env python3
"""Projected training throughput on N nodes, data parallel and expert parallel, from one node's measured speed.

    python3 scripts/scaling_model.py --small 4300 --bench-small 2100 [--tokens-per-node 4096]

The speeds are `moe bench train --preset P` tokens/s on one node (its last line). For each model, node count
(2-64) and link (25 and 100 Gb/s) it prints tokens/s and the efficiency against N x one node, assuming:

- compute per token is one node's measured time (DeepSeek-V2-Lite: the bench-small node's FLOP rate, 6 x active
  parameters per token, applied to its 2.4 B active parameters);
- data parallel: every step all-reduces the f32 gradients of all parameters with a ring (2(N-1)/N of the
  buffer sent per node, 2(N-1) latencies of 20 us), after the backward pass (no overlap: what swift-moe does today);
- expert parallel over the same N nodes (experts split N ways, the rest data parallel): per MoE layer and
  step, each token's k hidden states go to their experts' nodes and come back, forward and backward
  (4 all-to-alls; (N-1)/N of the traffic leaves the node), and only the non-expert gradients are all-reduced.
Nothing here is measured on many nodes: it is the arithmetic of the message sizes, to show where each scheme stops
scaling.
"""
import argparse

LATENCY = 20e-6


def qwen3_moe(vocab, hidden, layers, heads, kv_heads, head_dim, experts, k, expert_width, shared_width=0, dense_layers=0,
              dense_width=0):
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 2 * head_dim + 2 * hidden
    expert = 3 * hidden * expert_width
    moe_layers = layers - dense_layers
    expert_params = moe_layers * experts * expert
    shared = moe_layers * (3 * hidden * shared_width + hidden * experts) + dense_layers * 3 * hidden * dense_width
    other = 2 * vocab * hidden + layers * attention + shared + hidden
    active = other + moe_layers * k * expert
    return dict(total=other + expert_params, experts=expert_params, active=active, hidden=hidden, k=k, moe_layers=moe_layers)


MODELS = {
    "small": qwen3_moe(4096, 192, 4, 6, 2, 32, 16, 2, 128),
    "bench-small": qwen3_moe(8192, 256, 4, 4, 2, 64, 32, 4, 128),
    # DeepSeek-V2-Lite's sizes (27 layers, the first dense; 64 routed experts of 1408, 6 a token, 2 shared): MLA is
    # counted as plain attention of the same width, close enough for message sizes.
    "DeepSeek-V2-Lite-sized": qwen3_moe(102400, 2048, 27, 16, 16, 128, 64, 6, 1408, shared_width=2 * 1408, dense_layers=1,
                                        dense_width=10944),
}


def allreduce(bytes_, nodes, bandwidth):
    return 2 * (nodes - 1) / nodes * bytes_ / bandwidth + 2 * (nodes - 1) * LATENCY


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", type=float, required=True, help="small preset, tokens/s on one node")
    p.add_argument("--bench-small", type=float, required=True, help="bench-small preset, tokens/s on one node")
    p.add_argument("--tokens-per-node", type=int, default=4096, help="tokens each node trains per step")
    p.add_argument("--nodes", default="2,4,8,16,32,64", help="node counts, comma-separated")
    a = p.parse_args()
    flops = a.bench_small * 6 * MODELS["bench-small"]["active"]   # the node's training FLOP/s, as bench-small shows it
    speed = {"small": a.small, "bench-small": a.bench_small,
             "DeepSeek-V2-Lite-sized": flops / (6 * MODELS["DeepSeek-V2-Lite-sized"]["active"])}
    print(f"one node: {flops / 1e9:.1f} GFLOP/s of training (bench-small); {a.tokens_per_node} tokens per node per step\n")
    print("| model | parameters (active) | nodes | link | data parallel tokens/s | eff. | expert parallel tokens/s | eff. |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for name, m in MODELS.items():
        compute = a.tokens_per_node / speed[name]
        counts = [int(n) for n in a.nodes.split(",")]
        for nodes in counts:
            for gbps in (25, 100):
                bw = gbps * 1e9 / 8
                dp = compute + allreduce(4 * m["total"], nodes, bw)
                tokens_out = 4 * a.tokens_per_node * m["k"] * m["hidden"] * 4 * (nodes - 1) / nodes   # 4 all-to-alls
                ep = compute + m["moe_layers"] * (tokens_out / bw + 4 * (nodes - 1) * LATENCY) \
                    + allreduce(4 * (m["total"] - m["experts"]), nodes, bw)
                ideal = nodes * speed[name]
                row = [name if nodes == counts[0] and gbps == 25 else "",
                       f"{m['total'] / 1e6:,.1f} M ({m['active'] / 1e6:,.1f} M)" if nodes == counts[0] and gbps == 25 else "",
                       str(nodes), f"{gbps} Gb/s",
                       f"{nodes * a.tokens_per_node / dp:,.0f}", f"{nodes * a.tokens_per_node / dp / ideal:.0%}",
                       f"{nodes * a.tokens_per_node / ep:,.0f}", f"{nodes * a.tokens_per_node / ep / ideal:.0%}"]
                print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
