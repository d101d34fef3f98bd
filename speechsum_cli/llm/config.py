"""``LLMConfig``: everything that decides how (and how much) the project talks to an LLM over HTTP."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.errors import InputError

DEFAULT_MODEL = "gpt-4.1"
"""The paper's generator (and judge)."""
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "speechsum" / "llm"
"""The response cache the commands use unless told otherwise (``--cache-dir``, ``--no-cache``)."""
DEFAULT_MAX_FAILED_SHARE = 0.1
"""More than 1 in 10 calls failing after their retries is a broken endpoint, not bad luck
(the failure policy: :mod:`speechsum_cli.llm.failures`)."""
BUDGET_FIELDS = ("max_cost", "price_in", "price_out", "prices", "max_failed_share", "retry_failed")
"""Never prefixed: a command calls one LLM under one budget and one failure policy."""


def endpoint_flag(role: str | None, name: str) -> str:
    """``--judge-base-url`` for the judge; ``--base-url`` and ``--llm`` (the model) without a role."""
    if name in BUDGET_FIELDS:
        return "--" + name.replace("_", "-")
    if role is None:
        return "--llm" if name == "model" else "--" + name.replace("_", "-")
    return f"--{role}-{name.replace('_', '-')}"


@dataclass(frozen=True)
class LLMConfig:
    """Settings of the one OpenAI-compatible client (the key itself is never stored here)."""

    base_url: str | None = None
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; None = api.openai.com."""
    role: str | None = None
    """Whose endpoint this is, as its flags are prefixed: 'judge', 'teacher', or None (synth's LLM)."""
    model: str = DEFAULT_MODEL
    """Model name sent with every request (for ``transformers serve``: the served directory)."""
    api_key_env: str = DEFAULT_API_KEY_ENV
    """Name of the environment variable that holds the key (the name is recorded, never the key)."""
    concurrency: int = 8
    """Most requests in flight at once: the ceiling of the adaptive limit (see ``adaptive_concurrency``)."""
    adaptive_concurrency: bool = True
    """Halve the requests in flight on time-outs and HTTP 429s and grow them back by one per
    window of answers, up to ``concurrency`` (AIMD, :mod:`speechsum_cli.llm.concurrency`);
    False keeps ``concurrency`` in flight whatever the server says (the benchmark's baseline)."""
    rpm: int | None = None
    """Requests per minute limit (None = unlimited)."""
    tpm: int | None = None
    """Tokens per minute limit, estimated from prompt length + max_tokens (None = unlimited)."""
    max_retries: int = 5
    """HTTP retries per request on 408/409/429/5xx and connection errors (exponential backoff with
    jitter, honouring Retry-After, as the openai client does); then the row fails."""
    timeout_retries: int = 3
    """Retries per request after a time-out, a budget of their own: a time-out costs ``timeout``
    seconds and means the server is saturated (the limit halves), not that the request is bad."""
    json_retries: int = 2
    """Extra attempts when the reply is not valid JSON for the schema (a repair turn each)."""
    timeout: float = 120.0
    """Seconds per HTTP request before it counts as a timeout."""
    temperature: float = 0.7
    """Sampling temperature sent with every request."""
    max_tokens: int = 1024
    """Completion budget per request."""
    extra_body: dict[str, Any] | None = None
    """Extra JSON fields for the server (e.g. transformers serve's generation_config)."""
    max_cost: float | None = None
    """Stop cleanly before spending more than this many USD (None = no cap)."""
    dry_run: bool = False
    """Estimate requests, tokens and cost; send nothing."""
    cache_dir: Path | None = None
    """Directory of the on-disk response cache (None = no cache)."""
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Price overrides: model -> (USD per 1M input tokens, USD per 1M output tokens)."""
    expected_output_tokens: int = 400
    """Output tokens assumed per request for estimates and budget reservations."""
    max_failed_share: float = DEFAULT_MAX_FAILED_SHARE
    """A run whose failed calls (retries spent) exceed this share fails (exit 3) instead of
    writing a partial output; a run where every call failed always does."""
    retry_failed: bool = False
    """Re-send the calls that failed in an earlier run: a cached reply that does not parse is asked
    again instead of replayed (answers that parsed still come from the cache)."""

    def flag(self, name: str) -> str:
        """The command-line flag of the field ``name`` for this endpoint's role."""
        return endpoint_flag(self.role, name)

    @property
    def configured(self) -> bool:
        """An endpoint is given, or the key variable is set."""
        return self.base_url is not None or bool(os.environ.get(self.api_key_env))

    def check_key(self, error: type[Exception] = InputError) -> None:
        """Fail before any work when api.openai.com is meant but the key is missing (a dry run
        sends nothing and needs none), naming this role's flags; ``error``: the exception raised."""
        if not self.dry_run and not self.configured:
            raise error(
                f"no API key: environment variable {self.api_key_env} is not set. Export it, pass "
                f"{self.flag('api_key_env')} NAME for another variable, or {self.flag('base_url')} "
                "for a local server."
            )
