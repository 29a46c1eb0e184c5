#!/usr/bin/env python3
"""Structured outputs of `moe serve` through the official `openai` client (run by
Tests/MoEServingTests/StructuredOutputTests.swift against a tiny random model, or by hand):

    python scripts/openai_structured_e2e.py --base-url http://127.0.0.1:8080/v1 --model NAME [--prompts 50]

- `client.chat.completions.parse(response_format=<a Pydantic model>)` at temperature 1 returns a parsed object for
  every prompt (valid by construction, whatever the random model would have sampled);
- `response_format` json_schema answers, for schemas covering objects, arrays, enums, nested required fields,
  string patterns and number bounds, validate with `jsonschema` (PyPI) — streamed and not;
- `json_object` answers parse as JSON objects;
- bad schemas are 400s naming `response_format`;
- the Responses API: `responses.create` (instructions, usage, previous_response_id), `responses.retrieve`,
  `responses.stream` (typed events whose deltas make the final text), `responses.parse(text_format=…)`, and with
  `--tools` a function call whose output is sent back;
- with `--tools` (a model whose template teaches a call syntax): a tool round trip — a required call, its result
  sent back, the answer — streamed and not, and a named call.
Prints one line per check; exits 1 on the first failure.
"""
import argparse
import json
import sys
from typing import Annotated, Literal

import jsonschema
import openai
from pydantic import BaseModel, Field


def check(condition, what):
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


class Pet(BaseModel):
    kind: Literal["cat", "dog", "fish"]
    legs: int = Field(ge=0, le=8)


class Person(BaseModel):
    name: str = Field(max_length=8)
    age: int = Field(ge=0, le=120)
    height: float = Field(ge=0, le=3)
    color: Literal["red", "green", "blue"]
    tags: list[Annotated[str, Field(pattern=r"^[a-z]{1,3}$")]] = Field(max_length=3)
    pet: Pet | None
    ok: bool


SCHEMAS = [
    {"type": "object", "properties": {"id": {"type": "integer", "minimum": -50, "maximum": 50},
                                      "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}},
     "required": ["id", "code"], "additionalProperties": False},
    {"type": "array", "items": {"enum": ["a", "b", 3, None, True]}, "minItems": 1, "maxItems": 5},
    {"type": "object", "properties": {
        "user": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
                                                  "roles": {"type": "array", "items": {"enum": ["admin", "dev"]}, "maxItems": 2}},
                 "required": ["name", "roles"]},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10}},
     "required": ["user", "score"]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"}, "n": {"type": "integer", "exclusiveMinimum": 999}},
     "required": ["when", "n"]},
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--tools", action="store_true")
    args = ap.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="none", max_retries=0, timeout=120)

    parsed = 0
    for i in range(args.prompts):
        r = client.chat.completions.parse(model=args.model, messages=[{"role": "user", "content": f"Describe person {i}."}],
                                          response_format=Person, temperature=1, seed=i, max_tokens=400)
        p = r.choices[0].message.parsed
        if isinstance(p, Person):
            parsed += 1
        else:
            check(False, f"prompt {i}: no parsed object: {r.choices[0].message.content!r} ({r.choices[0].finish_reason})")
    check(parsed == args.prompts, f"chat.completions.parse(response_format=Person) parsed {parsed}/{args.prompts} at temperature 1")

    checker = jsonschema.FormatChecker()
    for n, schema in enumerate(SCHEMAS):
        fmt = {"type": "json_schema", "json_schema": {"name": f"s{n}", "schema": schema, "strict": True}}
        for seed in range(4):
            stream = seed % 2 == 1
            kwargs = dict(model=args.model, messages=[{"role": "user", "content": "Answer."}], response_format=fmt,
                          temperature=1, seed=seed, max_tokens=300)
            if stream:
                text, finish = "", None
                for chunk in client.chat.completions.create(stream=True, **kwargs):
                    for c in chunk.choices:
                        text += c.delta.content or ""
                        finish = c.finish_reason or finish
            else:
                r = client.chat.completions.create(**kwargs)
                text, finish = r.choices[0].message.content, r.choices[0].finish_reason
            check(finish == "stop", f"schema {n} seed {seed}: finished ({finish})")
            try:
                jsonschema.validate(json.loads(text), schema, format_checker=checker)
            except (json.JSONDecodeError, jsonschema.ValidationError) as e:
                check(False, f"schema {n} seed {seed}: {text!r}: {e}")
        print(f"ok: schema {n}: 4 answers validate with jsonschema (streamed and not)", flush=True)

    r = client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "JSON please"}],
                                       response_format={"type": "json_object"}, temperature=0.8, seed=1, max_tokens=300)
    if r.choices[0].finish_reason == "stop":
        check(isinstance(json.loads(r.choices[0].message.content), dict), "json_object answers an object")

    try:
        client.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "x"}],
                                       response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "string", "not": {}}}})
        check(False, "an unsupported keyword is refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "response_format" and "'not'" in e.body.get("message", ""), f"unsupported keyword: 400 ({e.body.get('message')})")
    responses_api(client, args.model, args.tools)
    if args.tools:
        tool_round_trip(client, args.model)
    print("all checks passed")


def responses_api(client, model, tools):
    r = client.responses.create(model=model, input="Hello", instructions="Be brief.", max_output_tokens=6, temperature=0)
    check(r.object == "response" and r.id.startswith("resp_") and isinstance(r.output_text, str), "responses.create: a response with output_text")
    check(r.usage.output_tokens == 6 and r.status == "incomplete", f"responses usage and status ({r.usage.output_tokens} tokens, {r.status})")
    follow = client.responses.create(model=model, input="And then?", previous_response_id=r.id, max_output_tokens=3)
    check(follow.usage.input_tokens > r.usage.input_tokens, "previous_response_id continues the conversation")
    check(client.responses.retrieve(r.id).id == r.id, "responses.retrieve")
    plain = client.responses.create(model=model, input="Hello", max_output_tokens=6, temperature=0)
    text, kinds = "", []
    with client.responses.stream(model=model, input="Hello", max_output_tokens=6, temperature=0) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    check(kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete") and text == final.output_text == plain.output_text,
          "responses streamed: typed events, the deltas are the final text (and greedy equals the unstreamed answer)")
    parsed = client.responses.parse(model=model, input="A pet.", text_format=Pet, temperature=1, max_output_tokens=100)
    check(isinstance(parsed.output_parsed, Pet), f"responses.parse(text_format=Pet) -> {parsed.output_parsed!r}")
    if tools:
        flat = [{"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"]} for t in TOOLS]
        r = client.responses.create(model=model, input="2 + 3?", tools=flat, tool_choice={"type": "function", "name": "add"}, temperature=1)
        calls = [o for o in r.output if o.type == "function_call"]
        check(len(calls) == 1 and calls[0].name == "add", "responses: a named function call")
        jsonschema.validate(json.loads(calls[0].arguments), TOOLS[1]["function"]["parameters"])
        answer = client.responses.create(model=model, previous_response_id=r.id, tools=flat, max_output_tokens=4,
                                          input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "5"}])
        check(answer.output[0].type == "message", "responses: the function's output is answered")


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}, "b": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["a", "b"], "additionalProperties": False}}},
]


def tool_round_trip(client, model):
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for stream in (False, True):
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        kwargs = dict(model=model, messages=messages, tools=TOOLS, tool_choice="required", temperature=1, seed=3, max_tokens=400)
        if stream:
            calls, finish = {}, None
            for chunk in client.chat.completions.create(stream=True, **kwargs):
                for c in chunk.choices:
                    finish = c.finish_reason or finish
                    for d in c.delta.tool_calls or []:
                        call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                        call["id"] = d.id or call["id"]
                        if d.function:
                            call["name"] += d.function.name or ""
                            call["arguments"] += d.function.arguments or ""
            calls = [calls[i] for i in sorted(calls)]
        else:
            r = client.chat.completions.create(**kwargs)
            finish = r.choices[0].finish_reason
            calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in r.choices[0].message.tool_calls or []]
        check(finish == "tool_calls" and calls, f"required call (stream={stream}): finish_reason tool_calls, {len(calls)} call(s)")
        for call in calls:
            jsonschema.validate(json.loads(call["arguments"]), schemas[call["name"]])
        check(True, f"the calls' arguments validate against their tools' schemas (stream={stream})")
        # The result goes back; the model answers (in text: tool_choice auto).
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]})
        for c in calls:
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": "18 degrees, sunny"})
        r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, temperature=0, max_tokens=8, stream=stream)
        if stream:
            for _ in r:
                pass
        check(True, f"the tool results are taken and answered (stream={stream})")
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "2 + 3?"}], tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "add"}}, temperature=1, seed=1)
    calls = r.choices[0].message.tool_calls
    check(len(calls) == 1 and calls[0].function.name == "add", "a named call calls that function once")
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "missing"}})
        check(False, "a missing named tool is refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == "tool_choice", "a missing named tool: 400 naming tool_choice")


if __name__ == "__main__":
    main()
