"""The project's one OpenAI-compatible LLM client (synth, judges, eval, remote teachers)."""

from speechsum_cli.llm.client import (
    Completion,
    Estimate,
    Generation,
    LLMClient,
    LLMError,
    Speech,
    public_url,
)
from speechsum_cli.llm.config import DEFAULT_API_KEY_ENV, DEFAULT_MODEL, LLMConfig
from speechsum_cli.llm.jsonout import InvalidJSON, extract_json, parse_json
from speechsum_cli.llm.prices import BudgetExceeded, Ledger, load_price_file, price_for

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_MODEL",
    "BudgetExceeded",
    "Completion",
    "Estimate",
    "Generation",
    "InvalidJSON",
    "LLMClient",
    "LLMConfig",
    "LLMError",
    "Ledger",
    "Speech",
    "extract_json",
    "load_price_file",
    "parse_json",
    "price_for",
    "public_url",
]
