#!/usr/bin/env python3
"""Renders reference chat-template outputs for Tests/MoETokenizerTests/ChatTemplateTests.swift.

The templates are real ones, verbatim: llama.cpp's models/templates collection as shipped in the source
distribution of llama-cpp-python (vendor/llama.cpp/models/templates/*.jinja). They are fetched here, not
committed: `pip download --no-deps --no-binary :all: --no-build-isolation llama-cpp-python==0.3.36` (with this
python's pip; needs scikit-build-core, see scripts/setup-test-deps.sh) into a cache folder, of which only the
*.jinja files are kept. The references come from transformers' own apply_chat_template machinery
(transformers.utils.chat_template_utils.render_jinja_template, the function
PreTrainedTokenizerBase.apply_chat_template calls; needs jinja2). No model download is needed.

    "${MOE_TEST_VENV:-$HOME/.cache/moe-test-venv}/bin/python" scripts/make_chat_fixtures.py OUT_DIR [--all]

Writes OUT_DIR/{expected.json, <template>.jinja...} (copies of the templates used; --all renders every
template of the collection, for a wider local check). Template cache: $MOE_CHAT_TEMPLATES_CACHE, else
${XDG_CACHE_HOME:-~/.cache}/moe-chat-templates (delete it to fetch again).
"""
import datetime as _dt
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # "PyTorch was not found"
import transformers
from transformers.utils import chat_template_utils as ctu

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
TEMPLATES_IN_SDIST = "vendor/llama.cpp/models/templates/"
ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
if len(ARGS) != 1:
    sys.exit(__doc__)
OUT = os.path.abspath(ARGS[0])
# --all: every template in the collection (for a wider local check; the tests use the list below)
ALL = "--all" in sys.argv
CACHE = os.environ.get("MOE_CHAT_TEMPLATES_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "moe-chat-templates")

TEMPLATES = [
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "Qwen-Qwen3-0.6B.jinja",
    "Qwen-QwQ-32B.jinja",
    "Qwen3-Coder.jinja",
    "Qwen3.5-4B.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
    "deepseek-ai-DeepSeek-V3.1.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
    "Mistral-Small-3.2-24B-Instruct-2506.jinja",
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "meta-llama-Llama-3.2-3B-Instruct.jinja",
    "meta-llama-Llama-3.3-70B-Instruct.jinja",
    "google-gemma-2-2b-it.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "openai-gpt-oss-120b.jinja",
    "moonshotai-Kimi-K2.jinja",
    "GLM-4.6.jinja",
    "MiniMax-M2.jinja",
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
    "HuggingFaceTB-SmolLM3-3B.jinja",
]

# strftime_now must be reproducible: the Swift test passes the same wall-clock time.
FIXED_NOW = _dt.datetime(2025, 3, 7, 9, 5, 3)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = _FixedDatetime

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}

TOOL_CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"location": "Paris", "unit": "celsius"}},
}

CONVERSATIONS = {
    "system_user": {
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "What is 2 + 2?"},
        ]
    },
    "user_only": {"messages": [{"role": "user", "content": "Hello there!"}]},
    "multi_turn": {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name a prime number."},
            {"role": "assistant", "content": "7"},
            {"role": "user", "content": "And another one?\nOnly the number, please."},
        ]
    },
    "ends_with_assistant": {
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
        ]
    },
    "reasoning": {
        "messages": [
            {"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", "content": "No: 91 = 7 x 13.", "reasoning_content": "91 / 7 = 13, so it is composite."},
            {"role": "user", "content": "Is 97 prime?"},
        ]
    },
    "inline_think": {
        "messages": [
            {"role": "user", "content": "Pick a colour."},
            {"role": "assistant", "content": "<think>\nAny will do; blue is common.\n</think>\n\nBlue."},
            {"role": "user", "content": "Why?"},
        ]
    },
    "tools": {
        "messages": [
            {"role": "system", "content": "You can look up the weather."},
            {"role": "user", "content": "What's the weather in Paris?"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "tool_call": {
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 18, \"sky\": \"clear\"}"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "tool_call_empty_content": {
        "messages": [
            {"role": "system", "content": "You can look up the weather."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 18, \"sky\": \"clear\"}"},
            {"role": "assistant", "content": "It is 18 °C and clear in Paris."},
            {"role": "user", "content": "Thanks!"},
        ],
        "tools": [WEATHER_TOOL],
    },
    # gpt-oss's harmony: a developer message, earlier reasoning (dropped by the template), reasoning before a tool call
    # (kept until a final answer follows), a training render (the last assistant turn's reasoning kept).
    "developer": {
        "messages": [
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "reasoning_history": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", "content": "No: 91 = 7 x 13.", "thinking": "91 / 7 = 13, so it is composite."},
            {"role": "user", "content": "Is 97 prime?"},
        ]
    },
    "reasoning_tool_call": {
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "thinking": "I should call get_weather.", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 18}"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "reasoning_tool_call_answered": {
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "thinking": "I should call get_weather.", "tool_calls": [TOOL_CALL]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 18}"},
            {"role": "assistant", "content": "18 degrees.", "thinking": "The tool says 18."},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "tools": [WEATHER_TOOL],
    },
    "training_turn": {
        "messages": [
            {"role": "user", "content": "2 + 3?"},
            {"role": "assistant", "content": "5", "thinking": "Adding gives 5."},
        ]
    },
    "unicode": {
        "messages": [
            {"role": "system", "content": "Réponds en français. «Guillemets» & <tags> 'quotes' \"double\""},
            {"role": "user", "content": "  Ünïcödé 🚀 tabs\tand trailing spaces  \n\n"},
        ]
    },
}

# (conversation, add_generation_prompt, extra) run for every template
CASES = [
    ("system_user", True, {}),
    ("system_user", False, {}),
    ("user_only", True, {}),
    ("multi_turn", True, {}),
    ("ends_with_assistant", False, {}),
    ("reasoning", True, {}),
    ("inline_think", True, {}),
    ("tools", True, {}),
    ("tool_call", True, {}),
    ("tool_call_empty_content", True, {}),
    ("unicode", True, {}),
]
THINKING_CASES = [
    ("system_user", True, {"enable_thinking": False}),
    ("system_user", True, {"enable_thinking": True}),
    ("reasoning", True, {"enable_thinking": False}),
]
# Templates in harmony (gpt-oss): its own conversations, and each reasoning effort.
HARMONY_CASES = [
    ("developer", True, {}),
    ("reasoning_history", True, {}),
    ("reasoning_history", True, {"reasoning_effort": "low"}),
    ("reasoning_history", True, {"reasoning_effort": "high"}),
    ("reasoning_tool_call", True, {}),
    ("reasoning_tool_call_answered", True, {"reasoning_effort": "high"}),
    ("training_turn", False, {}),
]
COMMON_EXTRA = {"bos_token": "<BOS>", "eos_token": "<EOS>"}


def render(template, conv, agp, extra):
    c = CONVERSATIONS[conv]
    kwargs = dict(COMMON_EXTRA)
    kwargs.update(extra)
    try:
        rendered, _ = ctu.render_jinja_template(
            conversations=[json.loads(json.dumps(c["messages"]))],
            tools=c.get("tools"),
            chat_template=template,
            add_generation_prompt=agp,
            **kwargs,
        )
        return {"output": rendered[0]}
    except Exception as e:  # the template raised (raise_exception) or failed: record the message
        return {"error": str(e), "error_type": type(e).__name__}


def fetch_from_sdist(name, wanted):
    """Files of the llama-cpp-python sdist for which wanted(path inside the sdist) gives a file name, fetched
    once into CACHE/<version>/<name>."""
    dest = os.path.join(CACHE, LLAMA_CPP_PYTHON.replace("==", "-"), name)
    if os.path.isfile(os.path.join(dest, ".complete")):
        return dest, 0.0
    start = time.monotonic()
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(dest)) as work:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
               "--disable-pip-version-check", "--no-input", "--quiet", LLAMA_CPP_PYTHON, "-d", work]
        subprocess.run(cmd, check=True, stdout=sys.stderr)
        sdists = glob.glob(os.path.join(work, "*.tar.gz"))
        if len(sdists) != 1:
            sys.exit(f"pip download left {os.listdir(work)} in {work}, expected one .tar.gz")
        extracted = os.path.join(work, name)
        os.makedirs(extracted)
        n = 0
        with tarfile.open(sdists[0], "r:gz") as tar:
            for m in tar:
                top, _, rest = m.name.partition("/")
                base = wanted(rest) if m.isfile() else None
                if not base:
                    continue
                with tar.extractfile(m) as src, open(os.path.join(extracted, base), "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
        if n == 0:
            sys.exit(f"nothing for {name} in {sdists[0]}")
        open(os.path.join(extracted, ".complete"), "w").close()
        if os.path.isdir(dest):  # incomplete leftover
            shutil.rmtree(dest)
        try:
            os.rename(extracted, dest)
        except OSError:  # another process was first
            if not os.path.isfile(os.path.join(dest, ".complete")):
                raise
    return dest, time.monotonic() - start


def fetch_templates():
    """The templates directory of the llama-cpp-python sdist: <name>-<version>/vendor/llama.cpp/models/templates/
    <file>.jinja, plain files only."""
    def wanted(rest):
        if not (rest.startswith(TEMPLATES_IN_SDIST) and rest.endswith(".jinja")):
            return None
        base = rest[len(TEMPLATES_IN_SDIST):]
        return None if "/" in base else base
    return fetch_from_sdist("templates", wanted)


VOCAB_IN_SDIST = "vendor/llama.cpp/models/"


def fetch_vocabularies():
    """llama.cpp's vocabulary test files (models/ggml-vocab-*.gguf with .inp/.out), for GGUFVocabularyTests."""
    def wanted(rest):
        base = rest[len(VOCAB_IN_SDIST):] if rest.startswith(VOCAB_IN_SDIST) else ""
        return base if base.startswith("ggml-vocab-") and "/" not in base else None
    return fetch_from_sdist("vocab", wanted)


def main():
    src_dir, fetch_s = fetch_templates()
    os.makedirs(OUT, exist_ok=True)
    cases = []
    names = sorted(f for f in os.listdir(src_dir) if f.endswith(".jinja")) if ALL else TEMPLATES
    render_start = time.monotonic()
    for name in names:
        src = os.path.join(src_dir, name)
        shutil.copyfile(src, os.path.join(OUT, name))
        template = open(src, encoding="utf-8").read()
        extra_cases = THINKING_CASES if "enable_thinking" in template else []
        if "<|channel|>" in template:
            extra_cases = extra_cases + HARMONY_CASES
        for conv, agp, extra in CASES + extra_cases:
            r = render(template, conv, agp, extra)
            case = {"template": name, "conversation": conv, "add_generation_prompt": agp, "extra": dict(COMMON_EXTRA, **extra)}
            case.update(r)
            cases.append(case)
    doc = {
        "generator": f"scripts/make_chat_fixtures.py, transformers {transformers.__version__}, "
                     f"templates from {LLAMA_CPP_PYTHON} ({TEMPLATES_IN_SDIST})",
        "now": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S"),
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    # llama.cpp's vocabulary tests, linked beside the chat fixtures when asked (MOE_LLAMA_VOCAB_DIR).
    vocab_link = os.environ.get("MOE_LLAMA_VOCAB_DIR")
    if vocab_link:
        vocab_dir, _ = fetch_vocabularies()
        if not os.path.exists(vocab_link):
            os.symlink(vocab_dir, vocab_link)
    n_err = sum(1 for c in cases if "error" in c)
    fetched = f"fetched {LLAMA_CPP_PYTHON} in {fetch_s:.1f} s" if fetch_s else f"templates cached in {src_dir}"
    print(f"{len(cases)} cases ({n_err} raise) from {len(names)} templates -> {OUT} "
          f"({fetched}; rendered in {time.monotonic() - render_start:.1f} s)")


if __name__ == "__main__":
    main()
