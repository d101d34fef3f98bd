"""The OpenAI-compatible client against a local fault-injecting server: retries, Retry-After,
timeouts, JSON repair, cache, budget, dry run, rate limits, and that the key never leaks."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from speechsum_cli.llm.client import LLMClient
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.llm.jsonout import InvalidJSON, extract_json, parse_json
from speechsum_cli.llm.prices import BudgetExceeded, price_for
from speechsum_cli.llm.ratelimit import RateLimiter
from speechsum_cli.llm.transport import LLMError
from tests.fake_openai import FakeOpenAI

SCHEMA = {
    "type": "object",
    "required": ["query", "summary", "importance"],
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "summary": {"type": "string", "minLength": 1},
        "importance": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
MESSAGES = [{"role": "user", "content": "Write a query and a summary of: hello world."}]
SECRET = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def make_client(server: FakeOpenAI, **overrides) -> LLMClient:
    fields = dict(
        base_url=server.base_url, model="fake-model", max_retries=2, timeout=5.0, prices={"fake-model": (1.0, 2.0)}
    )
    fields.update(overrides)
    return LLMClient(LLMConfig(**fields))


def call(client: LLMClient, messages=MESSAGES):
    async def go():
        try:
            return await client.complete_json(messages, SCHEMA, prompt_version=1)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_extract_json_finds_objects_in_prose_and_fences():
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure! ```json\n{"a": 2}\n``` hope it helps') == {"a": 2}
    assert extract_json('Here: {"a": {"b": 3}} and {"c": 4}') == {"a": {"b": 3}}
    with pytest.raises(InvalidJSON, match="no JSON object"):
        extract_json("no braces at all {")
    with pytest.raises(InvalidJSON, match="importance"):
        parse_json('{"query": "q", "summary": "s", "importance": 9}', SCHEMA)


def test_prices_known_dated_and_unknown():
    assert price_for("gpt-4.1") == (2.0, 8.0)
    assert price_for("gpt-4.1-2025-04-14") == (2.0, 8.0)
    assert price_for("gpt-4.1-mini") == (0.4, 1.6)
    assert price_for("my-local-model") is None
    assert price_for("my-local-model", {"my-local-model": (1.0, 1.0)}) == (1.0, 1.0)


def test_happy_call_counts_tokens_and_cost(server):
    server.usage = (1000, 500)
    client = make_client(server)
    result = call(client)
    assert result.ok and result.data["importance"] == 4
    usage = result.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 1000, 500)
    assert usage.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert client.ledger.requests == 1 and server.requests == 1


def test_unknown_model_costs_zero_with_a_warning(server, capsys):
    client = make_client(server, model="no-such-price", prices={})
    result = call(client)
    assert result.ok and result.usage.cost_usd == 0.0
    assert "no price known for model 'no-such-price'" in capsys.readouterr().err


def test_429_honours_retry_after_then_succeeds(server):
    server.fail_next("429")
    start = time.monotonic()
    result = call(make_client(server))
    assert result.ok
    assert server.requests == 2
    assert time.monotonic() - start >= 0.9  # Retry-After: 1


def test_persistent_500_fails_the_row_with_reason_after_bounded_retries(server):
    server.fail_next(*["500"] * 10)
    result = call(make_client(server, max_retries=2))
    assert not result.ok
    assert result.reason.startswith("HTTP 500") and "after 2 retries" in result.reason
    assert server.requests == 3  # 1 try + 2 retries, then give up


def test_timeout_fails_with_reason(server):
    server.timeout_sleep = 2.0
    server.fail_next("timeout", "timeout")
    result = call(make_client(server, timeout=0.5, max_retries=0, timeout_retries=1))
    assert not result.ok and result.reason.startswith("timeout")
    assert server.requests == 2


def test_malformed_json_is_repaired_by_a_retry(server):
    server.fail_next("garbage")
    result = call(make_client(server))
    assert result.ok and result.usage.requests == 2
    assert server.requests == 2


def test_always_malformed_json_fails_after_json_retries(server):
    server.responder = lambda messages: "I cannot do JSON, sorry."
    result = call(make_client(server, json_retries=2))
    assert not result.ok
    assert result.reason.startswith("invalid JSON") and "after 3 attempts" in result.reason
    assert server.requests == 3 and result.raw == "I cannot do JSON, sorry."


def test_cache_hit_sends_zero_requests_on_rerun(server, tmp_path):
    first = call(make_client(server, cache_dir=tmp_path / "cache"))
    assert server.requests == 1
    client = make_client(server, cache_dir=tmp_path / "cache")
    second = call(client)
    assert server.requests == 1, "the second run must be served from the cache"
    assert second.data == first.data and second.usage.cache_hits == 1
    assert second.usage.cost_usd == 0.0
    other = call(make_client(server, cache_dir=tmp_path / "cache", temperature=0.1))
    assert other.ok and server.requests == 2, "different params are a different cache key"


def test_cache_replays_repair_turns_too(server, tmp_path):
    server.fail_next("garbage")
    call(make_client(server, cache_dir=tmp_path / "c"))
    assert server.requests == 2
    again = call(make_client(server, cache_dir=tmp_path / "c"))
    assert again.ok and server.requests == 2 and again.usage.cache_hits == 2


def test_budget_stops_before_sending(server):
    server.usage = (1000, 1000)
    client = make_client(server, max_cost=0.0045, prices={"fake-model": (1.0, 1.0)}, expected_output_tokens=10)

    async def go():
        done = 0
        try:
            for _ in range(10):
                await client.complete_json(MESSAGES, SCHEMA, prompt_version=done)  # distinct keys
                done += 1
        except BudgetExceeded as exc:
            return done, str(exc)
        finally:
            await client.aclose()
        return done, None

    done, message = asyncio.run(go())
    assert message is not None and "budget of $0.0045 reached" in message
    assert done == 2 and server.requests == 2  # $0.002 each; a third could pass $0.0045
    assert client.ledger.cost_usd <= 0.0045


def test_dry_run_estimates_without_http(server):
    client = make_client(server, dry_run=True)
    estimate = client.estimate(MESSAGES, prompt_version=1)
    assert not estimate.cached and estimate.input_tokens > 0 and estimate.cost_usd > 0
    assert server.requests == 0


def test_missing_key_for_openai_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(LLMError, match="NO_SUCH_KEY_VAR is not set"):
        LLMClient(LLMConfig(api_key_env="NO_SUCH_KEY_VAR"))


def test_key_is_sent_but_never_leaks_into_reasons_or_errors(server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", SECRET)
    server.fail_next(*["echo-auth"] * 3)
    result = call(make_client(server, api_key_env="FAKE_KEY", max_retries=2))
    assert server.auth_headers[0] == f"Bearer {SECRET}"  # the server did get it
    assert not result.ok and "HTTP 502" in result.reason
    assert SECRET not in result.reason and "***" in result.reason
    server.fail_next("401")
    with pytest.raises(LLMError) as info:
        call(make_client(server, api_key_env="FAKE_KEY"))
    assert "HTTP 401" in str(info.value) and SECRET not in str(info.value)
    assert "FAKE_KEY" in str(info.value)


def test_refusals_and_missing_keys_name_the_flags_of_the_endpoints_role(server, monkeypatch):
    """A judge's refusal names --judge-model/--judge-base-url, synth's --llm/--base-url: flags
    that exist on the command that called."""
    monkeypatch.setenv("FAKE_KEY", SECRET)
    server.fail_next("401")
    with pytest.raises(LLMError) as judge:
        call(make_client(server, api_key_env="FAKE_KEY", role="judge"))
    assert "--judge-model" in str(judge.value) and "--judge-base-url" in str(judge.value)
    server.fail_next("401")
    with pytest.raises(LLMError) as writer:
        call(make_client(server, api_key_env="FAKE_KEY"))
    assert "--llm" in str(writer.value) and "--base-url" in str(writer.value)
    assert "--model" not in str(writer.value)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(LLMError, match="--judge-api-key-env NAME"):
        LLMClient(LLMConfig(api_key_env="NO_SUCH_KEY_VAR", role="judge"))


def test_rate_limiter_spaces_requests():
    async def go():
        limiter = RateLimiter(rpm=2, window=0.5)
        start = time.monotonic()
        for _ in range(3):
            await limiter.acquire(1)
        return time.monotonic() - start

    assert asyncio.run(go()) >= 0.45


def test_concurrent_calls_overlap(server):
    server.latency = 0.2
    client = make_client(server)

    async def go():
        try:
            return await asyncio.gather(
                *[
                    client.complete_json([{"role": "user", "content": f"row {i}"}], SCHEMA, prompt_version=1)
                    for i in range(8)
                ]
            )
        finally:
            await client.aclose()

    start = time.monotonic()
    results = asyncio.run(go())
    assert all(r.ok for r in results) and len({json.dumps(r.data) for r in results}) == 8
    assert time.monotonic() - start < 8 * 0.2 * 0.6


CALL_KINDS = ("complete_json", "generate", "speech")
"""The cached call kinds, each one call by :func:`call_each`."""


def call_each(client: LLMClient, text: str, kinds=CALL_KINDS) -> list:
    """One call of each kind in ``kinds`` on ``text``, the client closed after."""
    messages = [{"role": "user", "content": text}]
    calls = {
        "complete_json": lambda: client.complete_json(messages, SCHEMA, prompt_version=1),
        "generate": lambda: client.generate(messages, {"temperature": 0.0, "max_tokens": 16}),
        "speech": lambda: client.speech(text),
    }

    async def go():
        try:
            return [await calls[kind]() for kind in kinds]
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_every_call_kind_replays_from_the_cache_and_sends_nothing_in_a_dry_run(server, tmp_path):
    """The one call path: a structured call, a generation and speech are each stored once paid
    for, replayed by a dry run (a cache hit, $0, no request), and never sent by a dry run on a
    miss; post_json is not cached, so a dry run never sends it either."""
    live = call_each(make_client(server, cache_dir=tmp_path / "c"), "hello world")
    assert server.requests == 3 and all(r.usage.requests == 1 for r in live)
    assert all(r.usage.cache_hits == 0 and r.usage.cost_usd > 0 for r in live)
    client = make_client(server, cache_dir=tmp_path / "c", dry_run=True)
    replay = call_each(client, "hello world")
    assert server.requests == 3 and client.ledger.cache_hits == 3
    assert (replay[0].data, replay[1].texts, replay[2].audio) == (live[0].data, live[1].texts, live[2].audio)
    assert all(
        r.usage.as_record() == {"requests": 0, "cache_hits": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        for r in replay
    )
    for kind in CALL_KINDS:
        with pytest.raises(RuntimeError, match="dry run"):
            call_each(make_client(server, cache_dir=tmp_path / "c", dry_run=True), "other", [kind])
    dry = make_client(server, dry_run=True)
    with pytest.raises(RuntimeError, match="dry run"):
        asyncio.run(dry.post_json("/completions", {"prompt": [1, 2]}))
    assert server.requests == 3


@pytest.mark.parametrize("kind", CALL_KINDS)
def test_every_call_kind_stops_at_the_budget_before_sending(server, kind):
    client = make_client(server, max_cost=1e-9)
    with pytest.raises(BudgetExceeded):
        call_each(client, "hello world", [kind])
    assert server.requests == 0 and client.ledger.reserved_usd == 0.0
