"""The one OpenAI-compatible client: every HTTP LLM call in the project goes through ``LLMClient``.

* transport: ``openai.AsyncOpenAI`` against any base URL, one attempt per ``post``; the retries are
  this module's (the openai client's policy: exponential backoff with jitter on 408/409/429/5xx and
  connection errors, honouring ``Retry-After``) because each attempt must hold a slot of the
  adaptive limit (:mod:`speechsum_cli.llm.concurrency`: time-outs and 429s halve the requests in
  flight) and time-outs get a budget of their own (``timeout_retries``; the rest ``max_retries``);
  when a budget is spent the call returns a failure with the reason (never raises per row);
* structured output: the reply text is parsed and validated against a JSON Schema; on failure a
  repair turn is sent, ``json_retries`` times, then the call fails with reason ``invalid JSON``;
* free text: :meth:`LLMClient.generate` asks for ``n`` plain-text choices with the caller's sampling
  fields (a speech LM on a server: audio as ``input_audio`` content parts), cached like the rest;
* cache: every reply that was paid for is stored in sqlite under (model, messages, params,
  prompt_version, attempt), so a re-run sends zero requests for work already done;
* ledger: requests, tokens and USD per the price table; ``max_cost`` raises
  :class:`BudgetExceeded` *before* a request that could pass the budget;
* the key: read from the environment variable named in the config, kept only inside the openai
  client, and scrubbed from every reason and error message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

from speechsum_cli.console import info, warn
from speechsum_cli.errors import EXIT_NOTHING_USABLE, SpeechsumError
from speechsum_cli.llm.cache import ResponseCache, cache_key
from speechsum_cli.llm.concurrency import AdaptiveLimit, Outcome
from speechsum_cli.llm.config import LLMConfig, endpoint_flag
from speechsum_cli.llm.jsonout import InvalidJSON, parse_json
from speechsum_cli.llm.prices import BudgetExceeded, Ledger, estimate_tokens, price_for
from speechsum_cli.llm.ratelimit import RateLimiter

T = TypeVar("T")

REPAIR_PROMPT = (
    "Your previous reply was not valid: {reason}. Reply again with only the JSON object, no other "
    "text, following the schema you were given."
)
LOCAL_PLACEHOLDER_KEY = "sk-no-key-needed"
DEFAULT_VOICE = "alloy"
"""Sent to custom base URLs when the key variable is unset (local servers ignore it)."""


class LLMError(SpeechsumError):
    """The server refuses every request (bad key, unknown model, bad URL): stop the whole run."""


class EndpointUnreachable(LLMError):
    """Nothing answers at the endpoint: the first calls could not connect and none ever got a reply.
    Nothing usable can come of the rest, so none is sent (exit 3, like any run with nothing usable)."""

    exit_code = EXIT_NOTHING_USABLE


INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
"""Backoff between retries: 0.5 s doubling up to 8 s, minus up to 25% jitter (the openai client's)."""
MAX_RETRY_AFTER = 60.0
"""A server's ``Retry-After`` is honoured up to this many seconds (longer: the backoff above)."""
RETRYABLE_STATUS = (408, 409, 429)
"""Retried like any 5xx; other 4xx are the request's own fault."""

UNREACHABLE_LIMIT = 3
"""Calls that could not connect (after their retries), with no reply ever received from the
endpoint, after which the run stops instead of spending every other call's retries the same way."""


@dataclass
class Completion:
    """The outcome of one structured call: ``data`` or a failure ``reason`` (never both)."""

    data: dict[str, Any] | None = None
    reason: str | None = None
    """Short failure category + detail, e.g. 'invalid JSON: no JSON object in the reply'."""
    requests: int = 0
    """HTTP requests that returned a reply (retries inside the openai client not counted)."""
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    raw: str | None = None
    """The last reply text (for debugging invalid JSON)."""

    @property
    def ok(self) -> bool:
        return self.data is not None


@dataclass
class Generation:
    """The outcome of one free-text chat completion with ``n`` choices (a speech LM on a server):
    the texts, or a failure ``reason``."""

    texts: list[str] | None = None
    reason: str | None = None
    status: int | None = None
    """The HTTP status of a failed request the server answered (None: no answer, or not HTTP)."""
    requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def ok(self) -> bool:
        return self.texts is not None

    @property
    def refused(self) -> bool:
        """The server answered that the request itself is wrong (a 4xx it would answer again)."""
        return self.status is not None and 400 <= self.status < 500 and not retryable(self.status)


@dataclass
class Speech:
    """The outcome of one text-to-speech call: wav bytes or a failure reason."""

    audio: bytes | None = None
    reason: str | None = None
    requests: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0


@dataclass
class Estimate:
    """What a call would cost (dry run): cached calls need no request."""

    cached: bool
    input_tokens: int
    output_tokens: int
    cost_usd: float


def check_credentials(config: LLMConfig) -> None:
    """Fail before any work when no key is available for api.openai.com (local URLs need none)."""
    if not os.environ.get(config.api_key_env) and config.base_url is None and not config.dry_run:
        raise LLMError(
            f"no API key: environment variable {config.api_key_env} is not set. Export it, pass "
            f"{endpoint_flag(config.role, 'api_key_env')} NAME for another variable, or "
            f"{endpoint_flag(config.role, 'base_url')} for a local server."
        )


def message_text(messages: list[dict[str, Any]]) -> str:
    """The text of ``messages`` (of content-part lists, the text parts: audio is not text)."""
    def text(content: Any) -> str:
        if isinstance(content, list):
            return "\n".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
        return content or ""
    return "\n".join(text(m.get("content")) for m in messages)


def public_url(url: str | None) -> str | None:
    """``url`` fit for a log or ``speechsum.json``: no user:password, no query string, no fragment
    (where a server's key could hide)."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class LLMClient:
    config: LLMConfig
    spent_before: float = 0.0
    """USD spent by earlier runs of the same job (counts against ``max_cost``)."""
    ledger: Ledger = field(init=False)
    _cache: ResponseCache | None = field(init=False, default=None)
    _client: Any = field(init=False, default=None)
    _key: str | None = field(init=False, default=None, repr=False)
    _answered: bool = field(init=False, default=False)
    """The endpoint has replied at least once (any HTTP status): connection errors are then bad luck."""
    _unreachable: int = field(init=False, default=0)
    """Calls that could not connect."""
    _told_overload: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        cfg = self.config
        price = price_for(cfg.model, cfg.prices)
        if price is None:
            warn(f"no price known for model '{cfg.model}': cost is counted as $0 "
                 "(pass --price-in/--price-out or --prices FILE to set one).")
        self.ledger = Ledger(price=price, max_cost=cfg.max_cost, spent_before=self.spent_before)
        self._limiter = RateLimiter(cfg.rpm, cfg.tpm)
        self.in_flight = AdaptiveLimit(cfg.concurrency, adaptive=cfg.adaptive_concurrency)
        if cfg.cache_dir is not None:
            self._cache = ResponseCache(cfg.cache_dir)
        check_credentials(cfg)
        self._key = os.environ.get(cfg.api_key_env) or None

    # -- public API ------------------------------------------------------------------------

    def estimate(self, messages: list[dict[str, str]], *, prompt_version: str | int) -> Estimate:
        """Dry-run estimate for one call (attempt 0): no HTTP, cache looked up."""
        key = cache_key(self._key_payload(messages, prompt_version, 0))
        hit = self._cache.get(key) if self._cache is not None else None
        if hit is not None:
            return Estimate(True, 0, 0, 0.0)
        tin = estimate_tokens(message_text(messages))
        tout = min(self.config.expected_output_tokens, self.config.max_tokens)
        return Estimate(False, tin, tout, self.ledger.cost_of(tin, tout))

    async def complete_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, prompt_version: str | int
    ) -> Completion:
        """One structured call with cache, budget, rate limit, HTTP retries and JSON repair turns.

        Raises :class:`BudgetExceeded` (nothing booked for this call's unsent attempt) and
        :class:`LLMError` (auth/model/URL errors that would fail every row); everything else
        becomes ``Completion(reason=...)``.
        """
        result = await self._complete_json(messages, schema, prompt_version, fresh=False)
        if not result.ok and result.cache_hits and self.config.retry_failed:
            return self._merged(result, await self._complete_json(messages, schema, prompt_version, fresh=True))
        return result

    async def _complete_json(self, messages: list[dict[str, str]], schema: dict[str, Any],
                             prompt_version: str | int, *, fresh: bool) -> Completion:
        """The attempts of one call; ``fresh`` asks the server even where the cache has a reply."""
        result = Completion()
        convo = list(messages)
        for attempt in range(self.config.json_retries + 1):
            text = await self._reply(convo, prompt_version, attempt, result, fresh=fresh)
            if text is None:
                return result
            result.raw = text
            try:
                result.data = parse_json(text, schema)
                result.reason = None
                return result
            except InvalidJSON as exc:
                result.reason = f"invalid JSON: {exc}"
                convo = list(messages) + [
                    {"role": "assistant", "content": text[:4000]},
                    {"role": "user", "content": REPAIR_PROMPT.format(reason=exc)},
                ]
        result.reason = self.scrub(f"{result.reason} (after {self.config.json_retries + 1} attempts)")
        return result

    @staticmethod
    def _merged(cached: Completion, fresh: Completion) -> Completion:
        """The fresh outcome, with the usage of both tries."""
        fresh.requests += cached.requests
        fresh.cache_hits += cached.cache_hits
        fresh.input_tokens += cached.input_tokens
        fresh.output_tokens += cached.output_tokens
        fresh.cost_usd += cached.cost_usd
        return fresh

    async def speech(self, text: str, *, voice: str = DEFAULT_VOICE) -> Speech:
        """Text to speech (``/audio/speech``, wav) with the same cache, budget, limits and retries.

        TTS models are priced per character: the price table's input price is USD per 1M
        characters of input text (e.g. tts-1); the output price is unused.
        """
        result = Speech()
        key = cache_key({"model": self.config.model, "speech": text, "voice": voice, "format": "wav"})
        hit = self._cached(key)
        if hit is not None:
            result.cache_hits = 1
            result.audio = base64.b64decode(hit)
            return result
        if self.config.dry_run:
            raise RuntimeError("dry run: no request may be sent")
        estimate = self.ledger.estimate(len(text), 0)
        body = {"model": self.config.model, "input": text, "voice": voice, "response_format": "wav"}
        try:
            audio = await self._booked(
                estimate, estimate_tokens(text), lambda: self._post("/audio/speech", body, bytes)
            )
        except _RowFailure as exc:
            result.reason = self.scrub(str(exc))
            return result
        if not audio or audio[:4] != b"RIFF":
            self.ledger.release(estimate)
            result.reason = "bad response: not a wav file"
            return result
        result.cost_usd = self.ledger.settle(estimate, len(text), 0)
        result.requests = 1
        result.audio = audio
        if self._cache is not None:
            self._cache.put(key, self.config.model, base64.b64encode(audio).decode("ascii"), len(text), 0)
        return result

    async def generate(self, messages: list[dict[str, Any]], params: dict[str, Any], *, n: int = 1) -> Generation:
        """One chat completion asking for ``n`` choices (``"n"`` in the request), the reply's texts
        stripped: how a speech LM on a server generates (content parts with ``input_audio``).

        ``params`` are the request's sampling fields (``temperature``, ``top_p``, ``seed``,
        ``max_tokens``), sent as given, in place of the config's. The same cache (keyed on model,
        messages, params and ``n``: a re-run sends only what was not answered), budget, adaptive
        limit and retries as every call; a server that returns fewer than ``n`` choices gives
        fewer texts (the caller asks again). Raises :class:`LLMError` like :meth:`complete_json`.
        """
        result = Generation()
        key = cache_key({"kind": "generate", "model": self.config.model, "messages": messages,
                         "params": params, "n": n})
        hit = self._cached(key)
        if hit is not None:
            result.cache_hits = 1
            result.texts = json.loads(hit)
            return result
        if self.config.dry_run:
            raise RuntimeError("dry run: no request may be sent")  # a bug, not a user error
        est_in = estimate_tokens(message_text(messages))
        max_tokens = int(params.get("max_tokens") or self.config.max_tokens)
        estimate = self.ledger.estimate(est_in, n * min(self.config.expected_output_tokens, max_tokens))
        body = {"model": self.config.model, "messages": messages, **params, **({"n": n} if n > 1 else {})}
        body.update(self.config.extra_body or {})
        try:
            raw = await self._booked(
                estimate, est_in + n * max_tokens, lambda: self._post("/chat/completions", body, str)
            )
        except _RowFailure as exc:
            result.reason, result.status = self.scrub(str(exc)), exc.status
            return result
        try:
            reply = json.loads(raw)
            texts = [((c.get("message") or {}).get("content") or "").strip() for c in reply.get("choices") or []]
            usage = reply.get("usage") or {}
        except (ValueError, AttributeError, TypeError) as exc:
            self.ledger.release(estimate)
            result.reason = f"bad response: not an OpenAI chat completion ({type(exc).__name__})"
            return result
        tin = int(usage.get("prompt_tokens") or 0) or est_in
        tout = int(usage.get("completion_tokens") or 0) or sum(estimate_tokens(t) for t in texts)
        result.cost_usd = self.ledger.settle(estimate, tin, tout)
        result.requests, result.input_tokens, result.output_tokens = 1, tin, tout
        if not texts:
            result.reason = "bad response: no choices in the reply"
            return result
        result.texts = texts
        if self._cache is not None:
            self._cache.put(key, self.config.model, json.dumps(texts, ensure_ascii=False), tin, tout)
        return result

    async def get_json(self, path: str, *, retries: int = 2) -> Completion:
        """One GET of ``path`` (e.g. ``/models``: what a server serves) with at most ``retries``
        retries, under the same adaptive limit; the reply's JSON in ``data`` or a failure ``reason``
        (a connection error's reason starts with 'connection error')."""
        result = Completion()
        try:
            raw = await self._post(path, None, str, method="get", retries=retries)
        except _RowFailure as exc:
            result.reason = self.scrub(str(exc))
            return result
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        result.requests = 1
        if not isinstance(data, dict):
            result.reason = f"bad response: not a JSON object ({str(raw)[:80]!r})"
            return result
        result.data = data
        return result

    async def post_json(self, path: str, body: dict[str, Any]) -> Completion:
        """One POST of a JSON ``body`` to ``path`` (e.g. ``/completions`` with token ids and vLLM's
        ``prompt_logprobs``, for a remote teacher) under the same adaptive limit, rate limits,
        retries and ledger as every other call; the reply's JSON object in ``data``, or a failure
        ``reason``. Not cached: such calls score fresh samples every time."""
        result = Completion()
        if self.config.dry_run:
            raise RuntimeError("dry run: no request may be sent")  # a bug, not a user error
        estimate = self.ledger.estimate(0, 0)
        try:
            raw = await self._booked(estimate, 0, lambda: self._post(path, body, str))
        except _RowFailure as exc:
            result.reason = self.scrub(str(exc))
            return result
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        usage = (data.get("usage") if isinstance(data, dict) else None) or {}
        tin, tout = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        result.cost_usd = self.ledger.settle(estimate, tin, tout)
        result.requests, result.input_tokens, result.output_tokens = 1, tin, tout
        if not isinstance(data, dict):
            result.reason = f"bad response: not a JSON object ({raw[:80]!r})"
            return result
        result.data = data
        return result

    def scrub(self, text: str) -> str:
        """Remove the key (and its bearer form) from any text that may reach a log or a file."""
        if self._key:
            text = text.replace(self._key, "***")
        return text

    def close(self) -> None:
        """Release the cache (for callers that never made a request; aclose() does it all)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # -- internals -------------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        cfg = self.config
        params: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if cfg.extra_body:
            params["extra_body"] = cfg.extra_body
        return params

    def _key_payload(self, messages: list[dict[str, str]], prompt_version: str | int, attempt: int) -> dict[str, Any]:
        return {"model": self.config.model, "messages": messages, "params": self._params(),
                "prompt_version": str(prompt_version), "attempt": attempt}

    def _openai(self) -> Any:
        if self._client is None:
            cfg = self.config
            self._client = openai.AsyncOpenAI(
                api_key=self._key or LOCAL_PLACEHOLDER_KEY, base_url=cfg.base_url,
                max_retries=0, timeout=cfg.timeout,  # retried in _post, each attempt in a slot
            )
        return self._client

    async def _reply(
        self, messages: list[dict[str, str]], prompt_version: str | int, attempt: int, result: Completion,
        *, fresh: bool = False,
    ) -> str | None:
        """Reply text from the cache (unless ``fresh``) or the server; None with ``result.reason`` set on failure."""
        key = cache_key(self._key_payload(messages, prompt_version, attempt))
        hit = None if fresh else self._cached(key)
        if hit is not None:
            result.cache_hits += 1
            return hit
        if self.config.dry_run:
            raise RuntimeError("dry run: no request may be sent")  # a bug, not a user error
        est_in = estimate_tokens(message_text(messages))
        estimate = self.ledger.estimate(est_in, min(self.config.expected_output_tokens, self.config.max_tokens))
        try:
            text, tin, tout = await self._booked(
                estimate, est_in + self.config.max_tokens, lambda: self._send(messages)
            )
        except _RowFailure as exc:
            result.reason = self.scrub(str(exc))
            return None
        cost = self.ledger.settle(estimate, tin, tout)
        result.requests += 1
        result.input_tokens += tin
        result.output_tokens += tout
        result.cost_usd += cost
        if self._cache is not None:
            self._cache.put(key, self.config.model, text, tin, tout)
        return text

    def _cached(self, key: str) -> str | None:
        """The cached reply text under ``key`` (counted as a cache hit in the ledger), or None."""
        hit = self._cache.get(key) if self._cache is not None else None
        if hit is None:
            return None
        self.ledger.cache_hits += 1
        return hit[0]

    async def _booked(self, estimate: float, tokens: int, send: Callable[[], Awaitable[T]]) -> T:
        """``send()`` once the rate limiter admits ``tokens``, with ``estimate`` USD reserved in the
        ledger first (may raise :class:`BudgetExceeded`) and released again when no reply comes:
        any exception (a :class:`_RowFailure` for this call, a cancellation...) propagates."""
        self.ledger.reserve(estimate)
        try:
            await self._limiter.acquire(tokens)
            return await send()
        except BaseException:
            self.ledger.release(estimate)
            raise

    async def _send(self, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        body.update(self.config.extra_body or {})
        raw = await self._post("/chat/completions", body, str)
        try:
            response = json.loads(raw)
            choices = response.get("choices") or [{}]
            text = (choices[0].get("message") or {}).get("content") or ""
            usage = response.get("usage") or {}
        except (ValueError, AttributeError, TypeError) as exc:
            raise _RowFailure(f"bad response: not an OpenAI chat completion ({type(exc).__name__})") from None
        tin = int(usage.get("prompt_tokens") or 0) or estimate_tokens(message_text(messages))
        tout = int(usage.get("completion_tokens") or 0) or estimate_tokens(text)
        return text, tin, tout

    async def _post(self, path: str, body: dict[str, Any] | None, cast_to: type, *, method: str = "post",
                    retries: int | None = None) -> Any:
        """POST (or ``method``) with retries; errors mapped to LLMError (stop the run) or _RowFailure
        (this call). ``retries`` caps the non-time-out retries (default: ``max_retries``)."""
        cfg = self.config
        max_retries = cfg.max_retries if retries is None else retries
        timeouts = others = 0
        while True:
            try:
                return await self._attempt(path, body, cast_to, method)
            except openai.APITimeoutError:
                self._note_overload("time-outs")
                if timeouts >= cfg.timeout_retries:
                    raise _RowFailure(f"timeout: no reply within {cfg.timeout:g} s "
                                      f"(after {cfg.timeout_retries} time-out retries)") from None
                delay, timeouts = retry_delay(timeouts), timeouts + 1
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if status == 429:
                    self._note_overload("HTTP 429")
                if not retryable(status, getattr(exc, "response", None)) or others >= max_retries:
                    raise self._failure(exc, max_retries) from None
                delay, others = retry_delay(others, getattr(exc, "response", None)), others + 1
            except openai.APIError as exc:  # a reply the openai client could not read
                raise self._failure(exc) from None
            await asyncio.sleep(delay)

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
        """Say once, on stderr, that the endpoint is overloaded and the requests in flight were lowered."""
        limit = self.in_flight
        if self._told_overload or not limit.adaptive or limit.decreases == 0:
            return
        self._told_overload = True
        info(f"{self.config.base_url or 'api.openai.com'} is overloaded ({signal}): requests in flight "
             f"lowered from {limit.ceiling} to {limit.allowed}; they grow back while it keeps up "
             f"({endpoint_flag(self.config.role, 'concurrency')} {limit.ceiling} is the ceiling).")

    def _failure(self, exc: Exception, max_retries: int | None = None) -> Exception:
        """The error a failed call ends with: LLMError for refusals that fail every row, else _RowFailure."""
        cfg = self.config
        retried = f" (after {cfg.max_retries if max_retries is None else max_retries} retries)"
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)):
            return LLMError(self.scrub(
                f"{cfg.base_url or 'api.openai.com'} refused the request "
                f"(HTTP {exc.status_code}: {_short(exc)}). Check the key in ${cfg.api_key_env}, "
                f"{endpoint_flag(cfg.role, 'model')} '{cfg.model}' and "
                f"{endpoint_flag(cfg.role, 'base_url')}."
            ))
        if isinstance(exc, openai.APIConnectionError):
            self._check_reachable(exc)
            return _RowFailure(f"connection error: {_short(exc)}{retried}")
        if isinstance(exc, openai.RateLimitError):
            return _RowFailure(f"HTTP 429 rate limited: {_short(exc)}{retried}", status=429)
        if isinstance(exc, openai.APIStatusError):
            again = retryable(exc.status_code, exc.response)
            return _RowFailure(f"HTTP {exc.status_code}: {_short(exc)}{retried if again else ''}",
                               status=exc.status_code)
        return _RowFailure(f"bad response: {_short(exc)}")

    def _check_reachable(self, exc: BaseException) -> None:
        """Stop the run (:class:`EndpointUnreachable`) once ``UNREACHABLE_LIMIT`` calls could not
        connect and the endpoint never replied: a server that is not running or a wrong URL would
        otherwise cost every remaining call its full retries before the run could fail."""
        self._unreachable += 1
        if self._answered or self._unreachable < UNREACHABLE_LIMIT:
            return
        cfg = self.config
        raise EndpointUnreachable(self.scrub(
            f"nothing answers at {cfg.base_url or 'api.openai.com'}: {self._unreachable} requests could not "
            f"connect ({_short(exc)}, after {cfg.max_retries} retries each) and none has ever been answered, "
            f"so no more are sent. Start the server or fix {endpoint_flag(cfg.role, 'base_url')}, then run "
            "the same command again."
        )) from None


def retryable(status: int | None, response: Any = None) -> bool:
    """Whether a failed attempt is worth another: the server's ``x-should-retry`` if it sent one,
    else no reply at all (None), 408/409/429 or a 5xx (the openai client's rule)."""
    said = (getattr(response, "headers", None) or {}).get("x-should-retry")
    if said in ("true", "false"):
        return said == "true"
    return status is None or status in RETRYABLE_STATUS or status >= 500


def retry_delay(retry: int, response: Any = None) -> float:
    """Seconds before retry number ``retry`` (0-based): the server's Retry-After, else the backoff."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            after = float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
        if 0 < after <= MAX_RETRY_AFTER:
            return after
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(retry, 16), MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


class _RowFailure(Exception):
    """One call failed for good (retries spent); the row is recorded as failed with this reason."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        """The HTTP status the server answered with, if it answered."""


def _short(exc: BaseException, limit: int = 200) -> str:
    message = getattr(exc, "message", None) or str(exc)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message", message) if isinstance(inner, dict) else str(inner)
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


__all__ = ["BudgetExceeded", "Completion", "EndpointUnreachable", "Estimate", "Generation", "LLMClient", "LLMError",
           "public_url"]
