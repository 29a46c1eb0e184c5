#!/usr/bin/env python3
"""Makes the GGUF fixtures (Tests/Fixtures/gguf) with llama.cpp's own tools, for GGUFTests.

  blocks.gguf      every block type swift-moe reads, as random blocks (valid scales), beside what gguf-py's
                   `gguf.quants.dequantize` makes of them (tensors `<type>.expected`, f32): dequantisation must
                   match bit for bit.
  quantize.gguf    rows of f32 values of several shapes of distribution (tensor `input`) and llama.cpp's quantiser's
                   blocks of them for every type swift-moe writes (tensor `<type>`, from `ggml_quantize_chunk` in
                   llama-cpp-python's libggml-base, no importance matrix): `quantize` must match bit for bit.
  writer/          llama-quantize's files from some arch/*.gguf (`moe quantize` must write them byte for byte) and
                   mix.json, the tensor types llama.cpp's presets give two 16-layer models.
  arch/<case>.gguf the tiny HF fixtures of Tests/Fixtures/models converted to f32 GGUF by llama.cpp's
                   `convert_hf_to_gguf.py` (a tiny byte-level tokenizer is added for the converter, declared
                   `qwen2` to its pre-tokenizer check); their logits must equal the HF logits of expected.json.
  quant/<type>.gguf two small Qwen3-MoE models (hidden 64 for the 32-value block types, hidden 256 for the
                   256-value ones) converted to f32 and quantised by llama.cpp's quantiser
                   (`llama_cpp.llama_model_quantize`, `pure`: every matrix in the type, except the router, which
                   llama.cpp never quantises), plus a Q4_K_M mix. quant/expected.json holds, per file, the prompt,
                   llama.cpp's logits (f32 KV cache) and greedy ids, and the exact reference: llama.cpp's logits on
                   the same weights dequantised by gguf-py into an f32 GGUF (so only the activations' rounding
                   differs: llama.cpp quantises them to 8 bits for its dot products, swift-moe keeps f32).

Run with the peers venv (torch, transformers, llama-cpp-python; `bash ../shared/tools/peers-setup.sh`):
    ~/.cache/moe-peers/bin/python scripts/make_gguf_fixtures.py [quantize|writer|arch [case ...]]
    (only quantize.gguf / writer/ / the named arch/ cases)
"""
import ctypes, json, os, shutil, subprocess, sys, tempfile
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/Fixtures/gguf")
PEERS = os.environ.get("PEERS_VENV", os.path.expanduser("~/.cache/moe-peers"))
LLAMA = os.path.join(PEERS, "llama.cpp")
sys.path[:0] = [os.path.join(LLAMA, "gguf-py")]
import gguf  # noqa: E402  (llama.cpp's own gguf-py, the converter's)

PROMPT = [1, 5, 17, 42, 99, 3, 64, 120, 7, 33]
GREEDY = 6


def blocks_fixture(path):
    """Random blocks of every type with finite scales, and gguf-py's dequantisation of them."""
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, arch="blocks")
    Q = gguf.GGMLQuantizationType
    # The f16 scales' byte offsets per block (randomised bytes there could be inf/NaN).
    halves = {Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0], Q.Q2_K: [80, 82],
              Q.Q3_K: [108], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208], Q.IQ4_NL: [0], Q.IQ4_XS: [0]}
    for qt in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS,
               Q.MXFP4]:
        elements, size = gguf.GGML_QUANT_SIZES[qt]
        rows, blocks = 3, 2
        raw = rng.integers(0, 256, size=(rows * blocks, size), dtype=np.uint8)
        for off in halves.get(qt, []):
            d = rng.uniform(-0.05, 0.05, size=rows * blocks).astype(np.float16)
            d[0] = np.float16(6.0e-8)  # a subnormal half
            raw[:, off:off + 2] = d.view(np.uint8).reshape(-1, 2)
        if qt == Q.MXFP4:
            raw[:, 0] = rng.integers(0, 256, size=rows * blocks)
            raw[0, 0], raw[1, 0] = 0, 1  # the subnormal scales
        data = raw.reshape(rows, blocks * size)
        expected = gguf.quants.dequantize(data, qt).astype(np.float32)
        assert expected.shape == (rows, blocks * elements)
        w.add_tensor(qt.name, data, raw_dtype=qt)
        w.add_tensor(qt.name + ".expected", expected)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def add_tokenizer(directory, vocab_size):
    """A byte-level BPE tokenizer of `vocab_size` - 2 byte tokens and one merge (the last id is left for the special
    token that some tokenizer classes add): what the converter needs to write a vocabulary; tests feed ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import PreTrainedTokenizerFast
    chars = pre_tokenizers.ByteLevel.alphabet()
    byte_chars = sorted(chars)[:vocab_size - 2]
    vocab = {c: i for i, c in enumerate(byte_chars)}
    vocab[byte_chars[0] + byte_chars[1]] = len(vocab)   # llama.cpp wants at least one merge
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(byte_chars[0], byte_chars[1])]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(directory)


def convert(hf_dir, out, outtype="f32", extra=()):
    code = f"""
import sys
sys.path[:0] = [{LLAMA!r}, {os.path.join(LLAMA, 'gguf-py')!r}]
import convert_hf_to_gguf as convert
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
import conversion.llama as llama
llama.LlamaModel.set_vocab = lambda self: self._set_vocab_gpt2()
import conversion.glm as glm
glm.Glm4MoeModel.set_vocab = lambda self: self._set_vocab_gpt2()
sys.argv = ["convert_hf_to_gguf", {hf_dir!r}, "--outfile", {out!r}, "--outtype", {outtype!r}] + {list(extra)!r}
convert.main()
"""
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL, stderr=None if os.environ.get("VERBOSE") else subprocess.DEVNULL)


def quantize(src, dst, ftype):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    params.pure = ftype not in (15,)  # Q4_K_M keeps llama.cpp's mix
    assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) == 0, dst


def dequantized_copy(src, dst):
    """Every tensor of `src` dequantised by gguf-py into f32, same metadata: the exact reference's weights."""
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch=arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, field.contents(), vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(name, field.contents(), vtype)
    for t in r.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, values.reshape([int(d) for d in reversed(t.shape)]))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def llama_logits(path):
    """llama.cpp's logits for every prompt position (f32 KV cache), and its greedy continuation."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, n_threads=2, logits_all=True, verbose=False,
                          type_k=0, type_v=0, flash_attn=False)
    llm.eval(PROMPT)
    logits = np.array(llm.scores[:len(PROMPT)], dtype=np.float32)
    greedy = []
    nxt = int(np.argmax(logits[-1]))
    for _ in range(GREEDY):
        greedy.append(nxt)
        llm.eval([nxt])
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    del llm
    return logits, greedy


def make_qwen3_moe(directory, hidden, width, heads, head_dim, seed, layers=2):
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    torch.manual_seed(seed)
    config = Qwen3MoeConfig(vocab_size=128, hidden_size=hidden, intermediate_size=width, moe_intermediate_size=width,
                            num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads // 2,
                            head_dim=head_dim, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                            max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
                            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, initializer_range=0.08)
    model = Qwen3MoeForCausalLM(config).eval()
    with torch.no_grad():   # norms away from 1, so that they matter
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    model.save_pretrained(directory)
    add_tokenizer(directory, 128)


def make_qwen3_next(directory):
    """Qwen3-Next with every layer MoE (llama.cpp's qwen3next has no dense layers): 3 Gated DeltaNet layers (2 key
    heads, 4 value heads) and gated attention in the last; zero-centred norms drawn around 0 so that they matter."""
    import torch
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM
    torch.manual_seed(11)
    config = Qwen3NextConfig(vocab_size=128, hidden_size=32, intermediate_size=32, moe_intermediate_size=16,
                             shared_expert_intermediate_size=24, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                             linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                             linear_num_value_heads=4, layer_types=["linear_attention"] * 3 + ["full_attention"],
                             max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1,
                             eos_token_id=2, initializer_range=0.1,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})
    model = Qwen3NextForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") and not name.endswith("linear_attn.norm.weight"):
                p.copy_(0.2 * torch.randn_like(p))
    model.save_pretrained(directory)
    add_tokenizer(directory, 128)


def make_qwen2_moe(directory):
    import torch
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM
    torch.manual_seed(3)
    config = Qwen2MoeConfig(vocab_size=128, hidden_size=32, intermediate_size=48, moe_intermediate_size=32,
                            shared_expert_intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False,
                            decoder_sparse_step=1, max_position_embeddings=256, rope_theta=1e6,
                            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, initializer_range=0.15)
    model = Qwen2MoeForCausalLM(config).eval()
    with torch.no_grad():   # random q/k/v biases
        for name, p in model.named_parameters():
            if name.endswith("proj.bias"):
                p.copy_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    add_tokenizer(directory, 128)


def make_olmoe(directory):
    import torch
    from transformers import OlmoeConfig, OlmoeForCausalLM
    torch.manual_seed(4)
    config = OlmoeConfig(vocab_size=128, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, num_experts=4, num_experts_per_tok=2,
                         norm_topk_prob=False, max_position_embeddings=256, rope_theta=10000.0,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         initializer_range=0.15)
    OlmoeForCausalLM(config).eval().save_pretrained(directory)
    add_tokenizer(directory, 128)


def transformers_logits(directory, prompt=PROMPT):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return model(torch.tensor([prompt])).logits[0].float().numpy()


def transformers_greedy(directory, prompt):
    """HF `generate`'s greedy continuation of `prompt` (GREEDY tokens)."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=GREEDY, do_sample=False, min_new_tokens=GREEDY)
    return out[0, len(prompt):].tolist()


def quantize_fixture(path):
    """f32 rows that exercise the scale searches, and llama.cpp's blocks of them for every type."""
    import llama_cpp
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    rng = np.random.default_rng(3)
    n = 512
    rows = [rng.normal(0, 0.02, n),                       # typical weights
            rng.normal(0, 1, n) * rng.choice([1, 1, 1, 1, 1, 1, 1, 25], n),  # outliers
            rng.uniform(0, 1, n),                         # one-signed
            -rng.uniform(0, 1, n),
            rng.standard_t(2, n),                         # heavy tails
            rng.normal(0, 1e-6, n),                       # tiny
            rng.normal(0, 300, n),                        # large
            np.full(n, 0.37), np.zeros(n),                # constant, zero
            np.where(np.arange(n) % 64 < 16, 0, rng.normal(0, 1, n)),  # zero groups inside blocks
            np.where(np.arange(n) < 256, 0, rng.normal(0, 1, n)),      # a zero super-block
            rng.integers(-8, 8, n) * 0.125,               # on a grid already
            rng.normal(0, 1, n) ** 3,
            rng.laplace(0, 0.05, n),
            np.sin(np.arange(n) * 0.1) * 0.5,
            rng.normal(0.3, 0.05, n)]
    data = np.ascontiguousarray(np.stack(rows).astype(np.float32))
    w = gguf.GGUFWriter(path, arch="quantize")
    w.add_tensor("input", data)
    Q = gguf.GGMLQuantizationType
    for qt in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS,
               Q.MXFP4]:
        elements, size = gguf.GGML_QUANT_SIZES[qt]
        out = np.zeros((data.shape[0], n // elements * size), dtype=np.uint8)
        written = lib.ggml_quantize_chunk(int(qt), data.ctypes.data, out.ctypes.data, 0, data.shape[0], n, None)
        assert written == out.size, (qt.name, written, out.size)
        w.add_tensor(qt.name, out, raw_dtype=qt)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


WRITER_PRESETS = {"qwen3_moe": {"q4_k_m": 15, "q3_k_m": 12, "iq4_xs": 30, "mxfp4_moe": 38},
                  "mixtral": {"q4_k_m": 15, "q2_k": 10}, "llama": {"q5_k_m": 17, "q6_k": 18}}
MIX_PRESETS = {"q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15,
               "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "iq4_nl": 25, "iq4_xs": 30, "mxfp4_moe": 38, "q8_0": 7}


def llama_quantize_mix(src, dst, ftype):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) == 0, dst


def writer_fixtures(tmp):
    """writer/<case>.<preset>.gguf: llama-quantize's files from arch/<case>.gguf, which `moe quantize` must
    reproduce byte for byte; writer/mix.json: the type llama.cpp gives every tensor of two 16-layer models
    (Qwen3-MoE with 8 experts, dense Llama; 256-wide so that no K-quant falls back) under each preset."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM
    os.makedirs(os.path.join(OUT, "writer"), exist_ok=True)
    for case, presets in WRITER_PRESETS.items():
        for name, ftype in presets.items():
            out = os.path.join(OUT, "writer", f"{case}.{name}.gguf")
            llama_quantize_mix(os.path.join(OUT, "arch", case + ".gguf"), out, ftype)
            print(f"writer/{case}.{name}.gguf {os.path.getsize(out)} bytes")
    torch.manual_seed(0)
    models = {
        "qwen3_moe": Qwen3MoeForCausalLM(Qwen3MoeConfig(
            vocab_size=128, hidden_size=256, intermediate_size=256, moe_intermediate_size=256, num_hidden_layers=16,
            num_attention_heads=4, num_key_value_heads=1, head_dim=64, num_experts=8, num_experts_per_tok=2,
            tie_word_embeddings=False)),
        "llama": LlamaForCausalLM(LlamaConfig(
            vocab_size=128, hidden_size=256, intermediate_size=256, num_hidden_layers=16, num_attention_heads=4,
            num_key_value_heads=4, tie_word_embeddings=True)),
    }
    mix = {}
    for case, model in models.items():
        hf = os.path.join(tmp, "mix-" + case)
        model.save_pretrained(hf)
        add_tokenizer(hf, 128)
        f32 = hf + ".gguf"
        convert(hf, f32)
        tensors = [[t.name, [int(d) for d in t.shape]] for t in gguf.GGUFReader(f32).tensors]
        types = {}
        for name, ftype in MIX_PRESETS.items():
            out = os.path.join(tmp, f"mix-{case}.{name}.gguf")
            llama_quantize_mix(f32, out, ftype)
            types[name] = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
            os.remove(out)
        mix[case] = {"architecture": gguf.GGUFReader(f32).fields["general.architecture"].contents(),
                     "layers": model.config.num_hidden_layers, "heads": model.config.num_attention_heads,
                     "kv_heads": model.config.num_key_value_heads,
                     "experts": getattr(model.config, "num_experts", 0), "tensors": tensors, "types": types}
    with open(os.path.join(OUT, "writer", "mix.json"), "w") as f:
        json.dump(mix, f)
    print("writer/mix.json")


def arch_fixture(case, hf, tmp):
    """arch/<case>.gguf from the HF directory `hf`, and its expected.json entry."""
    config = json.load(open(os.path.join(hf, "config.json")))
    if config["model_type"] == "deepseek_v3" and "scoring_func" not in config:
        # Hub DeepSeek-V3 configs name their sigmoid gating (transformers' saves do not); the converter writes
        # llama.cpp's expert_gating_func from it, and llama.cpp assumes softmax without it.
        config["scoring_func"] = "sigmoid"
        json.dump(config, open(os.path.join(hf, "config.json"), "w"), indent=2)
    if case in CONFIG_EDITS:
        for k, v in CONFIG_EDITS[case].items():
            if isinstance(v, dict):
                config[k].update(v)
            else:
                config[k] = v
        json.dump(config, open(os.path.join(hf, "config.json"), "w"), indent=2)
    if not os.path.exists(os.path.join(hf, "tokenizer.json")):
        add_tokenizer(hf, json.load(open(os.path.join(hf, "config.json")))["vocab_size"])
    out = os.path.join(OUT, "arch", case + ".gguf")
    convert(hf, out, extra=CONVERT_ARGS.get(case, ()))
    if case in HF_ONLY_CASES:
        # llama-cpp-python 0.3.36 cannot decode a glm4moe file that holds the nextn block (llama_decode -1; the
        # converter is newer): transformers' logits and greedy ids are the reference (the prompt within the
        # training fixture's vocabulary of 64).
        prompt = [t % config["vocab_size"] for t in PROMPT]
        print(f"arch/{case}.gguf {os.path.getsize(out)} bytes, transformers only")
        return {"file": case + ".gguf", "tokens": prompt, "greedy": transformers_greedy(hf, prompt), "reference": "transformers",
                "logits": transformers_logits(hf, prompt).tolist()}
    hf_logits = transformers_logits(hf)
    logits, greedy = llama_logits(out)
    # Where the GGUF holds less than config.json (llama.cpp's Qwen3 converter drops `llama3` RoPE scaling),
    # llama.cpp's logits are the reference: the file is what the tests read.
    agree = float(np.abs(logits - hf_logits).max()) < 1e-4
    if case in TRANSFORMERS_REFERENCE:
        assert float(np.abs(logits - hf_logits).max()) < TRANSFORMERS_REFERENCE[case], f"llama.cpp and transformers disagree: {np.abs(logits - hf_logits).max(axis=1)}"
        agree = True
    print(f"arch/{case}.gguf {os.path.getsize(out)} bytes, llama.cpp vs HF {np.abs(logits - hf_logits).max():.2e}")
    return {"file": case + ".gguf", "tokens": PROMPT, "llama_greedy": greedy,
            "reference": "transformers" if agree else "llama.cpp",
            "logits": (hf_logits if agree else logits).tolist()}


# HF fixtures (Tests/Fixtures/models) converted as they are.
# (llama.cpp reads deepseek2 without q_lora_rank only at 27 layers, its V2-Lite: that fixture is left out.)
# glm4_moe_mtp: the training fixture with a multi-token-prediction module, which llama.cpp writes as blk.2.nextn.*.
# qwen3_5_moe: llama.cpp's qwen35moe tiles the value heads (its converter reorders them); qwen3_next: made below.
# gpt_oss_mxfp4: its experts stay MXFP4 (the converter repacks the hub's blocks); llama.cpp's clamped SwiGLU has the
# fixed limit 7 and its yarn truncates, so the copy converted says so (CONFIG_EDITS), and transformers' logits on it are
# the reference (llama.cpp rounds the activations of its MXFP4 products to 8 bits: near, not within 1e-4).
HF_ARCH_CASES = ["mixtral", "qwen2", "qwen3", "llama", "deepseek_v3", "glm4_moe", "glm4_moe_mtp", "qwen3_5_moe",
                 "gpt_oss_mxfp4"]
MADE_CASES = {"qwen3_next": make_qwen3_next}
# The hybrid models' converter asks for their multi-token-prediction layers unless told there are none.
CONVERT_ARGS = {"qwen3_5_moe": ["--no-mtp"], "qwen3_next": ["--no-mtp"]}
SOURCES = {"glm4_moe_mtp": "Tests/Fixtures/training/glm4_moe_mtp"}
CONFIG_EDITS = {"gpt_oss_mxfp4": {"swiglu_limit": 7.0, "rope_parameters": {"truncate": True}}}
TRANSFORMERS_REFERENCE = {"gpt_oss_mxfp4": 0.1}   # case: how near llama.cpp must still be
HF_ONLY_CASES = {"glm4_moe_mtp"}


def copy_source(case, dest):
    """The HF directory of `case` (model files only) into `dest`."""
    src = os.path.join(ROOT, SOURCES.get(case, os.path.join("Tests/Fixtures/models", case)))
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("grads.safetensors", "expected.json"))


def main():
    os.makedirs(OUT, exist_ok=True)
    if sys.argv[1:2] == ["arch"]:
        # Only the named HF-fixture cases, merged into arch/expected.json.
        tmp = tempfile.mkdtemp(prefix="moe-gguf-")
        path = os.path.join(OUT, "arch", "expected.json")
        expected = json.load(open(path))
        for case in sys.argv[2:] or HF_ARCH_CASES:
            hf = os.path.join(tmp, case)
            if case in MADE_CASES:
                MADE_CASES[case](hf)
            else:
                copy_source(case, hf)
            expected[case] = arch_fixture(case, hf, tmp)
        with open(path, "w") as f:
            json.dump(expected, f)
        shutil.rmtree(tmp)
        return
    quantize_fixture(os.path.join(OUT, "quantize.gguf"))
    print("quantize.gguf")
    if sys.argv[1:] == ["quantize"]:
        return
    if sys.argv[1:] == ["writer"]:
        tmp = tempfile.mkdtemp(prefix="moe-gguf-")
        writer_fixtures(tmp)
        shutil.rmtree(tmp)
        return
    blocks_fixture(os.path.join(OUT, "blocks.gguf"))
    print("blocks.gguf")

    tmp = tempfile.mkdtemp(prefix="moe-gguf-")
    os.makedirs(os.path.join(OUT, "arch"), exist_ok=True)
    expected = {}
    cases = {}
    for case in HF_ARCH_CASES:
        cases[case] = os.path.join(tmp, case)
        copy_source(case, cases[case])
    # llama.cpp's qwen2moe/qwen3moe have no dense layers, which the HF fixtures of those have, and its olmoe no
    # grouped-query attention: models that llama.cpp runs, made here.
    cases["olmoe"] = os.path.join(tmp, "olmoe")
    make_olmoe(cases["olmoe"])
    cases["qwen2_moe"] = os.path.join(tmp, "qwen2_moe")
    make_qwen2_moe(cases["qwen2_moe"])
    cases["qwen3_moe"] = os.path.join(tmp, "qwen3_moe")
    make_qwen3_moe(cases["qwen3_moe"], hidden=32, width=32, heads=4, head_dim=16, seed=5)
    for case, make in MADE_CASES.items():
        cases[case] = os.path.join(tmp, case)
        make(cases[case])
    arch_expected = {}
    for case, hf in cases.items():
        arch_expected[case] = arch_fixture(case, hf, tmp)
    with open(os.path.join(OUT, "arch", "expected.json"), "w") as f:
        json.dump(arch_expected, f)

    os.makedirs(os.path.join(OUT, "quant"), exist_ok=True)
    small, large = os.path.join(tmp, "small"), os.path.join(tmp, "large")
    make_qwen3_moe(small, hidden=64, width=64, heads=2, head_dim=32, seed=11)
    make_qwen3_moe(large, hidden=256, width=256, heads=4, head_dim=64, seed=12, layers=1)
    f32 = {}
    for name, d in [("small", small), ("large", large)]:
        f32[name] = os.path.join(tmp, name + ".f32.gguf")
        convert(d, f32[name])
    # llama.cpp file types (llama_ftype): with `pure`, every matrix of the type's base block type.
    ftypes = {"f16": ("small", 1), "bf16": ("small", 32), "q8_0": ("small", 7), "q4_0": ("small", 2),
              "q4_1": ("small", 3), "q5_0": ("small", 8), "q5_1": ("small", 9), "iq4_nl": ("small", 25),
              "mxfp4": ("small", 38), "q2_k": ("large", 10), "q3_k": ("large", 11), "q4_k": ("large", 14),
              "q5_k": ("large", 16), "q6_k": ("large", 18), "iq4_xs": ("large", 30), "q4_k_m": ("large", 15)}
    for name, (base, ftype) in ftypes.items():
        out = os.path.join(OUT, "quant", name + ".gguf")
        quantize(f32[base], out, ftype)
        exact_path = os.path.join(tmp, name + ".dequantized.gguf")
        dequantized_copy(out, exact_path)
        logits, greedy = llama_logits(out)
        exact, exact_greedy = llama_logits(exact_path)
        types = sorted({t.tensor_type.name for t in gguf.GGUFReader(out).tensors})
        expected[name] = {"file": name + ".gguf", "types": types, "tokens": PROMPT,
                          "llama_logits": logits.tolist(), "llama_greedy": greedy,
                          "exact_logits": exact.tolist(), "exact_greedy": exact_greedy}
        err = float(np.abs(logits - exact).max())
        print(f"quant/{name}.gguf {os.path.getsize(out)} bytes, types {types}, llama.cpp vs exact {err:.2e}")
    with open(os.path.join(OUT, "quant", "expected.json"), "w") as f:
        json.dump(expected, f)
    writer_fixtures(tmp)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
