#!/usr/bin/env python3
"""Writes the small seed corpus of the parser fuzz targets (Fuzz/corpus/<target>/), standard library only:
valid files of each format, tiny, so that libFuzzer starts from inputs that reach deep into each reader.

    python3 scripts/make_fuzz_corpus.py [Fuzz/corpus]
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def gguf(kvs, tensors, alignment=32):
    """GGUF v3: header, key/values (u32 type: 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array), tensor infos, data."""
    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b

    def value(kind, v):
        if kind == 8:
            return string(v)
        if kind == 9:
            element, items = v
            return struct.pack("<IQ", element, len(items)) + b"".join(value(element, x) for x in items)
        return struct.pack({4: "<I", 5: "<i", 6: "<f", 7: "<?"}[kind], v)

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, kind, v in kvs:
        out += string(key) + struct.pack("<I", kind) + value(kind, v)
    offset, blobs = 0, b""
    for name, ggml_type, dims, data in tensors:
        out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ggml_type, offset)
        pad = b"\0" * (-len(data) % alignment)
        blobs += data + pad
        offset += len(data) + len(pad)
    out += b"\0" * (-len(out) % alignment)
    return out + blobs


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Fuzz", "corpus")
    files = {}
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    files["safetensors/two_tensors"] = safetensors([("a.weight", "F32", [2, 3], f32), ("b", "BF16", [2], b"\x80\x3f\x00\x40")],
                                                   {"format": "pt"})
    files["safetensors/empty_tensor"] = safetensors([("e", "F16", [0, 4], b""), ("i", "I64", [1], struct.pack("<q", 7))])
    files["gguf/llama_kv"] = gguf(
        [("general.architecture", 8, "llama"), ("general.alignment", 4, 32), ("llama.block_count", 4, 1),
         ("llama.context_length", 4, 64), ("llama.rope.freq_base", 6, 10000.0),
         ("tokenizer.ggml.tokens", 9, (8, ["a", "b", "<s>"])), ("tokenizer.ggml.scores", 9, (6, [0.0, -1.0, 0.0])),
         ("general.flag", 7, True)],
        [("token_embd.weight", 0, [2, 3], f32), ("output_norm.weight", 0, [2], struct.pack("<2f", 1, 1))])
    files["gguf/q8_0_block"] = gguf([("general.architecture", 8, "qwen2")],
                                    [("blk.0.ffn_up.weight", 8, [32, 1], struct.pack("<e", 0.5) + bytes(range(32)))])
    for name in ("qwen3_moe", "mixtral", "llama"):
        with open(os.path.join(ROOT, "Tests", "Fixtures", "models", name, "config.json"), "rb") as f:
            files[f"config/{name}"] = f.read()
    byte_level = {
        "version": "1.0", "added_tokens": [{"id": 6, "content": "<|im_start|>", "special": True, "single_word": False,
                                            "lstrip": False, "rstrip": False, "normalized": False}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+(?!\S)|\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4, "c": 5}, "merges": ["a b", "Ġ ab"]},
    }
    files["tokenizer/byte_level_bpe"] = json.dumps(byte_level).encode()
    sentencepiece = dict(byte_level, normalizer={"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        pre_tokenizer=None, post_processor={"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                                     {"Sequence": {"id": "A", "type_id": 0}}],
                                            "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [7], "tokens": ["<s>"]}}},
        decoder={"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                                   {"type": "ByteFallback"}, {"type": "Fuse"}]},
        model=dict(byte_level["model"], byte_fallback=True, vocab={"<unk>": 0, "▁": 1, "a": 2, "b": 3, "▁a": 4, "<0x41>": 5,
                                                                    "<s>": 7}, merges=["▁ a"], unk_token="<unk>"))
    files["tokenizer/sentencepiece_bpe"] = json.dumps(sentencepiece).encode()
    files["chat-template/chatml"] = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}").encode()
    files["chat-template/features"] = (
        "{%- set sys = messages[0]['content'] if messages[0]['role'] == 'system' else '' -%}{{ bos_token }}"
        "{%- for m in messages[1:] if m.role != 'system' %}{{ loop.index ~ ':' ~ m.content | trim | upper }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}{{ sys[:3] ~ (messages | length) ~ range(3) | join('-') }}"
        "{% macro f(x, y=2) %}{{ x * y }}{% endmacro %}{{ f(4) }}{{ {'k': [1, 2.5, none, true]} | tojson }}"
        "{% if raise %}{{ raise_exception('no') }}{% endif %}").encode()
    files["jsonl/text"] = b'{"text": "one document"}\n{"text": "two \\u00e9 \\ud83d\\ude00"}\n\n'
    files["jsonl/messages"] = (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n'
                               b'{"messages": [{"role": "system", "content": ""}, {"role": "assistant", "content": "x"}]}\n')
    for rel, data in files.items():
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    print(f"{len(files)} seed files -> {out}")


if __name__ == "__main__":
    main()
