#!/usr/bin/env python3
"""The official `openai` client against `moe serve` on a harmony (gpt-oss format) model: `reasoning_content`,
`content` and `tool_calls`, streamed and not, and a tool round trip (run by
Tests/MoEServingTests/HarmonyServingTests.swift on its echo model, which writes back the script its prompt ends with:
each script here is padded to exactly --script-tokens tokens of its byte-level vocabulary).

    python scripts/openai_harmony_e2e.py --base-url http://127.0.0.1:PORT/v1 --model echo --script-tokens 160

Prints one line per check; exits 1 on the first failure.
"""
import argparse
import json
import sys

import openai

SPECIALS = ["<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>", "<|endoftext|>"]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
ANSWER = ("<|channel|>analysis<|message|>The user asks about Paris.<|end|>"
          "<|start|>assistant<|channel|>final<|message|>Paris is sunny.<|return|>")
CALL = ("<|channel|>analysis<|message|>I need the weather.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\": \"Paris\"}<|call|>")


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def padded(script, tokens):
    """The script with spaces before its last special token, to exactly `tokens` tokens (bytes; specials one each)."""
    count, rest = 0, script
    while rest:
        s = next((s for s in SPECIALS if rest.startswith(s)), None)
        if s:
            count, rest = count + 1, rest[len(s):]
        else:
            count, rest = count + len(rest[0].encode()), rest[1:]
    last = max(script.rfind(s) for s in SPECIALS)
    return script[:last] + " " * (tokens - count) + script[last:]


def streamed(client, **kwargs):
    """The message a stream's deltas add up to, and its finish reason."""
    content, reasoning, calls, finish, roles = "", "", {}, None, []
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        choice = chunk.choices[0]
        delta = choice.delta
        roles.append(delta.role)
        content += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for c in delta.tool_calls or []:
            entry = calls.setdefault(c.index, {"id": c.id, "name": "", "arguments": ""})
            if c.function and c.function.name:
                entry["name"] = c.function.name
            if c.function and c.function.arguments:
                entry["arguments"] += c.function.arguments
        finish = choice.finish_reason or finish
    return content, reasoning, [calls[i] for i in sorted(calls)], finish, roles


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--key", default="none")
    ap.add_argument("--script-tokens", type=int, required=True)
    args = ap.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.key, max_retries=0, timeout=120)

    def ask(script, **extra):
        return dict(model=args.model, messages=[{"role": "user", "content": padded(script, args.script_tokens)}],
                    max_tokens=2 * args.script_tokens, temperature=0, tools=[WEATHER], **extra)

    # Reasoning and answer, whole.
    r = client.chat.completions.create(**ask(ANSWER, reasoning_effort="low"))
    m = r.choices[0].message
    check(getattr(m, "reasoning_content", None) == "The user asks about Paris.", f"reasoning_content: {getattr(m, 'reasoning_content', None)!r}")
    check((m.content or "").strip() == "Paris is sunny.", f"content: {m.content!r}")
    check(not m.tool_calls and r.choices[0].finish_reason == "stop", "no tool calls, finish_reason stop")

    # …streamed.
    content, reasoning, calls, finish, roles = streamed(client, **ask(ANSWER))
    check(reasoning == "The user asks about Paris." and content.strip() == "Paris is sunny.",
          f"streamed reasoning_content / content deltas: {reasoning!r} / {content!r}")
    check(roles[0] == "assistant" and not calls and finish == "stop", "streamed role, finish_reason stop")

    # A tool call, whole.
    r = client.chat.completions.create(**ask(CALL, reasoning_effort="high"))
    m = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls", f"finish_reason {r.choices[0].finish_reason}")
    check(m.content is None and getattr(m, "reasoning_content", None) == "I need the weather.", f"content {m.content!r}, reasoning")
    check(len(m.tool_calls) == 1 and m.tool_calls[0].type == "function" and m.tool_calls[0].function.name == "get_weather",
          "tool_calls[0] is get_weather")
    check(json.loads(m.tool_calls[0].function.arguments) == {"location": "Paris"}, f"arguments {m.tool_calls[0].function.arguments!r}")
    call_id = m.tool_calls[0].id

    # …streamed.
    content, reasoning, calls, finish, _ = streamed(client, **ask(CALL))
    check(finish == "tool_calls" and len(calls) == 1 and calls[0]["name"] == "get_weather" and calls[0]["id"],
          f"streamed tool_calls deltas: {calls}")
    check(json.loads(calls[0]["arguments"]) == {"location": "Paris"} and reasoning == "I need the weather.", "streamed arguments")

    # The round trip: the call and its result go back; the next answer comes.
    r = client.chat.completions.create(
        model=args.model, max_tokens=2 * args.script_tokens, temperature=0, tools=[WEATHER],
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}}]},
                  {"role": "tool", "tool_call_id": call_id, "content": "{\"sky\": \"clear\"}"},
                  {"role": "user", "content": padded(ANSWER, args.script_tokens)}])
    check((r.choices[0].message.content or "").strip() == "Paris is sunny.", "tool round trip answered")

    # Refused clearly.
    try:
        client.chat.completions.create(**ask(ANSWER, reasoning_effort="extreme"))
        check(False, "reasoning_effort 'extreme' refused")
    except openai.BadRequestError as e:
        check("reasoning_effort" in str(e), "reasoning_effort 'extreme' is a 400 naming it")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
