"""A speech LM on an inference server (``--server-base-url``): :class:`ServedSpeechLM`.

It stands where a loaded :class:`~speechsum_cli.families.model.SpeechLM` stands — ``generate``,
``generate_batch``, ``sample``, ``encode``, ``window_seconds``, ``sampling_rate``,
``context_length`` — so summarize's windowing and map-reduce, the style presets, eval's WER prompt
and pairs' k candidates run unchanged; only the generation goes over HTTP:

* one request per prompt to ``/v1/chat/completions`` of an OpenAI-compatible server that takes
  audio in chat messages (vLLM serving Qwen2-Audio, Voxtral, Phi-4-multimodal, Gemma...): each
  window of the prompt as an ``input_audio`` content part (a wav of 32-bit float samples at the
  model's sampling rate, base64: the server hears exactly the samples the local path would), then
  the query as a text part; a text-only prompt (summarize's combine step) as plain text;
* greedy (``temperature`` 0) or sampled with ``temperature``, ``top_p`` and a ``seed`` per
  request; pairs' k candidates of a prompt are one request with ``n`` = k (a server that returns
  fewer choices is asked again for the rest, with the next seeds);
* every request goes through the one LLM client (:class:`~speechsum_cli.llm.client.LLMClient`: adaptive
  concurrency, retries on 429/5xx/time-outs, the response cache — a re-run sends only the
  requests that were not answered — and the ledger of requests and tokens).

The checkpoint named by ``--model`` (local dir or hub id) is still read, without its weights: its
processor and config give the audio window, the sampling rate, the context length and the token
counts the combine step packs by, so the windows and combine prompts are the ones the local path
makes.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from speechsum_cli.errors import ModelError, NothingUsableError
from speechsum_cli.families.base import AudioFamily, Batch, Prompt, pad_short_clips, windows_of
from speechsum_cli.families.model import CheckpointFacts, GenerationSettings
from speechsum_cli.llm.client import Generation, LLMClient
from speechsum_cli.llm.config import LLMConfig, endpoint_flag
from speechsum_cli.llm.failures import Failures
from speechsum_cli.llm.pool import run_pool
from speechsum_cli.llm.transport import EndpointUnreachable, LLMError
from speechsum_cli.redact import public_url

CONFIG_FILES = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
"""What a hub checkpoint gives the served path: processor, tokenizer, config — never the weights."""
SERVE_HINT = "vllm serve Qwen/Qwen2-Audio-7B-Instruct (README, 'Generation on a server')"


class ServerGenerationError(ModelError):
    """The server refuses to generate from audio (a model without audio input, a bad request)."""


@dataclass
class Sent:
    """What a batch of prompts sent: seconds of audio per prompt (``Batch.audio_seconds``' role)
    and of silence added to clips too short for the encoder (``Batch.padded_seconds``')."""

    audio_seconds: list[float]
    padded_seconds: list[float]


def float_wav(samples: Any, sampling_rate: int) -> bytes:
    """Mono samples as a 32-bit float WAV file (WAVE_FORMAT_IEEE_FLOAT, with its ``fact`` chunk).

    Written here rather than by soundfile, whose float wavs carry a PEAK chunk with the time of
    writing: the same window would then be a new request to the response cache on every run.
    """
    import struct

    import numpy as np

    data = np.asarray(samples, dtype="<f4").tobytes()
    frames = len(data) // 4
    fmt = struct.pack("<HHIIHHH", 3, 1, sampling_rate, sampling_rate * 4, 4, 32, 0)  # IEEE float, mono, cbSize 0
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<II", 4, frames)
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav_base64(samples: Any, sampling_rate: int) -> str:
    """Mono float samples as a base64 wav (float32 PCM) for an ``input_audio`` content part."""
    return base64.b64encode(float_wav(samples, sampling_rate)).decode("ascii")


def chat_messages(prompt: Prompt, sampling_rate: int) -> list[dict[str, Any]]:
    """The OpenAI chat messages of ``prompt``: its windows as ``input_audio`` parts, then its query."""
    messages: list[dict[str, Any]] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    windows = windows_of(prompt)
    if not windows:
        messages.append({"role": "user", "content": prompt.query})
        return messages
    content: list[dict[str, Any]] = [
        {"type": "input_audio", "input_audio": {"data": wav_base64(w, sampling_rate), "format": "wav"}} for w in windows
    ]
    content.append({"type": "text", "text": prompt.query})
    messages.append({"role": "user", "content": content})
    return messages


def sampling_params(settings: GenerationSettings, seed: int | None = None) -> dict[str, Any]:
    """The request's sampling fields for ``settings`` (temperature 0: greedy, as the local path)."""
    params: dict[str, Any] = {"max_tokens": settings.max_new_tokens, "temperature": settings.temperature}
    if settings.temperature > 0:
        params["top_p"] = settings.top_p
        if seed is not None:
            params["seed"] = seed
    return params


def for_model(server: LLMConfig, model: str) -> LLMConfig:
    """The server's client config for checkpoint ``model``: the model name ``--server-model`` gave,
    else ``model`` itself (as ``vllm serve MODEL`` names it); priced at $0 (a self-hosted server:
    requests and tokens are still counted)."""
    name = server.model or model
    return replace(server, model=name, prices={name: (0.0, 0.0)})


@dataclass
class ServedSpeechLM(CheckpointFacts):
    """A checkpoint's processor and config here, its generation on a server (see the module doc)."""

    family: AudioFamily
    model_config: Any
    processor: Any
    source: str
    llm: LLMConfig
    compressor: Any = None
    text_only = False
    sent_audio_seconds: float = 0.0
    """Seconds of audio sent in requests (cache hits not included)."""
    _client: LLMClient = field(init=False, repr=False)
    _loop: asyncio.AbstractEventLoop = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()  # one loop for the run: connections and the limit carry over
        self._client = LLMClient(self.llm)

    # -- what a SpeechLM offers ------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self.model_config

    def encode(self, prompts: list[Prompt], *, padding_side: str = "left") -> Batch:
        """The local encoding of ``prompts`` (token counts for packing combine prompts)."""
        return self.family.encode(self.processor, self.model_config, prompts, padding_side=padding_side)

    def generation_batch(self, batch_size: int) -> int:
        """Prompts handed over at once: enough to keep ``--server-concurrency`` requests in flight."""
        return max(batch_size, self.llm.concurrency)

    def generate(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        return self.generate_batch(prompts, settings)[0]

    def generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> tuple[list[str], Sent]:
        """One request per prompt (greedy or sampled per ``settings``), sent concurrently."""
        replies = self._send([(p, sampling_params(settings), 1) for p in prompts])
        padded = [self._seconds(self._fit(p)) - self._seconds(p) for p in prompts]
        return [reply[0] for reply in replies], Sent([self._seconds(p) for p in prompts], padded)

    def sample(self, prompts: list[Prompt], settings: GenerationSettings, k: int, seeds: list[int]) -> list[list[str]]:
        """``k`` sampled completions per prompt: one request with ``n`` = k and the prompt's seed; a
        server that returns fewer choices is asked for the rest (seed + 1, + 2...)."""
        replies = self._send([(p, sampling_params(settings, s), k) for p, s in zip(prompts, seeds)])
        for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
            extra = 0
            while len(replies[i]) < k:
                extra += 1
                more = self._send([(prompt, sampling_params(settings, seed + extra), k - len(replies[i]))])[0]
                replies[i] = replies[i] + more
        return [reply[:k] for reply in replies]

    def check_server(self) -> None:
        """Before any work: something answers at the URL, and it serves the model (when it lists them)."""
        try:
            reply = self._loop.run_until_complete(self._client.get_json("/models"))
        except LLMError:
            return  # a server without /models (or a key only its other routes take): the first request says
        if reply.reason is not None and reply.reason.startswith("connection error"):
            raise EndpointUnreachable(
                f"nothing answers at {self.where}: {reply.reason}. Start the server (e.g. vllm serve "
                f"{self.llm.model}) or fix {self.flag('base_url')}, then run the same command again."
            )
        served = [m.get("id") for m in (reply.data or {}).get("data") or [] if isinstance(m, dict)]
        if served and self.llm.model not in served:
            raise ServerGenerationError(
                f"{self.flag('model')} '{self.llm.model}' is not served at {self.where}; it serves: "
                f"{', '.join(map(str, served))}. Pass {self.flag('model')} with one of them ('vllm serve MODEL' "
                "names it MODEL unless --served-model-name says otherwise)."
            )

    def record(self) -> dict[str, Any]:
        """For ``speechsum.json``: where generation ran, with which model, how many requests."""
        ledger = self._client.ledger
        return {
            "on": "server",
            "base_url": public_url(self.llm.base_url),
            "model": self.llm.model,
            "checkpoint": self.source,
            "requests": ledger.requests,
            "cache_hits": ledger.cache_hits,
            "input_tokens": ledger.input_tokens,
            "output_tokens": ledger.output_tokens,
            "audio_seconds_sent": round(self.sent_audio_seconds, 3),
            "audio_format": f"wav float32 {self.sampling_rate} Hz (input_audio)",
            "concurrency": self._client.in_flight.record(),
        }

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()

    # -- internals -------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.flag('base_url')} {public_url(self.llm.base_url)}"

    def flag(self, name: str) -> str:
        return endpoint_flag(self.llm.role, name)

    def _seconds(self, prompt: Prompt) -> float:
        return sum(len(w) for w in windows_of(prompt)) / self.sampling_rate

    def _fit(self, prompt: Prompt) -> Prompt:
        """``prompt`` with each clip shorter than the encoder reads followed by silence up to it
        (:meth:`AudioFamily.min_clip_samples`), as the local path reads it."""
        if prompt.audio is None:
            return prompt
        shortest = self.family.min_clip_samples(self.processor, self.model_config)
        clips = pad_short_clips(windows_of(prompt), shortest)
        return replace(prompt, audio=clips if isinstance(prompt.audio, (list, tuple)) else clips[0])

    def _send(self, jobs: list[tuple[Prompt, dict[str, Any], int]]) -> list[list[str]]:
        """Every job's texts, in order; raises when any request failed for good (a summary needs
        every window, a candidate set every sample)."""
        results: dict[int, Generation] = {}

        async def one(job: tuple[int, tuple[Prompt, dict[str, Any], int]]) -> None:
            i, (prompt, params, n) = job
            prompt = self._fit(prompt)
            results[i] = await self._client.generate(chat_messages(prompt, self.sampling_rate), params, n=n)
            if results[i].usage.requests:
                self.sent_audio_seconds += self._seconds(prompt)

        self._loop.run_until_complete(run_pool(enumerate(jobs), one, concurrency=self.llm.concurrency))
        failed = [results[i] for i in sorted(results) if not results[i].ok]
        if failed:
            self._fail(failed, len(results), audio=any(windows_of(p) for p, _, _ in jobs))
        return [results[i].texts or [] for i in range(len(jobs))]

    def _fail(self, failed: list[Generation], attempted: int, *, audio: bool) -> None:
        tally = Failures.tally(attempted, [g.reason or "unknown failure" for g in failed])
        if all(g.refused for g in failed):
            what = "audio in chat messages (input_audio content parts)" if audio else "these requests"
            raise ServerGenerationError(
                f"{self.where} refused the requests: {tally.describe('generation request')}. Check that "
                f"{self.flag('model')} '{self.llm.model}' is an audio model the server serves with "
                f"{what} — e.g. {SERVE_HINT} — and that --max-new-tokens fits its context."
            )
        cache = self.llm.cache_dir
        again = (
            "the answers already received come from the response cache "
            f"({self.flag('cache_dir')} {cache}), so only the failed requests are sent"
            if cache is not None
            else "every request is sent again (no response cache)"
        )
        raise NothingUsableError(
            f"{tally.describe('generation request')} at {self.where}: every window and every sample is "
            f"needed, so nothing was written. Fix the cause (is the server answering?) and run the same "
            f"command again: {again}."
        )


def resolve_config_source(source: str) -> str:
    """A local dir as given; ``repo@revision`` fetched without weights; a hub id as given."""
    if Path(source).exists() or "@" not in source:
        return source
    repo, revision = source.rsplit("@", 1)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, revision=revision, allow_patterns=CONFIG_FILES)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo or revision, auth: all "cannot get it"
        from speechsum_cli.families.model import unreachable

        raise unreachable(source, exc) from None


def load_served(source: str, server: LLMConfig) -> ServedSpeechLM:
    """``source``'s processor and config (no weights) with generation on ``server``; the server is
    asked first whether it answers and serves the model."""
    from transformers import AutoConfig

    from speechsum_cli.families.model import adapter_chain, read_model_type
    from speechsum_cli.families.registry import get_family

    given = source
    source = resolve_config_source(source)
    base, _ = adapter_chain(source)
    family = get_family(read_model_type(base))
    try:
        model_config = AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the config of '{base}': {exc}") from None
    name = given if Path(given).exists() or "@" not in given else given.rsplit("@", 1)[0]
    lm = ServedSpeechLM(family, model_config, family.load_processor(source), given, for_model(server, name))
    try:
        lm.check_server()
    except BaseException:
        lm.close()
        raise
    return lm


__all__ = [
    "ServedSpeechLM",
    "ServerGenerationError",
    "chat_messages",
    "for_model",
    "load_served",
    "sampling_params",
    "wav_base64",
]
