"""Structured output without trusting the server: find the JSON object in the reply text and
validate it against a JSON Schema (many OpenAI-compatible servers ignore ``response_format``)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jsonschema

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class InvalidJSON(ValueError):
    """The reply holds no JSON object that satisfies the schema; the message says why."""


def extract_json(text: str) -> Any:
    """The first JSON object in ``text``: whole text, a fenced block, or the first {...} span."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    raise InvalidJSON("no JSON object in the reply")


def parse_json(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse and validate; raise :class:`InvalidJSON` with a one-line reason."""
    value = extract_json(text)
    error = next(iter(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value)), None)
    if error is not None:
        exc = error
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise InvalidJSON(f"schema: {where}: {exc.message[:200]}")
    return value


@lru_cache(maxsize=16)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
