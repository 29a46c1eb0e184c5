#!/usr/bin/env python3
"""Generate the Hugging Face reference fixtures for swift-moe.

Run with the peers venv (created by `bash ../shared/tools/peers-setup.sh`):

    ~/.cache/moe-peers/bin/python scripts/make_fixtures.py [case ...]

For every case this writes `Tests/Fixtures/models/<case>/`:
  * the checkpoint as `save_pretrained` writes it (config.json, safetensors, generation_config.json),
    sometimes post-edited into the legacy hub form (see LEGACY below; the edited form is re-loaded with
    transformers and checked to give the very same logits);
  * `expected.json` with the prompt, HF float32 eager logits for each prompt position, the greedy
    continuation HF `generate(do_sample=False)` produces, and the experts no prompt token was routed to.

Everything is deterministic: each case loops over seeds starting at a fixed base seed and keeps the first
seed for which the router top-k choice and each greedy argmax is decided by a margin >= 1e-3 (so tiny
float differences in another implementation cannot flip a decision).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import transformers  # noqa: E402
from transformers import (  # noqa: E402
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    GenerationConfig,
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    GptOssConfig,
    GptOssForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
    Qwen3NextConfig,
    Qwen3NextForCausalLM,
)
from transformers.models.qwen3_5_moe import Qwen3_5MoeForCausalLM, Qwen3_5MoeTextConfig  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "models"

MARGIN = 1e-3
PROMPT_LEN = 7
MAX_NEW = 8
MAX_SEED_TRIES = 400
SIZE_BUDGET = 6 * 1024 * 1024  # whole fixtures folder

# Shared tiny dimensions.
COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    initializer_range=0.15,
    bos_token_id=1,
    pad_token_id=None,
    attn_implementation="eager",
)

CASES = [
    dict(
        name="qwen2_moe",
        what="shared expert + sigmoid shared_expert_gate, norm_topk_prob=false, mlp_only_layers=[1] (dense MLP), "
        "GQA 4/2, random qkv bias, untied, rope_theta 1e6; config.json in LEGACY form (top-level rope_theta, "
        "rope_scaling=null, torch_dtype)",
        cfg_cls=Qwen2MoeConfig,
        model_cls=Qwen2MoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=3,
            num_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            shared_expert_intermediate_size=32,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[1],
            qkv_bias=True,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        ),
        gate_scale=8.0,
        legacy=True,
        base_seed=1000,
    ),
    dict(
        name="qwen2_moe_step2",
        what="decoder_sparse_step=2 (layers 1,3 MoE; 0,2 dense), norm_topk_prob=true, tied embeddings, "
        "rope_theta 50000, 4 experts top-2, shared expert",
        cfg_cls=Qwen2MoeConfig,
        model_cls=Qwen2MoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=4,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=24,
            shared_expert_intermediate_size=16,
            norm_topk_prob=True,
            decoder_sparse_step=2,
            mlp_only_layers=[],
            qkv_bias=True,
            tie_word_embeddings=True,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 50_000.0},
        ),
        gate_scale=8.0,
        base_seed=2000,
    ),
    dict(
        name="qwen3_moe",
        what="norm_topk_prob=true, head_dim 16 != hidden/heads (8), GQA 4/2, q_norm/k_norm, "
        "decoder_sparse_step=2 + mlp_only_layers=[3] (MoE layers 1,5 of 6), RoPE yarn (factor 4, "
        "original_max_position_embeddings 256, default beta_fast/beta_slow/attention_factor), "
        "eos_token_id list of 2 where greedy generation stops early on the 2nd eos id",
        cfg_cls=Qwen3MoeConfig,
        model_cls=Qwen3MoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=6,
            head_dim=16,
            num_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            norm_topk_prob=True,
            decoder_sparse_step=2,
            mlp_only_layers=[3],
            tie_word_embeddings=False,
            max_position_embeddings=1024,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10_000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 256,
            },
        ),
        eos="list_stop",
        gate_scale=8.0,
        base_seed=3000,
    ),
    dict(
        name="qwen3_moe_bf16",
        what="bf16 checkpoint (expected logits = HF float32 on the bf16-rounded weights), norm_topk_prob=false, "
        "RoPE linear factor 2, every layer MoE, head_dim 16; config.json uses the hub key `num_experts` "
        "(transformers 5.23 itself writes `num_local_experts`)",
        cfg_cls=Qwen3MoeConfig,
        model_cls=Qwen3MoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            head_dim=16,
            num_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            norm_topk_prob=False,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "linear", "rope_theta": 10_000.0, "factor": 2.0},
        ),
        bf16=True,
        hub_num_experts=True,
        gate_scale=8.0,
        base_seed=4000,
    ),
    dict(
        name="mixtral",
        what="Mixtral (always renormalises top-k; no norm_topk_prob key), block_sparse_moe.experts.E.w1/w2/w3 "
        "tensors, GQA 4/2, head_dim null, rope_theta 1e6 with RoPE llama3 (factor 8, low 1, high 8, orig 1024)",
        cfg_cls=MixtralConfig,
        model_cls=MixtralForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=24,
            num_local_experts=8,
            num_experts_per_tok=2,
            tie_word_embeddings=False,
            eos_token_id=2,
            max_position_embeddings=8192,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 1_000_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 8.0,
                "original_max_position_embeddings": 1024,
            },
        ),
        gate_scale=8.0,
        base_seed=5000,
    ),
    dict(
        name="olmoe",
        what="OLMoE: q_norm over all heads (hidden) / k_norm over kv dim, clip_qkv=0.5 (clamping verified), "
        "norm_topk_prob=false, 8 experts top-2, GQA 4/2",
        cfg_cls=OlmoeConfig,
        model_cls=OlmoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            intermediate_size=16,
            num_experts=8,
            num_experts_per_tok=2,
            norm_topk_prob=False,
            clip_qkv=0.5,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
        gate_scale=8.0,
        base_seed=6000,
    ),
    dict(
        name="qwen2",
        what="dense Qwen2: random qkv bias, tied embeddings, GQA 4/2",
        cfg_cls=Qwen2Config,
        model_cls=Qwen2ForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            tie_word_embeddings=True,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
        base_seed=7000,
    ),
    dict(
        name="qwen2_window",
        what="dense Qwen2 with use_sliding_window: layer 0 full, layers 1-2 sliding (max_window_layers 1, window 4); "
        "config.json keeps layer_types as transformers writes it; a 12-token prompt",
        cfg_cls=Qwen2Config,
        model_cls=Qwen2ForCausalLM,
        prompt_len=12,
        config=dict(
            COMMON,
            num_hidden_layers=3,
            use_sliding_window=True,
            sliding_window=4,
            max_window_layers=1,
            tie_word_embeddings=True,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
        base_seed=7500,
    ),
    dict(
        name="qwen3",
        what="dense Qwen3: head_dim 16 != hidden/heads, q_norm/k_norm, RoPE llama3 (factor 8, low 1, high 4, "
        "orig 512), untied",
        cfg_cls=Qwen3Config,
        model_cls=Qwen3ForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=2,
            head_dim=16,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 10_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 512,
            },
        ),
        base_seed=8000,
    ),
    dict(
        name="llama",
        what="dense Llama: untied, GQA 4/2, attention_bias=false, SHARDED checkpoint (index.json), config.json in "
        "LEGACY form (rope_theta 500000 + rope_scaling llama3 dict, torch_dtype), single int eos_token_id",
        cfg_cls=LlamaConfig,
        model_cls=LlamaForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=3,
            attention_bias=False,
            mlp_bias=False,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256,
            },
        ),
        legacy=True,
        max_shard_size="60KB",
        base_seed=9000,
    ),
]


# DeepSeek / GLM shapes: MLA with v_head_dim != qk head dim, and every kv head its own (MLA has no GQA).
MLA = dict(kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=12, num_key_value_heads=4)

CASES += [
    dict(
        name="deepseek_v2_lite",
        what="DeepSeek-V2-Lite shape: MLA without q_lora_rank (q_proj), kv_lora 16, nope 8 + rope 4, v_head_dim 12, "
        "softmax greedy top-2 of 8, routed_scaling_factor 1.5, 2 shared experts, first layer dense",
        cfg_cls=DeepseekV2Config,
        model_cls=DeepseekV2ForCausalLM,
        config=dict(
            COMMON, **MLA,
            num_hidden_layers=3,
            q_lora_rank=None,
            n_routed_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            n_shared_experts=2,
            first_k_dense_replace=1,
            topk_method="greedy",
            routed_scaling_factor=1.5,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
        gate_scale=8.0,
        base_seed=11000,
    ),
    dict(
        name="deepseek_v2_group",
        what="DeepSeek-V2 shape: MLA with q_lora_rank 24 (q_a_proj + norm + q_b_proj), attention_bias, "
        "group_limited_greedy (4 groups ranked by their best expert, 2 kept), top-3 of 8, scaling 2, 1 shared expert",
        cfg_cls=DeepseekV2Config,
        model_cls=DeepseekV2ForCausalLM,
        config=dict(
            COMMON, **MLA,
            num_hidden_layers=2,
            q_lora_rank=24,
            attention_bias=True,
            n_routed_experts=8,
            num_experts_per_tok=3,
            moe_intermediate_size=16,
            n_shared_experts=1,
            first_k_dense_replace=0,
            topk_method="group_limited_greedy",
            n_group=4,
            topk_group=2,
            routed_scaling_factor=2.0,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
        gate_scale=3.0,
        base_seed=12000,
    ),
    dict(
        name="deepseek_v3",
        what="DeepSeek-V3 shape: MLA with q_lora_rank 24, rope_interleave, yarn (factor 4, mscale 1, mscale_all_dim "
        "1: softmax scale x mscale^2), sigmoid routing with a non-zero e_score_correction_bias, 4 groups ranked by "
        "their two best (2 kept), top-3 of 16, norm_topk_prob, scaling 2.5, 1 shared expert, first layer dense",
        cfg_cls=DeepseekV3Config,
        model_cls=DeepseekV3ForCausalLM,
        config=dict(
            COMMON, **MLA,
            num_hidden_layers=3,
            q_lora_rank=24,
            n_routed_experts=16,
            num_experts_per_tok=3,
            moe_intermediate_size=16,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=4,
            topk_group=2,
            norm_topk_prob=True,
            routed_scaling_factor=2.5,
            rope_interleave=True,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "yarn", "rope_theta": 10_000.0, "factor": 4.0,
                             "original_max_position_embeddings": 1024, "mscale": 1.0, "mscale_all_dim": 1.0,
                             "beta_fast": 32.0, "beta_slow": 1.0},
        ),
        gate_scale=8.0,
        selection_bias=0.3,
        base_seed=13000,
    ),
    dict(
        name="deepseek_v3_plain",
        what="DeepSeek-V3 variants: no q_lora_rank, rope_interleave false (halves), one group, norm_topk_prob false, "
        "scaling 1, no dense layer, tied embeddings",
        cfg_cls=DeepseekV3Config,
        model_cls=DeepseekV3ForCausalLM,
        config=dict(
            COMMON, **MLA,
            num_hidden_layers=2,
            q_lora_rank=None,
            n_routed_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            n_shared_experts=1,
            first_k_dense_replace=0,
            n_group=1,
            topk_group=1,
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
            rope_interleave=False,
            tie_word_embeddings=True,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
        ),
        gate_scale=8.0,
        selection_bias=0.3,
        base_seed=14000,
    ),
    dict(
        name="glm4_moe",
        what="GLM-4.5 shape: GQA 4/2 with head_dim 16, q/k/v bias (no o bias), use_qk_norm, partial_rotary_factor 0.5, "
        "sigmoid routing with selection bias, 2 groups (1 kept), top-2 of 8, norm_topk_prob, scaling 1.8, 1 shared "
        "expert, first layer dense",
        cfg_cls=Glm4MoeConfig,
        model_cls=Glm4MoeForCausalLM,
        config=dict(
            COMMON,
            num_hidden_layers=3,
            head_dim=16,
            attention_bias=True,
            use_qk_norm=True,
            partial_rotary_factor=0.5,
            n_routed_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=2,
            topk_group=1,
            norm_topk_prob=True,
            routed_scaling_factor=1.8,
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.5},
        ),
        gate_scale=8.0,
        selection_bias=0.3,
        base_seed=15000,
    ),
    dict(
        name="qwen3_next",
        what="Qwen3-Next hybrid: Gated DeltaNet layers 0 and 2 (2 key heads of 8, 4 value heads of 12: grouped value "
        "heads; fused in_proj_qkvz / in_proj_ba), gated full attention in layers 1 and 3 (head_dim 16, GQA 4/2, "
        "partial_rotary_factor 0.25), zero-centred RMSNorms, 4 experts top-2 + gated shared expert in layers 1 and "
        "3, layers 0 and 2 dense (mlp_only_layers); a 150-token prompt, so HF's chunked delta rule (chunk 64) crosses two boundaries",
        cfg_cls=Qwen3NextConfig,
        model_cls=Qwen3NextForCausalLM,
        prompt_len=150,
        config=dict(
            COMMON,
            num_hidden_layers=4,
            head_dim=16,
            layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
            linear_conv_kernel_dim=4,
            linear_key_head_dim=8,
            linear_value_head_dim=12,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            shared_expert_intermediate_size=24,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[0, 2],
            tie_word_embeddings=False,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.25},
        ),
        gate_scale=1.0,
        zero_centred=True,
        reload_tolerance=1e-5,
        base_seed=16000,
    ),
    dict(
        name="qwen3_5_moe",
        what="Qwen3.5-MoE text model: Gated DeltaNet layers 0-2 with separate in_proj_qkv / z / b / a (2 key heads of "
        "8, 4 value heads of 8), gated full attention in layer 3 (partial_rotary_factor 0.25, rotary on text "
        "positions as mrope reduces to), zero-centred norms, 8 experts top-2 (always renormalised) + gated shared "
        "expert in every layer, tied embeddings; a prompt shorter than one chunk",
        cfg_cls=Qwen3_5MoeTextConfig,
        model_cls=Qwen3_5MoeForCausalLM,
        prompt_len=24,
        config=dict(
            COMMON,
            num_hidden_layers=4,
            head_dim=16,
            layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
            linear_conv_kernel_dim=4,
            linear_key_head_dim=8,
            linear_value_head_dim=8,
            linear_num_key_heads=2,
            linear_num_value_heads=4,
            num_experts=8,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            shared_expert_intermediate_size=24,
            tie_word_embeddings=True,
            eos_token_id=2,
            rope_parameters={"rope_type": "default", "rope_theta": 10_000.0, "partial_rotary_factor": 0.25,
                             "mrope_section": [1, 1, 0], "mrope_interleaved": False},
        ),
        gate_scale=1.0,
        zero_centred=True,
        reload_tolerance=1e-5,
        base_seed=17000,
    ),
]


GPT_OSS = dict(
    COMMON,
    num_hidden_layers=4,
    hidden_size=64,  # two MXFP4 blocks a row
    head_dim=16,
    intermediate_size=64,
    num_local_experts=4,
    num_experts_per_tok=2,
    sliding_window=6,
    layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
    swiglu_limit=0.75,
    attention_bias=True,
    max_position_embeddings=256,
    tie_word_embeddings=False,
    eos_token_id=2,
    rope_parameters={"rope_type": "yarn", "rope_theta": 150_000.0, "factor": 4.0, "beta_fast": 32.0, "beta_slow": 1.0,
                     "truncate": False, "original_max_position_embeddings": 64},
)

CASES += [
    dict(
        name="gpt_oss",
        what="gpt-oss: sliding (window 6) and full attention layers alternating, attention sinks, biases on q/k/v/o, "
        "the router and the experts, 4 experts top-2 (softmax over the chosen logits), interleaved gate/up with the "
        "clamped SwiGLU (limit 0.75 here so that the clamp bites, alpha 1.702), yarn RoPE (factor 4, truncate false); "
        "bf16 weights, a 20-token prompt so tokens leave the window",
        cfg_cls=GptOssConfig,
        model_cls=GptOssForCausalLM,
        prompt_len=20,
        bf16=True,
        config=GPT_OSS,
        gate_scale=4.0,
        base_seed=18000,
    ),
    dict(
        name="gpt_oss_mxfp4",
        what="the gpt_oss case with its experts stored in MXFP4 as the hub's checkpoints are (gate_up_proj_blocks / "
        "_scales, down_proj_blocks / _scales, quantization_config mxfp4); transformers dequantises them on CPU",
        cfg_cls=GptOssConfig,
        model_cls=GptOssForCausalLM,
        prompt_len=20,
        bf16=True,
        mxfp4=True,
        config=GPT_OSS,
        gate_scale=4.0,
        base_seed=18500,
    ),
]

# --------------------------------------------------------------------------------------------------------------
# helpers


def fl(x: torch.Tensor) -> list:
    """float32 tensor -> nested python floats (exact f32 values; json writes them with repr)."""
    return x.detach().to(torch.float32).cpu().double().tolist()


def randomise(model: torch.nn.Module, gen: torch.Generator, std: float, gate_scale: float, bf16: bool,
              zero_centred: bool = False) -> None:
    """Re-initialise every parameter from `gen` (independent of HF's own init). `zero_centred`: the RMSNorms
    scale by 1 + w (Qwen3-Next / 3.5), so their w is drawn around 0; the DeltaNet's gated norm is a plain one."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # all RMSNorms incl. q_norm / k_norm
                v = torch.rand(p.shape, generator=gen) * 0.8 + 0.6
                if zero_centred and not name.endswith("linear_attn.norm.weight"):
                    v -= 1
            elif name.endswith(".bias") or name.endswith("_proj_bias"):
                v = torch.randn(p.shape, generator=gen) * 0.5
            elif name.endswith("self_attn.sinks"):  # gpt-oss: a logit per head beside the scores
                v = torch.randn(p.shape, generator=gen)
            elif (name.endswith("mlp.gate.weight") or name.endswith("block_sparse_moe.gate.weight")
                  or name.endswith("mlp.router.weight")):
                v = torch.randn(p.shape, generator=gen) * std * gate_scale
            elif name.endswith("shared_expert_gate.weight"):
                v = torch.randn(p.shape, generator=gen) * 0.5
            else:
                v = torch.randn(p.shape, generator=gen) * std
            if bf16:
                v = v.to(torch.bfloat16).to(torch.float32)
            p.copy_(v)


def gate_modules(model) -> dict[int, torch.nn.Module]:
    out = {}
    for i, layer in enumerate(model.model.layers):
        mlp = layer.mlp
        if hasattr(mlp, "gate") and hasattr(mlp, "experts"):
            out[i] = mlp.gate
        elif hasattr(mlp, "router") and hasattr(mlp, "experts"):  # gpt-oss
            out[i] = mlp.router
    return out


class RouterRecorder:
    def __init__(self, model):
        self.logits: dict[int, list[torch.Tensor]] = {}
        self.handles = []
        self.top_k = {}
        self.gates = gate_modules(model)
        for i, gate in self.gates.items():
            self.top_k[i] = model.config.num_experts_per_tok
            self.handles.append(gate.register_forward_hook(self._hook(i)))

    def _hook(self, i):
        def f(_mod, _inp, out):
            self.logits.setdefault(i, []).append(out[0].detach().float().reshape(-1, out[0].shape[-1]).clone())

        return f

    def reset(self):
        self.logits = {}

    def close(self):
        for h in self.handles:
            h.remove()


def routing_choice(logits: torch.Tensor, gate, config) -> tuple[torch.Tensor, float]:
    """The scores each router picks its top-k from (after group limiting), and the smallest gap that decided which
    groups were kept (inf without groups). Mirrors the routers of transformers 5.23: softmax (Qwen, Mixtral, OLMoE,
    DeepSeek-V2) or sigmoid + e_score_correction_bias (DeepSeek-V3, GLM-4.5); groups by max (V2) or top-2 sum."""
    mt = getattr(config, "model_type", "")
    logits = logits.float()
    if mt == "gpt_oss":  # top-k on the logits themselves (softmax over the chosen afterwards)
        return logits, math.inf
    if mt in ("deepseek_v3", "glm4_moe"):
        scores = torch.sigmoid(logits) + gate.e_score_correction_bias.float()
        groups, kept, by = config.n_group, config.topk_group, "top2"
    else:
        scores = torch.softmax(logits, dim=-1)
        grouped = mt == "deepseek_v2" and config.topk_method == "group_limited_greedy"
        groups, kept, by = (config.n_group, config.topk_group, "max") if grouped else (1, 1, "max")
    gmargin = math.inf
    if groups > 1:
        g = scores.view(scores.shape[0], groups, -1)
        gs = g.max(dim=-1).values if by == "max" else g.topk(2, dim=-1).values.sum(-1)
        srt = gs.sort(dim=-1, descending=True).values
        gmargin = float((srt[:, kept - 1] - srt[:, kept]).min())
        idx = gs.topk(kept, dim=-1).indices
        mask = torch.zeros_like(gs).scatter_(1, idx, 1.0).bool()
        scores = scores.masked_fill(~mask.unsqueeze(-1).expand_as(g).reshape(scores.shape), 0.0)
    return scores, gmargin


def router_margin(logits: torch.Tensor, k: int, gate=None, config=None) -> float:
    scores, gmargin = routing_choice(logits, gate, config)
    s = scores.sort(dim=-1, descending=True).values
    return min(float((s[:, k - 1] - s[:, k]).min()), gmargin)


def logit_margin(row: torch.Tensor) -> float:
    t = row.float().topk(2).values
    return float(t[0] - t[1])


@torch.no_grad()
def forward_logits(model, ids: list[int]) -> torch.Tensor:
    x = torch.tensor([ids])
    return model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0].float()


@torch.no_grad()
def greedy(model, prompt: list[int]):
    x = torch.tensor([prompt])
    out = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=MAX_NEW,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    ids = out.sequences[0, len(prompt):].tolist()
    step_logits = [lg[0].float() for lg in out.logits]
    return ids, step_logits


def analyse(model, prompt: list[int]):
    """Greedy-generate, then check all margins. Returns dict or None (and a reason) if a margin is too small."""
    ids, step_logits = greedy(model, prompt)
    full = prompt + ids
    rec = RouterRecorder(model)
    try:
        full_logits = forward_logits(model, full)
        routers = {i: v[0] for i, v in rec.logits.items()}
        rec.reset()
        prompt_logits = forward_logits(model, prompt)
        prompt_routers = {i: v[0] for i, v in rec.logits.items()}
    finally:
        rec.close()

    # (b) greedy margins, both on generate()'s own step logits and on the full forward re-computation.
    lmargin = math.inf
    for s, tok in enumerate(ids):
        row = full_logits[len(prompt) - 1 + s]
        if int(row.argmax()) != tok or int(step_logits[s].argmax()) != tok:
            return None, f"argmax mismatch at step {s}"
        lmargin = min(lmargin, logit_margin(row), logit_margin(step_logits[s]))
    # (a) router margins at every position of prompt + generated tokens.
    rmargin = math.inf
    for i, lg in routers.items():
        rmargin = min(rmargin, router_margin(lg, rec.top_k[i], rec.gates[i], model.config))
    unused = {}
    for i, lg in prompt_routers.items():
        k = rec.top_k[i]
        chosen = set(routing_choice(lg, rec.gates[i], model.config)[0].topk(k, dim=-1).indices.flatten().tolist())
        unused[str(i)] = sorted(set(range(lg.shape[-1])) - chosen)
    res = dict(
        ids=ids,
        prompt_logits=prompt_logits,
        lmargin=lmargin,
        rmargin=rmargin,
        unused=unused,
    )
    if lmargin < MARGIN:
        return None, f"logit margin {lmargin:.2e}"
    if routers and rmargin < MARGIN:
        return None, f"router margin {rmargin:.2e}"
    return res, "ok"


def check_clip(model, clip: float, prompt: list[int]) -> tuple[int, int]:
    """Count q/k/v elements (pre-clamp) whose |x| exceeds clip_qkv, over the prompt forward."""
    counts = [0, 0]
    handles = []

    def hook(_m, _i, out):
        counts[0] += int((out.abs() > clip).sum())
        counts[1] += out.numel()

    for layer in model.model.layers:
        a = layer.self_attn
        for m in (a.q_norm, a.k_norm, a.v_proj):
            handles.append(m.register_forward_hook(hook))
    try:
        forward_logits(model, prompt)
    finally:
        for h in handles:
            h.remove()
    return counts[0], counts[1]


# MXFP4 as gpt-oss's hub checkpoints store experts: per row of `in` values, blocks of 32 as one E8M0 exponent
# (`*_scales`, 2^(e-127)) and 16 bytes of E2M1 codes (`*_blocks`), element 2j in byte j's low nibble, 2j+1 in its high.
FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., out, in] float -> (blocks [..., out, in/32, 16] uint8, scales [..., out, in/32] uint8)."""
    *lead, n = w.shape
    x = w.float().reshape(*lead, n // 32, 32)
    amax = x.abs().amax(-1)
    e = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp(min=1e-30))) - 2, torch.full_like(amax, -127))
    e = e.clamp(-127, 127)
    scaled = x / torch.pow(2.0, e).unsqueeze(-1)
    codes = (scaled.unsqueeze(-1) - FP4_VALUES).abs().argmin(-1).to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (e + 127).to(torch.uint8).contiguous()


def mxfp4_dequantize(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    lo, hi = FP4_VALUES[(blocks & 0x0F).long()], FP4_VALUES[(blocks >> 4).long()]
    v = torch.stack([lo, hi], -1).reshape(*blocks.shape[:-1], 32)
    v = v * torch.pow(2.0, scales.float() - 127).unsqueeze(-1)
    return v.reshape(*scales.shape[:-1], scales.shape[-1] * 32)


def round_experts_to_mxfp4(model) -> None:
    """Replaces every expert matrix by its MXFP4 value (HF keeps them [E, in, out]; blocks run along `in`)."""
    with torch.no_grad():
        for layer in model.model.layers:
            ex = layer.mlp.experts
            for name in ("gate_up_proj", "down_proj"):
                p = getattr(ex, name)
                b, sc = mxfp4_quantize(p.transpose(1, 2))
                p.copy_(mxfp4_dequantize(b, sc).transpose(1, 2))


def store_experts_as_mxfp4(d: Path) -> None:
    """Rewrites a saved gpt-oss checkpoint with its experts as `*_blocks` / `*_scales` and an mxfp4
    quantization_config, as the hub's gpt-oss checkpoints are."""
    from safetensors.torch import load_file, save_file

    path = d / "model.safetensors"
    tensors = load_file(path)
    out = {}
    for k, v in tensors.items():
        if k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj"):
            b, sc = mxfp4_quantize(v.float().transpose(1, 2))
            assert torch.equal(mxfp4_dequantize(b, sc), v.float().transpose(1, 2)), f"{k}: not MXFP4-exact"
            out[k + "_blocks"], out[k + "_scales"] = b, sc
        else:
            out[k] = v
    save_file(out, path, metadata={"format": "pt"})
    cfg_path = d / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
    }
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def check_swiglu_clamp(model, prompt: list[int]) -> tuple[int, int]:
    """Counts gate/up values (of the experts' gate_up products) beyond swiglu_limit over the prompt forward."""
    counts = [0, 0]
    limit = model.config.swiglu_limit
    originals = []
    for layer in model.model.layers:
        ex = layer.mlp.experts
        original = ex._apply_gate

        def counting(gate_up, original=original):
            counts[0] += int((gate_up[..., ::2] > limit).sum()) + int((gate_up[..., 1::2].abs() > limit).sum())
            counts[1] += gate_up.numel()
            return original(gate_up)

        ex._apply_gate = counting
        originals.append((ex, original))
    try:
        forward_logits(model, prompt)
    finally:
        for ex, original in originals:
            ex._apply_gate = original
    return counts[0], counts[1]


def to_legacy(cfg: dict) -> dict:
    """transformers-5 `rope_parameters` -> legacy hub `rope_theta` + `rope_scaling`; `dtype` -> `torch_dtype`."""
    out = {}
    for k, v in cfg.items():
        if k == "rope_parameters":
            rp = dict(v)
            out["rope_theta"] = rp.pop("rope_theta")
            out["rope_scaling"] = None if rp.get("rope_type", "default") == "default" else rp
        elif k == "dtype":
            out["torch_dtype"] = v
        else:
            out[k] = v
    return out


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def load(path: Path, model_cls):
    return model_cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


# --------------------------------------------------------------------------------------------------------------


def build_case(case: dict) -> dict:
    name = case["name"]
    bf16 = case.get("bf16", False)
    std = case["config"]["initializer_range"]
    reason_counts: dict[str, int] = {}
    for seed in range(case["base_seed"], case["base_seed"] + MAX_SEED_TRIES):
        torch.manual_seed(seed)
        cfg_kwargs = json.loads(json.dumps(case["config"]))  # deep copy
        config = case["cfg_cls"](**cfg_kwargs)
        model = case["model_cls"](config).eval()
        assert model.config._attn_implementation == "eager", model.config._attn_implementation
        gen = torch.Generator().manual_seed(seed)
        randomise(model, gen, std, case.get("gate_scale", 1.0), bf16, case.get("zero_centred", False))
        if case.get("selection_bias"):
            with torch.no_grad():
                for gate in gate_modules(model).values():
                    b = gate.e_score_correction_bias
                    b.copy_(torch.randn(b.shape, generator=gen) * case["selection_bias"])
        if case.get("mxfp4"):
            round_experts_to_mxfp4(model)
        # prompt tokens avoid the special ids 0..3
        prompt = (torch.randint(4, config.vocab_size, (case.get("prompt_len", PROMPT_LEN),), generator=gen)).tolist()

        # eos handling: plain int, or (qwen3_moe) a list whose 2nd id is a token greedy decoding emits.
        model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=None, pad_token_id=None)
        res, why = analyse(model, prompt)
        if res is None:
            reason_counts[why.split(" ")[0]] = reason_counts.get(why.split(" ")[0], 0) + 1
            continue
        if case.get("eos") == "list_stop":
            ids = res["ids"]
            stop_at = next((s for s in range(3, MAX_NEW - 1) if ids[s] not in ids[:s] and ids[s] > 3), None)
            if stop_at is None:
                reason_counts["eos"] = reason_counts.get("eos", 0) + 1
                continue
            eos = [2, ids[stop_at]]
        else:
            eos = case["config"]["eos_token_id"]
            eos_list = eos if isinstance(eos, list) else [eos]
            if any(t in eos_list for t in res["ids"]):
                reason_counts["eos"] = reason_counts.get("eos", 0) + 1
                continue
        break
    else:
        raise RuntimeError(f"{name}: no seed with margins >= {MARGIN} in {MAX_SEED_TRIES} tries: {reason_counts}")

    model.config.eos_token_id = eos
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=eos, pad_token_id=None)

    # ---- save
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    save_kw = {}
    if "max_shard_size" in case:
        save_kw["max_shard_size"] = case["max_shard_size"]
    if bf16:
        model.to(torch.bfloat16)
    model.save_pretrained(d, **save_kw)
    if case.get("mxfp4"):
        store_experts_as_mxfp4(d)
    if bf16:
        model.to(torch.float32)  # exact: weights were bf16-rounded already

    # ---- reload as HF would and compute the reference outputs from the reloaded model
    ref = load(d, case["model_cls"])
    logits = forward_logits(ref, prompt)
    diff = float((logits - res["prompt_logits"]).abs().max())
    # (The DeltaNet models differ by float rounding after a reload: their weights land in other memory layouts.)
    assert diff <= case.get("reload_tolerance", 0.0), f"{name}: reloaded model differs from in-memory model by {diff}"
    ids, _ = greedy(ref, prompt)
    exp_ids = res["ids"]
    if isinstance(eos, list):
        cut = next(i for i, t in enumerate(exp_ids) if t in eos)
        exp_ids = exp_ids[: cut + 1]
        assert len(exp_ids) < MAX_NEW
    assert ids == exp_ids, f"{name}: greedy after reload {ids} != {exp_ids}"

    # ---- config rewrites (legacy hub forms), proven equivalent by re-loading
    cfg_path = d / "config.json"
    cfg_json = json.loads(cfg_path.read_text())
    rewritten = None
    if case.get("legacy"):
        assert "rope_parameters" in cfg_json
        rewritten = to_legacy(cfg_json)
    if case.get("hub_num_experts"):
        rewritten = dict(rewritten or cfg_json)
        assert "num_local_experts" in rewritten and "num_experts" not in rewritten
        rewritten = {("num_experts" if k == "num_local_experts" else k): v for k, v in rewritten.items()}
    if rewritten is not None:
        cfg_path.write_text(json.dumps(rewritten, indent=2, sort_keys=True) + "\n")
        ref2 = load(d, case["model_cls"])
        d2 = float((forward_logits(ref2, prompt) - logits).abs().max())
        assert d2 == 0.0, f"{name}: rewritten config changes logits by {d2}"
        assert greedy(ref2, prompt)[0] == ids
        rp = ref2.config.rope_parameters
        assert rp == ref.config.rope_parameters, (rp, ref.config.rope_parameters)

    # ---- sanity checks on what was written
    files = sorted(f.name for f in d.iterdir())
    if "max_shard_size" in case:
        shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
        assert len(shards) >= 2 and "model.safetensors.index.json" in files, files
    gc = json.loads((d / "generation_config.json").read_text())
    assert gc.get("eos_token_id") == eos, gc
    clip_info = None
    if case["config"].get("clip_qkv"):
        over, total = check_clip(ref, case["config"]["clip_qkv"], prompt)
        assert over > 0, "clip_qkv never clamps"
        clip_info = f"{over}/{total} q/k/v elements clamped"
    if case["config"].get("qkv_bias", False) or case["cfg_cls"] is Qwen2Config:
        b = ref.model.layers[0].self_attn.q_proj.bias
        assert b is not None and float(b.detach().abs().min()) > 0

    if case["cfg_cls"] is GptOssConfig:
        over, total = check_swiglu_clamp(ref, prompt)
        assert over > 0, "swiglu_limit never clamps"
        clip_info = f"{over}/{total} gate/up values clamped"
        assert len(prompt) > case["config"]["sliding_window"]
        assert float(ref.model.layers[0].self_attn.sinks.detach().abs().min()) > 0

    is_moe = bool(res["unused"])
    expected = {
        "case": name,
        "model_type": ref.config.model_type,
        "dtype": "bfloat16" if bf16 else "float32",
        "tokens": prompt,
        "logits": fl(logits),
        "greedy": {"prompt": prompt, "max_new_tokens": MAX_NEW, "ids": ids},
    }
    if is_moe:
        expected["unused_experts"] = res["unused"]
    (d / "expected.json").write_text(json.dumps(expected) + "\n")

    nparams = sum(p.numel() for p in ref.parameters())
    return dict(
        case=name,
        params=nparams,
        bytes=dir_bytes(d),
        seed=seed,
        rmargin=res["rmargin"] if is_moe else None,
        lmargin=res["lmargin"],
        unused=res["unused"] if is_moe else None,
        files=files,
        clip=clip_info,
        greedy=ids,
        rejected=reason_counts,
    )


def main(argv: list[str]) -> int:
    wanted = set(argv[1:])
    cases = [c for c in CASES if not wanted or c["name"] in wanted]
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in cases:
        print(f"== {case['name']}", flush=True)
        r = build_case(case)
        rows.append(r)
        print(f"   seed={r['seed']} greedy={r['greedy']} files={r['files']} rejected={r['rejected']}")
        if r["unused"] is not None:
            print(f"   unused_experts={r['unused']}")
        if r["clip"]:
            print(f"   clip_qkv: {r['clip']}")

    print()
    print(f"{'case':<18} {'params':>8} {'bytes':>9} {'seed':>6} {'min router margin':>18} {'min logit margin':>17}")
    for r in rows:
        rm = "-" if r["rmargin"] is None else f"{r['rmargin']:.4g}"
        print(f"{r['case']:<18} {r['params']:>8} {r['bytes']:>9} {r['seed']:>6} {rm:>18} {r['lmargin']:>17.4g}")
    total = dir_bytes(OUT)
    print(f"total fixtures folder: {total} bytes")
    if not wanted:
        assert any(any(v) for r in rows if r["unused"] for v in r["unused"].values()), "no unused expert anywhere"
        assert total <= SIZE_BUDGET, f"fixtures folder too large: {total}"
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
