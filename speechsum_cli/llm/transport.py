"""HTTP to one OpenAI-compatible endpoint: the openai client, each attempt in a slot, the retries.

* ``openai.AsyncOpenAI`` against any base URL, one attempt per request; the retries are this
  module's (the openai client's policy: exponential backoff with jitter on 408/409/429/5xx and
  connection errors, honouring ``Retry-After``) because each attempt must hold a slot of the
  adaptive limit (:mod:`speechsum_cli.llm.concurrency`: time-outs and 429s halve the requests in
  flight) and time-outs get a budget of their own (``timeout_retries``; the rest ``max_retries``);
* when a budget is spent the request raises :class:`CallFailed` with the reason (the call's row
  fails); a refusal that would fail every row raises :class:`LLMError` (stop the run);
* the key: read from the environment variable named in the config, kept only inside the openai
  client, and scrubbed from every reason and error message.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import openai

from speechsum_cli.console import info
from speechsum_cli.errors import EXIT_NOTHING_USABLE, SpeechsumError
from speechsum_cli.llm.concurrency import AdaptiveLimit, Outcome
from speechsum_cli.llm.config import LLMConfig, endpoint_flag
from speechsum_cli.llm.failures import UNANSWERED

LOCAL_PLACEHOLDER_KEY = "sk-no-key-needed"
"""Sent to custom base URLs when the key variable is unset (local servers ignore it)."""
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
"""Backoff between retries: 0.5 s doubling up to 8 s, minus up to 25% jitter (the openai
client's)."""
MAX_RETRY_AFTER = 60.0
"""A server's ``Retry-After`` is honoured up to this many seconds (longer: the backoff above)."""
RETRYABLE_STATUS = (408, 409, 429)
"""Retried like any 5xx; other 4xx are the request's own fault."""
UNREACHABLE_LIMIT = 3
"""Calls that could not connect (after their retries), with no reply ever received from the
endpoint, after which the run stops instead of spending every other call's retries the same way."""


class LLMError(SpeechsumError):
    """The server refuses every request (bad key, unknown model, bad URL): stop the whole run."""


class EndpointUnreachable(LLMError):
    """Nothing answers at the endpoint: the first calls could not connect and none ever got a reply.
    Nothing usable can come of the rest, so none is sent (exit 3, like any run with nothing
    usable)."""

    exit_code = EXIT_NOTHING_USABLE


class CallFailed(Exception):
    """One call failed for good (retries spent, or a reply it cannot use); the row is recorded as
    failed with this reason."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        """The HTTP status the server answered with, if it answered."""


def check_credentials(config: LLMConfig) -> None:
    """Fail before any work when no key is available for api.openai.com (local URLs need none)."""
    config.check_key(LLMError)


class Transport:
    """Requests to the endpoint of ``config``, with retries, under one adaptive limit."""

    def __init__(self, config: LLMConfig) -> None:
        check_credentials(config)
        self.config = config
        self.in_flight = AdaptiveLimit(config.concurrency, adaptive=config.adaptive_concurrency)
        self._key = os.environ.get(config.api_key_env) or None
        self._client: Any = None
        self._answered = False
        """The endpoint has replied at least once (any HTTP status): connection errors are then
        bad luck."""
        self._unreachable = 0
        """Calls that could not connect."""
        self._told_overload = False

    def scrub(self, text: str) -> str:
        """Remove the key (and its bearer form) from any text that may reach a log or a file."""
        if self._key:
            text = text.replace(self._key, "***")
        return text

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def request(
        self, path: str, body: dict[str, Any] | None, cast_to: type, *, method: str = "post", retries: int | None = None
    ) -> Any:
        """POST (or ``method``) with retries; errors mapped to LLMError (stop the run) or
        CallFailed (this call). ``retries`` caps the non-time-out retries (default:
        ``max_retries``)."""
        cfg = self.config
        max_retries = cfg.max_retries if retries is None else retries
        timeouts = others = 0
        while True:
            try:
                return await self._attempt(path, body, cast_to, method)
            except openai.APITimeoutError:
                self._note_overload("time-outs")
                if timeouts >= cfg.timeout_retries:
                    raise CallFailed(
                        f"timeout: no reply within {cfg.timeout:g} s (after {cfg.timeout_retries} time-out retries)"
                    ) from None
                delay, timeouts = retry_delay(timeouts), timeouts + 1
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if status == 429:
                    self._note_overload("HTTP 429")
                response = getattr(exc, "response", None)
                if not retryable(status, response) or others >= max_retries:
                    raise self._failure(exc, max_retries) from None
                delay, others = retry_delay(others, response), others + 1
            except openai.APIError as exc:  # a reply the openai client could not read
                raise self._failure(exc) from None
            await asyncio.sleep(delay)

    def _openai(self) -> Any:
        if self._client is None:
            cfg = self.config
            self._client = openai.AsyncOpenAI(
                api_key=self._key or LOCAL_PLACEHOLDER_KEY,
                base_url=cfg.base_url,
                max_retries=0,
                timeout=cfg.timeout,  # retried in request(), each attempt in a slot
            )
        return self._client

    async def _attempt(self, path: str, body: dict[str, Any] | None, cast_to: type, method: str = "post") -> Any:
        """One HTTP attempt in a slot of the adaptive limit, which learns from how it ended."""
        async with self.in_flight.slot() as slot:
            try:
                # The client's generic post(): same timeouts as chat.completions.create(), without
                # its typed request transform and response models, which cost ~2 ms of CPU per
                # call and capped throughput at high concurrency (benchmark).
                if method == "get":
                    reply = await self._openai().get(path, cast_to=cast_to)
                else:
                    reply = await self._openai().post(path, cast_to=cast_to, body=body)
            except openai.APITimeoutError:
                slot.outcome = Outcome.timed_out
                raise
            except openai.APIStatusError as exc:
                self._answered = True
                slot.outcome = Outcome.rate_limited if exc.status_code == 429 else Outcome.other
                raise
            slot.outcome = Outcome.answered
            self._answered = True
            return reply

    def _note_overload(self, signal: str) -> None:
        """Say once, on stderr, that the endpoint is overloaded and the requests in flight were
        lowered."""
        limit = self.in_flight
        if self._told_overload or not limit.adaptive or limit.decreases == 0:
            return
        self._told_overload = True
        info(
            f"{self.config.base_url or 'api.openai.com'} is overloaded ({signal}): requests in "
            f"flight lowered from {limit.ceiling} to {limit.allowed}; they grow back while it "
            f"keeps up ({endpoint_flag(self.config.role, 'concurrency')} {limit.ceiling} is the "
            "ceiling)."
        )

    def _failure(self, exc: Exception, max_retries: int | None = None) -> Exception:
        """The error a failed call ends with: LLMError for refusals that fail every row, else
        CallFailed."""
        cfg = self.config
        retried = f" (after {cfg.max_retries if max_retries is None else max_retries} retries)"
        refusals = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
        if isinstance(exc, refusals):
            return LLMError(
                self.scrub(
                    f"{cfg.base_url or 'api.openai.com'} refused the request "
                    f"(HTTP {exc.status_code}: {_short(exc)}). Check the key in ${cfg.api_key_env}, "
                    f"{endpoint_flag(cfg.role, 'model')} '{cfg.model}' and "
                    f"{endpoint_flag(cfg.role, 'base_url')}."
                )
            )
        if isinstance(exc, openai.APIConnectionError):
            self._check_reachable(exc)
            return CallFailed(f"{UNANSWERED}: {_short(exc)}{retried}")
        if isinstance(exc, openai.RateLimitError):
            return CallFailed(f"HTTP 429 rate limited: {_short(exc)}{retried}", status=429)
        if isinstance(exc, openai.APIStatusError):
            again = retryable(exc.status_code, exc.response)
            return CallFailed(
                f"HTTP {exc.status_code}: {_short(exc)}{retried if again else ''}", status=exc.status_code
            )
        return CallFailed(f"bad response: {_short(exc)}")

    def _check_reachable(self, exc: BaseException) -> None:
        """Stop the run (:class:`EndpointUnreachable`) once ``UNREACHABLE_LIMIT`` calls could not
        connect and the endpoint never replied: a server that is not running or a wrong URL would
        otherwise cost every remaining call its full retries before the run could fail."""
        self._unreachable += 1
        if self._answered or self._unreachable < UNREACHABLE_LIMIT:
            return
        cfg = self.config
        raise EndpointUnreachable(
            self.scrub(
                f"nothing answers at {cfg.base_url or 'api.openai.com'}: {self._unreachable} requests "
                f"could not connect ({_short(exc)}, after {cfg.max_retries} retries each) and none has "
                f"ever been answered, so no more are sent. Start the server or fix "
                f"{endpoint_flag(cfg.role, 'base_url')}, then run the same command again."
            )
        ) from None


def retryable(status: int | None, response: Any = None) -> bool:
    """Whether a failed attempt is worth another: the server's ``x-should-retry`` if it sent one,
    else no reply at all (None), 408/409/429 or a 5xx (the openai client's rule)."""
    said = (getattr(response, "headers", None) or {}).get("x-should-retry")
    if said in ("true", "false"):
        return said == "true"
    return status is None or status in RETRYABLE_STATUS or status >= 500


def retry_delay(retry: int, response: Any = None) -> float:
    """Seconds before retry number ``retry`` (0-based): the server's Retry-After, else the
    backoff."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            after = float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
        if 0 < after <= MAX_RETRY_AFTER:
            return after
    backoff = min(INITIAL_RETRY_DELAY * 2.0 ** min(retry, 16), MAX_RETRY_DELAY)
    return backoff * (1 - 0.25 * random.random())


def _short(exc: BaseException, limit: int = 200) -> str:
    message = getattr(exc, "message", None) or str(exc)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message", message) if isinstance(inner, dict) else str(inner)
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


__all__ = [
    "CallFailed",
    "EndpointUnreachable",
    "LLMError",
    "Transport",
    "check_credentials",
    "retry_delay",
    "retryable",
]
