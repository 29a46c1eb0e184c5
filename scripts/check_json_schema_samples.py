"""Validates sentences generated from JSON-Schema grammars with the `jsonschema` package (PyPI), the reference
for what a schema accepts (Tests/MoEGrammarTests/JSONSchemaGrammarTests.swift writes the samples).

Input: a JSONL file of {"schema": {...}, "text": "..."}; every text must parse as JSON and validate against its
schema (formats checked too). Prints one line per failure and a summary; exits 1 if any failed.

Usage: python scripts/check_json_schema_samples.py SAMPLES.jsonl
"""
import json
import sys

import jsonschema


def main() -> int:
    failures = total = 0
    checker = jsonschema.FormatChecker()
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            total += 1
            try:
                instance = json.loads(item["text"])
                cls = jsonschema.validators.validator_for(item["schema"])
                cls(item["schema"], format_checker=checker).validate(instance)
            except (json.JSONDecodeError, jsonschema.ValidationError) as e:
                failures += 1
                print(f"FAIL {item['text']!r}: {str(e).splitlines()[0]}")
    print(f"{total - failures}/{total} valid")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
