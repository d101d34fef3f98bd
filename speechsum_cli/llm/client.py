"""The one OpenAI-compatible client: every HTTP LLM call in the project goes through ``LLMClient``.

Each call kind describes its request as a :class:`_Call` (how to key it in the cache, what to
send, how to read the reply, what to reserve) and :meth:`LLMClient._call` runs every one the
same way: cache lookup → dry-run guard → estimate → reserve budget and rate limit → send →
parse → settle → cache store. What each kind adds:

* structured output (:meth:`~LLMClient.complete_json`): the reply text is parsed and validated
  against a JSON Schema; on failure a repair turn is sent, ``json_retries`` times, then the call
  fails with reason ``invalid JSON``;
* free text (:meth:`~LLMClient.generate`): ``n`` plain-text choices with the caller's sampling
  fields (a speech LM on a server: audio as ``input_audio`` content parts);
* speech (:meth:`~LLMClient.speech`): ``/audio/speech`` as wav, priced per character;
* raw JSON (:meth:`~LLMClient.post_json`, not cached; :meth:`~LLMClient.get_json`, not booked);
* cache: every reply that was paid for is stored in sqlite under its key (model, messages,
  params, prompt_version, attempt), so a re-run sends zero requests for work already done;
* ledger: requests, tokens and USD per the price table; ``max_cost`` raises
  :class:`BudgetExceeded` *before* a request that could pass the budget.

HTTP, retries and the key live in :mod:`speechsum_cli.llm.transport`; a call that fails for good
returns its result with the (key-scrubbed) ``reason``, never raises per row.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from speechsum_cli.console import warn
from speechsum_cli.llm.cache import ResponseCache, cache_key
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.llm.jsonout import InvalidJSON, parse_json
from speechsum_cli.llm.prices import Ledger, estimate_tokens, price_for
from speechsum_cli.llm.ratelimit import RateLimiter
from speechsum_cli.llm.transport import CallFailed, Transport, retryable

T = TypeVar("T")

REPAIR_PROMPT = (
    "Your previous reply was not valid: {reason}. Reply again with only the JSON object, no other "
    "text, following the schema you were given."
)
DEFAULT_VOICE = "alloy"
"""The voice :meth:`LLMClient.speech` asks for (one of OpenAI's built-in TTS voices)."""


@dataclass
class Usage:
    """What one call (or many, added up) took: replies received, cache hits, tokens, USD."""

    requests: int = 0
    """HTTP requests that returned a reply (retries inside the transport not counted)."""
    cache_hits: int = 0
    input_tokens: int = 0
    """Prompt tokens (for speech: characters of input text, as TTS is priced)."""
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.cache_hits += other.cache_hits
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd

    def as_record(self) -> dict[str, Any]:
        """requests, cache_hits, input_tokens, output_tokens, cost_usd (in that order)."""
        return dataclasses.asdict(self)


@dataclass
class Completion:
    """The outcome of one structured call: ``data`` or a failure ``reason`` (never both)."""

    data: dict[str, Any] | None = None
    reason: str | None = None
    """Short failure category + detail, e.g. 'invalid JSON: no JSON object in the reply'."""
    usage: Usage = field(default_factory=Usage)
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
    usage: Usage = field(default_factory=Usage)

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
    usage: Usage = field(default_factory=Usage)


@dataclass
class Estimate:
    """What a call would cost (dry run): cached calls need no request."""

    cached: bool
    input_tokens: int
    output_tokens: int
    cost_usd: float


def message_text(messages: list[dict[str, Any]]) -> str:
    """The text of ``messages`` (of content-part lists, the text parts: audio is not text)."""

    def text(content: Any) -> str:
        if isinstance(content, list):
            parts = (part for part in content if isinstance(part, dict))
            return "\n".join(str(part.get("text") or "") for part in parts)
        return content or ""

    return "\n".join(text(m.get("content")) for m in messages)


@dataclass(frozen=True)
class _Reply:
    """A reply as its call kind read it."""

    value: Any
    """What the call returns (the text, the texts, the wav bytes, the JSON object)."""
    input_tokens: int = 0
    output_tokens: int = 0
    stored: str | None = None
    """What the cache keeps of it (None: nothing)."""
    problem: str | None = None
    """The reply was paid for but cannot be used: the call fails with this reason."""


@dataclass(frozen=True)
class _Call:
    """One request of a call kind: everything :meth:`LLMClient._call` needs to run it."""

    path: str
    body: dict[str, Any] | None
    parse: Callable[[Any], _Reply]
    """The reply -> its value and usage; raises :class:`CallFailed` for one it cannot read (the
    reservation is released, nothing is billed)."""
    key: str | None = None
    """Cache key (None: never cached)."""
    from_cache: Callable[[str], Any] = str
    """The cached text -> the call's value."""
    priced: tuple[int, int] | None = (0, 0)
    """(input, output) tokens the budget reserves for; None: not booked at all (no budget, rate
    limit, dry-run guard or ledger entry)."""
    rate_tokens: int = 0
    """Tokens the rate limiter admits for the request."""
    cast_to: type = str
    method: str = "post"
    retries: int | None = None
    """Cap on the transport's non-time-out retries (None: ``max_retries``)."""


@dataclass
class LLMClient:
    config: LLMConfig
    spent_before: float = 0.0
    """USD spent by earlier runs of the same job (counts against ``max_cost``)."""
    ledger: Ledger = field(init=False)
    _cache: ResponseCache | None = field(init=False, default=None)
    _transport: Transport = field(init=False, repr=False)

    def __post_init__(self) -> None:
        cfg = self.config
        price = price_for(cfg.model, cfg.prices)
        if price is None:
            warn(
                f"no price known for model '{cfg.model}': cost is counted as $0 "
                "(pass --price-in/--price-out or --prices FILE to set one)."
            )
        self.ledger = Ledger(price=price, max_cost=cfg.max_cost, spent_before=self.spent_before)
        self._limiter = RateLimiter(cfg.rpm, cfg.tpm)
        if cfg.cache_dir is not None:
            self._cache = ResponseCache(cfg.cache_dir)
        self._transport = Transport(cfg)  # a missing key for api.openai.com fails here

    @property
    def in_flight(self) -> Any:
        """The adaptive limit of requests in flight (:class:`~.concurrency.AdaptiveLimit`)."""
        return self._transport.in_flight

    # -- public API ------------------------------------------------------------------------

    def estimate(self, messages: list[dict[str, str]], *, prompt_version: str | int) -> Estimate:
        """Dry-run estimate for one call (attempt 0): no HTTP, cache looked up."""
        call = self._chat(messages, prompt_version, 0)
        if self._cache is not None and self._cache.get(call.key) is not None:
            return Estimate(True, 0, 0, 0.0)
        tin, tout = call.priced
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
        if not result.ok and result.usage.cache_hits and self.config.retry_failed:
            fresh = await self._complete_json(messages, schema, prompt_version, fresh=True)
            fresh.usage.add(result.usage)  # the fresh outcome, with the usage of both tries
            return fresh
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
        try:
            result.texts = await self._call(self._generation(messages, params, n), result.usage)
        except CallFailed as exc:
            result.reason, result.status = str(exc), exc.status
        return result

    async def speech(self, text: str, *, voice: str = DEFAULT_VOICE) -> Speech:
        """Text to speech (``/audio/speech``, wav) with the same cache, budget, limits and retries.

        TTS models are priced per character: the price table's input price is USD per 1M
        characters of input text (e.g. tts-1); the output price is unused.
        """
        result = Speech()
        try:
            result.audio = await self._call(self._speech(text, voice), result.usage)
        except CallFailed as exc:
            result.reason = str(exc)
        return result

    async def get_json(self, path: str, *, retries: int = 2) -> Completion:
        """One GET of ``path`` (e.g. ``/models``: what a server serves) with at most ``retries``
        retries, under the same adaptive limit; the reply's JSON in ``data`` or a failure ``reason``
        (a connection error's reason starts with 'connection error'). Not cached, not booked."""
        call = _Call(path, None, _json_object, priced=None, method="get", retries=retries)
        return await self._json_call(call)

    async def post_json(self, path: str, body: dict[str, Any]) -> Completion:
        """One POST of a JSON ``body`` to ``path`` (e.g. ``/completions`` with token ids and vLLM's
        ``prompt_logprobs``, for a remote teacher) under the same adaptive limit, rate limits,
        retries and ledger as every other call; the reply's JSON object in ``data``, or a failure
        ``reason``. Not cached: such calls score fresh samples every time."""
        return await self._json_call(_Call(path, body, _json_object))

    def close(self) -> None:
        """Release the cache (for callers that never made a request; aclose() does it all)."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    async def aclose(self) -> None:
        await self._transport.close()
        self.close()

    # -- the one call path -----------------------------------------------------------------

    async def _call(self, call: _Call, usage: Usage, *, fresh: bool = False) -> Any:
        """Run ``call``: its value from the cache (unless ``fresh``) or the server, its usage added
        to ``usage``. Raises :class:`CallFailed` (the reason scrubbed of the key) when it failed,
        :class:`BudgetExceeded` before a request the budget cannot take, :class:`LLMError` when
        the server refuses every request."""
        hit = None if fresh or call.key is None else self._cached(call.key)
        if hit is not None:
            usage.cache_hits += 1
            return call.from_cache(hit)
        booked = call.priced is not None
        if booked and self.config.dry_run:
            raise RuntimeError("dry run: no request may be sent")  # a bug, not a user error
        estimate = self.ledger.estimate(*call.priced) if booked else 0.0

        async def send() -> _Reply:
            raw = await self._transport.request(
                call.path, call.body, call.cast_to, method=call.method, retries=call.retries
            )
            return call.parse(raw)

        try:
            reply = await (self._booked(estimate, call.rate_tokens, send) if booked else send())
        except CallFailed as exc:
            raise CallFailed(self._transport.scrub(str(exc)), status=exc.status) from None
        tin, tout = reply.input_tokens, reply.output_tokens
        cost = self.ledger.settle(estimate, tin, tout) if booked else 0.0
        usage.add(Usage(1, 0, tin, tout, cost))
        if reply.problem is not None:
            raise CallFailed(self._transport.scrub(reply.problem))
        if call.key is not None and reply.stored is not None and self._cache is not None:
            self._cache.put(call.key, self.config.model, reply.stored, tin, tout)
        return reply.value

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
        any exception (a :class:`CallFailed` for this call, a cancellation...) propagates."""
        self.ledger.reserve(estimate)
        try:
            await self._limiter.acquire(tokens)
            return await send()
        except BaseException:
            self.ledger.release(estimate)
            raise

    # -- the call kinds ----------------------------------------------------------------------

    async def _complete_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], prompt_version: str | int, *, fresh: bool
    ) -> Completion:
        """The attempts of one call; ``fresh`` asks the server even where the cache has a reply."""
        result = Completion()
        convo = list(messages)
        for attempt in range(self.config.json_retries + 1):
            try:
                text = await self._call(self._chat(convo, prompt_version, attempt), result.usage, fresh=fresh)
            except CallFailed as exc:
                result.reason = str(exc)
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
        attempts = self.config.json_retries + 1
        result.reason = self._transport.scrub(f"{result.reason} (after {attempts} attempts)")
        return result

    async def _json_call(self, call: _Call) -> Completion:
        result = Completion()
        try:
            result.data = await self._call(call, result.usage)
        except CallFailed as exc:
            result.reason = str(exc)
        return result

    def _chat(self, messages: list[dict[str, str]], prompt_version: str | int, attempt: int) -> _Call:
        """One attempt of a structured call: the config's sampling fields, the reply's text."""
        cfg = self.config
        params: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        if cfg.extra_body:
            params["extra_body"] = cfg.extra_body
        key = cache_key(
            {
                "model": cfg.model,
                "messages": messages,
                "params": params,
                "prompt_version": str(prompt_version),
                "attempt": attempt,
            }
        )
        body: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
        }
        body.update(cfg.extra_body or {})
        est_in = estimate_tokens(message_text(messages))
        return _Call(
            "/chat/completions",
            body,
            lambda raw: _chat_reply(raw, messages),
            key=key,
            priced=(est_in, min(cfg.expected_output_tokens, cfg.max_tokens)),
            rate_tokens=est_in + cfg.max_tokens,
        )

    def _generation(self, messages: list[dict[str, Any]], params: dict[str, Any], n: int) -> _Call:
        """``n`` choices of free text with the caller's sampling ``params``."""
        cfg = self.config
        key = cache_key({"kind": "generate", "model": cfg.model, "messages": messages, "params": params, "n": n})
        body = {"model": cfg.model, "messages": messages, **params, **({"n": n} if n > 1 else {})}
        body.update(cfg.extra_body or {})
        est_in = estimate_tokens(message_text(messages))
        max_tokens = int(params.get("max_tokens") or cfg.max_tokens)
        return _Call(
            "/chat/completions",
            body,
            lambda raw: _generation_reply(raw, est_in),
            key=key,
            from_cache=json.loads,
            priced=(est_in, n * min(cfg.expected_output_tokens, max_tokens)),
            rate_tokens=est_in + n * max_tokens,
        )

    def _speech(self, text: str, voice: str) -> _Call:
        """Wav audio of ``text``, priced per character."""
        model = self.config.model
        key = cache_key({"model": model, "speech": text, "voice": voice, "format": "wav"})
        body = {"model": model, "input": text, "voice": voice, "response_format": "wav"}
        return _Call(
            "/audio/speech",
            body,
            lambda audio: _speech_reply(audio, text),
            key=key,
            from_cache=base64.b64decode,
            priced=(len(text), 0),
            rate_tokens=estimate_tokens(text),
            cast_to=bytes,
        )


def _chat_reply(raw: str, messages: list[dict[str, Any]]) -> _Reply:
    """The first choice's text of a chat completion (usage estimated where the server has none)."""
    try:
        response = json.loads(raw)
        choices = response.get("choices") or [{}]
        text = (choices[0].get("message") or {}).get("content") or ""
        usage = response.get("usage") or {}
    except (ValueError, AttributeError, TypeError) as exc:
        raise _not_a_chat_completion(exc) from None
    tin = int(usage.get("prompt_tokens") or 0) or estimate_tokens(message_text(messages))
    tout = int(usage.get("completion_tokens") or 0) or estimate_tokens(text)
    return _Reply(text, tin, tout, stored=text)


def _generation_reply(raw: str, est_in: int) -> _Reply:
    """Every choice's text, stripped; no choice at all is paid for but fails the call."""
    try:
        reply = json.loads(raw)
        choices = reply.get("choices") or []
        texts = [((c.get("message") or {}).get("content") or "").strip() for c in choices]
        usage = reply.get("usage") or {}
    except (ValueError, AttributeError, TypeError) as exc:
        raise _not_a_chat_completion(exc) from None
    tin = int(usage.get("prompt_tokens") or 0) or est_in
    tout = int(usage.get("completion_tokens") or 0) or sum(estimate_tokens(t) for t in texts)
    return _Reply(
        texts,
        tin,
        tout,
        stored=json.dumps(texts, ensure_ascii=False),
        problem=None if texts else "bad response: no choices in the reply",
    )


def _speech_reply(audio: bytes, text: str) -> _Reply:
    """The wav bytes, priced as ``len(text)`` characters of input."""
    if not audio or audio[:4] != b"RIFF":
        raise CallFailed("bad response: not a wav file")
    return _Reply(audio, len(text), 0, stored=base64.b64encode(audio).decode("ascii"))


def _json_object(raw: str) -> _Reply:
    """The reply's JSON object, with the token usage it reports (none: 0)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _Reply(None, problem=f"bad response: not a JSON object ({raw[:80]!r})")
    usage = data.get("usage") or {}
    return _Reply(data, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _not_a_chat_completion(exc: Exception) -> CallFailed:
    return CallFailed(f"bad response: not an OpenAI chat completion ({type(exc).__name__})")


__all__ = ["Completion", "Estimate", "Generation", "LLMClient", "Speech", "Usage", "message_text"]
