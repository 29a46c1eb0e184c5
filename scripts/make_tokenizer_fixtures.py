#!/usr/bin/env python3
"""Builds the tokenizer fixtures for Tests/MoETokenizerTests/TokenizerTests.swift with Hugging Face `tokenizers`
and `tiktoken` (no download):

    ~/.cache/moe-peers/bin/python scripts/make_tokenizer_fixtures.py

Writes Tests/Fixtures/tokenizer/
  bytelevel/{tokenizer.json, tokenizer_config.json}   byte-level BPE (Qwen2 split regex + ByteLevel, NFC,
                                                       <|endoftext|> appended by a TemplateProcessing, added tokens
                                                       with normalized / lstrip / rstrip / single_word)
  sentencepiece/{tokenizer.json, tokenizer_config.json} SentencePiece-style BPE like Mistral's (Metaspace
                                                       prepend_scheme "first", byte_fallback, unk + fuse_unk,
                                                       Replace/ByteFallback/Fuse/Strip decoder, "<s> $A")
  tiktoken/ranks.tiktoken                              the byte-level vocabulary as tiktoken ranks
  corpus.json                                          texts + HF / tiktoken ids and decodes for every variant

Variants are patches of a base tokenizer.json (applied by the Swift tests to the parsed JSON, as here):
bytelevel_ignore_merges, sentencepiece_nofallback, sentencepiece_legacy (Llama-2's Prepend+Replace normalizer).
"""
import base64
import copy
import json
import os
import unicodedata

import tiktoken
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "tokenizer")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

TRAIN = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away into the forest.",
    "Tokenizers split text into tokens. A byte-level BPE never needs an unknown token, because every byte is in the vocabulary.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "I'm sure you'll agree: we've done what they'd planned, and it isn't over. Don't stop!",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < count; ++i) {\n\tsum += values[i] * weights[i];\n}\nreturn sum / count;\n",
    "import json\nwith open('config.json') as f:\n    config = json.load(f)\nprint(config['hidden_size'])\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 2024 3.14159 2.71828 1e-5 0xFF",
    "人工智能正在改变世界。我们使用大型语言模型来生成文本、翻译语言和回答问题。",
    "混合专家模型在每个词元只激活一部分参数，因此推理速度很快。",
    "日本語のテキストも含まれています。東京は日本の首都です。ひらがなとカタカナ。",
    "한국어 문장도 있습니다. 서울은 한국의 수도입니다.",
    "Le café est prêt. Où est la bibliothèque ? Très bien, merci beaucoup !",
    "Die Straße ist schön. Größere Übungen für Fußgänger.",
    "Привет, мир! Как дела? Москва — столица России.",
    "Γειά σου κόσμε. Η Αθήνα είναι η πρωτεύουσα.",
    "مرحبا بالعالم. هذه جملة باللغة العربية.",
    "नमस्ते दुनिया। यह हिंदी में एक वाक्य है।",
    "Emoji: 😀 😂 🎉 👍 🚀 🌍 ❤️ 👨‍👩‍👧‍👦 🇫🇷 👋🏽",
    "Mixture-of-experts models route each token to a few experts; the router picks the top-k experts by score.",
    "  Indented text\n\n\nwith blank lines\n\t\ttabs\tand    spaces   \n",
    "<html><body><p class=\"note\">Hello &amp; welcome!</p></body></html>",
    "{\"name\": \"swift-moe\", \"version\": [1, 2, 3], \"ok\": true, \"url\": \"https://example.com/path?q=1&r=2\"}",
]

CORPUS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog, and the dog doesn't mind.",
    "def add(a, b):\n    return a + b\n\n\nprint(add(2, 3))\n",
    "if (x &&\ty) {\n\t\treturn -1;\n}",
    "人工智能正在改变世界。",
    "東京は日本の首都です。",
    "한국어 문장",
    "Emoji 😀🎉 family 👨‍👩‍👧‍👦 flag 🇫🇷 wave 👋🏽 heart ❤️",
    "   leading and trailing spaces   ",
    "a" + " " * 40 + "b" + "\n" * 10 + "\t\t\t c     \n \n  ",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "Text with <|endoftext|> in the middle<|im_end|>",
    "<|im_start|><|im_end|><|endoftext|>",
    "cafe\u0301 re\u0301sume\u0301 (decomposed)",
    "Le café est prêt. Où?",
    "\u0000\u0001\u0007\u001b[31mred\u001b[0m\r\nline\u007f",
    "1234567890 3.14159 1e-10 0x1F 12,345.67",
    "I'm can't you'll WE'VE He'D she's THEY'RE",
    "",
    " ",
    "\n",
    "\r\n\r\n",
    "Привет, мир! Γειά σου. مرحبا. नमस्ते दुनिया।",
    "∑_{i=1}^{n} x² ≤ ∞ ≠ √2 → ∀x∃y",
    "▁ literal metaspace ▁▁ and ▁word",
    "<0x41> literal byte-token text <s> </s> <unk>",
    "hello   <mask>   world <mask>",
    "use <tool> now, x<tool>y, <tool>_ and (<tool>)",
    "ab" * 100,
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 ꙮ 🀄",
    "Hello世界🌍!",
    "{\"key\": [1, 2, 3], \"url\": \"https://example.com/a?b=c&d=e\"}",
    "\u00a0non-breaking\u2003em space\u3000ideographic",
    "don\u2019t \u201cquoted\u201d \u2014 dash",
    "\u200b zero width \ufeff BOM",
    "  \n  \n    \t",
    "MoE routers select the top-k experts; shared experts see every token.",
    "<|im_end|>\u0301x <mask>\u0301 \u0301<|endoftext|>\u0308",
]


def to_json(tok):
    return json.loads(tok.to_str())


def save(dirname, data, config):
    d = os.path.join(ROOT, dirname)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)


def byte_level():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=1, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TRAIN * 3, trainer)
    tok.add_tokens([AddedToken("café", normalized=True, special=False),
                    AddedToken("<tool>", single_word=True, normalized=False, special=False)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False, special=True)])
    tok.decoder = decoders.ByteLevel()
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1", special_tokens=[("<|endoftext|>", eot)])
    data = to_json(tok)
    # Exercise both merge spellings: the byte-level file keeps the legacy "a b" strings.
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
              "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
              "model_max_length": 32768}
    return data, config


def sentence_piece():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=600, min_frequency=1, show_progress=False, limit_alphabet=90,
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(TRAIN * 3, trainer)
    trained = to_json(tok)["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    sp = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    sp.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ["<unk>", "<s>", "</s>"]])
    sp.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(content=" ", left=1, right=0)])
    sp.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
              "add_bos_token": True, "add_eos_token": False}
    return to_json(sp), config


def variants(base_bl, base_sp):
    out = {}
    v = copy.deepcopy(base_bl)
    v["model"]["ignore_merges"] = True
    out["bytelevel_ignore_merges"] = ("bytelevel", {"model.ignore_merges": True}, v)
    v = copy.deepcopy(base_sp)
    v["model"]["byte_fallback"] = False
    out["sentencepiece_nofallback"] = ("sentencepiece", {"model.byte_fallback": False}, v)
    v = copy.deepcopy(base_sp)
    legacy_norm = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                       {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    v["normalizer"] = legacy_norm
    v["pre_tokenizer"] = None
    out["sentencepiece_legacy"] = ("sentencepiece", {"normalizer": legacy_norm, "pre_tokenizer": None}, v)
    return out


def hf_expect(tok, text):
    ids = tok.encode(text).ids
    plain = tok.encode(text, add_special_tokens=False).ids
    return {"ids": ids, "ids_no_special": plain,
            "decode": tok.decode(ids, skip_special_tokens=False),
            "decode_skip": tok.decode(ids, skip_special_tokens=True)}


def main():
    bl, bl_config = byte_level()
    sp, sp_config = sentence_piece()
    save("bytelevel", bl, bl_config)
    save("sentencepiece", sp, sp_config)
    tokenizers = {"bytelevel": bl, "sentencepiece": sp}
    patches = {}
    for name, (base, patch, data) in variants(bl, sp).items():
        tokenizers[name] = data
        patches[name] = {"base": base, "patch": patch}

    expected = {}
    for name, data in tokenizers.items():
        tok = Tokenizer.from_str(json.dumps(data))
        expected[name] = [hf_expect(tok, t) for t in CORPUS]
        # The added tokens of HF's vocabulary must round-trip as the file says.
        for t in data["added_tokens"]:
            assert tok.token_to_id(t["content"]) == t["id"], (name, t)

    # tiktoken: the byte-level vocabulary (without added tokens) as ranks, ids renumbered from 0.
    byte_of = {c: b for b, c in enumerate(bytes_to_unicode())}
    added = {t["content"] for t in bl["added_tokens"]}
    ordinary = sorted(((i, t) for t, i in bl["model"]["vocab"].items() if t not in added))
    ranks = {bytes(byte_of[c] for c in t): r for r, (_, t) in enumerate(ordinary)}
    specials = {"<|endoftext|>": len(ranks), "<|im_start|>": len(ranks) + 1, "<|im_end|>": len(ranks) + 2}
    d = os.path.join(ROOT, "tiktoken")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ranks.tiktoken"), "w") as f:
        for tok_bytes, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok_bytes).decode()} {r}\n")
    enc = tiktoken.Encoding("moe-test", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    tk = []
    for t in CORPUS:
        ids = enc.encode(t, allowed_special="all")
        tk.append({"ids": ids, "decode": enc.decode(ids, errors="replace")})

    corpus = {
        "texts": CORPUS,
        "nfc": [unicodedata.normalize("NFC", t) for t in CORPUS],
        "variants": patches,
        "expected": expected,
        "tiktoken": {"pattern": QWEN2_PATTERN, "special_tokens": specials, "expected": tk},
        "generated_by": "scripts/make_tokenizer_fixtures.py with tokenizers %s, tiktoken %s" % (
            __import__("tokenizers").__version__, tiktoken.__version__ if hasattr(tiktoken, "__version__") else "?"),
    }
    with open(os.path.join(ROOT, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, separators=(",", ":"))
    total = 0
    for dirpath, _, files in os.walk(ROOT):
        for fn in files:
            if fn != "regex.json" and not dirpath.endswith("chat") and not fn.startswith("chat"):
                total += os.path.getsize(os.path.join(dirpath, fn))
    print(f"wrote {ROOT}: {len(CORPUS)} texts, {len(tokenizers)} tokenizer variants + tiktoken; {total / 1024:.0f} KiB")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


if __name__ == "__main__":
    main()
