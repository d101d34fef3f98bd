"""The distill teacher: one interface, a local and a remote implementation.

A teacher reads the conversation of :mod:`speechsum_cli.teacher` (transcript + query in its own
chat template) followed by the student's completion **token ids**, and :meth:`~DistillTeacher.score`
returns :class:`~speechsum_cli.stages.distill.scores.TeacherScores` at the completion positions:

* :class:`LocalTeacher`: the model in this process, under ``torch.inference_mode()`` on its own
  device and dtype; for ``--estimator full`` its last hidden states and LM head (the divergence
  makes the logits a chunk of positions at a time);
* :class:`RemoteTeacher`: a vLLM-compatible server (``--teacher-base-url``), asked through the one
  LLM client with the requests of :mod:`~speechsum_cli.stages.distill.remote`; for
  ``--estimator full`` its top-k log-probs per position.

Both read the same ids: a completion id outside the shared vocabulary (a student-only token)
becomes the teacher's end-of-turn, a pad its pad (:meth:`~DistillTeacher.completion_ids`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from speechsum_cli.console import info
from speechsum_cli.llm.client import LLMClient
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.llm.pool import run_pool
from speechsum_cli.stages.distill.config import (
    DEFAULT_CHUNK,
    DistillConfig,
    Estimator,
    Loss,
    TeacherLogprobs,
)
from speechsum_cli.stages.distill.losses import head_logprobs
from speechsum_cli.stages.distill.remote import (
    FIX,
    ReplyShape,
    SequenceScores,
    TeacherServerError,
    approximation,
    parse_reply,
    request_body,
    scores_tensors,
)
from speechsum_cli.stages.distill.scores import TeacherScores
from speechsum_cli.teacher import Teacher, load_teacher
from speechsum_cli.training.head import HeadStates


def torch_where_scorable(tokens: Any, scorable: Any) -> Any:
    """``tokens`` with student-only ids replaced by 0 (masked anyway), safe to index any logits."""
    import torch

    return torch.where(scorable, tokens, torch.zeros_like(tokens))


class DistillTeacher:
    """What distill asks of a teacher, wherever it runs."""

    def __init__(self, conversation: Teacher, n_shared: int) -> None:
        self.conversation = conversation
        """The text teacher's conversation (its tokenizer; its model where it runs here)."""
        self.n_shared = n_shared
        """Ids ``[0, n_shared)`` mean the same token in teacher and student."""

    def prompt_ids(self, transcript: str, query: str) -> list[int]:
        """The teacher's prompt for one row; the student's completion ids follow it."""
        return self.conversation.prompt_ids(transcript, query)

    def completion_ids(self, tokens: Any, real: Any) -> Any:
        """The completion ids the teacher reads: student-only ids -> its end-of-turn, pads -> its
        pad."""
        import torch

        t = self.conversation
        comp = torch.where(tokens < self.n_shared, tokens, torch.full_like(tokens, t.end_id))
        return torch.where(real, comp, torch.full_like(comp, t.pad_id))

    def score(self, prompts: list[list[int]], tokens: Any, real: Any, *, full: bool) -> TeacherScores:
        """The teacher's log-prob of each of the ``[B, C]`` completion ``tokens`` (``real``: not
        padding) after its prompt ids, and for ``full`` what the divergence over the vocabulary
        needs."""
        raise NotImplementedError

    def record(self, estimator: Estimator, loss: Loss) -> dict[str, Any]:
        """Where it ran (and what that made of the loss), for ``speechsum.json``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what it holds (nothing, by default)."""


class LocalTeacher(DistillTeacher):
    """The teacher model in this process, frozen, on its own device and dtype."""

    def __init__(self, conversation: Teacher, n_shared: int, chunk_size: int = DEFAULT_CHUNK) -> None:
        super().__init__(conversation, n_shared)
        self.chunk_size = chunk_size
        self.states = HeadStates("teacher")

    @classmethod
    def load(cls, cfg: DistillConfig, tokenizer: Any, n_shared: int) -> LocalTeacher:
        """``--teacher`` on ``--teacher-device`` (auto: this process's accelerator device)."""
        device = teacher_device(cfg.teacher_device)
        conversation = load_teacher(
            cfg.teacher, tokenizer, device=device, dtype=cfg.teacher_dtype, system=cfg.teacher_system
        )
        return cls(conversation, n_shared, cfg.chunk_size)

    @property
    def model(self) -> Any:
        return self.conversation.model

    @property
    def device(self) -> Any:
        return self.conversation.device

    def inputs(self, prompts: list[list[int]], tokens: Any, real: Any) -> dict[str, Any]:
        """Left-padded teacher prompts + the completion ids (:meth:`completion_ids`)."""
        import torch

        t = self.conversation
        comp = self.completion_ids(tokens, real)
        width = max(len(p) for p in prompts)
        prompt = torch.full((len(prompts), width), t.pad_id, dtype=torch.long)
        prompt_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            prompt[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            prompt_mask[i, width - len(p) :] = 1
        return {"input_ids": torch.cat([prompt, comp], 1), "attention_mask": torch.cat([prompt_mask, real.long()], 1)}

    def score(self, prompts: list[list[int]], tokens: Any, real: Any, *, full: bool) -> TeacherScores:
        """Under inference mode: the log-probs, and for ``full`` the last hidden states and head
        (the logits made a chunk of positions at a time)."""
        import torch

        inputs = {k: v.to(self.device) for k, v in self.inputs(prompts, tokens, real).items()}
        safe = torch_where_scorable(tokens, tokens < self.n_shared).to(self.device)
        with torch.inference_mode():
            hidden, head = self.states(self.model, inputs, tokens.shape[1], self.n_shared)
            flat = hidden.reshape(-1, hidden.shape[-1])
            logp = head_logprobs(flat, head, safe.reshape(-1), self.chunk_size)
            logp = logp.reshape(tokens.shape)
        # clone outside inference mode: normal tensors that autograd may save for backward
        return TeacherScores(logp.clone(), hidden.clone() if full else None, head if full else None)

    def record(self, estimator: Estimator, loss: Loss) -> dict[str, Any]:
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        return {"device": str(self.device), "dtype": dtype}


def teacher_device(setting: str) -> str:
    """``--teacher-device``: auto = this process's accelerator device (each DDP rank its own)."""
    from accelerate import PartialState

    from speechsum_cli.families import resolve_device

    return str(PartialState().device) if setting == "auto" else resolve_device(setting)


class RemoteTeacher(DistillTeacher):
    """Scores completions on the teacher's server; one event loop for the whole run, so the
    client's connections and its adaptive limit carry over from step to step."""

    def __init__(
        self, conversation: Teacher, n_shared: int, config: LLMConfig, *, protocol: TeacherLogprobs, top_k: int
    ) -> None:
        super().__init__(conversation, n_shared)
        self.config, self.protocol, self.top_k = config, protocol, top_k
        self.vocab = conversation.tokenizer.get_vocab()
        self._loop = asyncio.new_event_loop()
        self.client = LLMClient(config)

    @classmethod
    def open(cls, cfg: DistillConfig, conversation: Teacher, n_shared: int, row: dict[str, Any]) -> RemoteTeacher:
        """The teacher's server, asked once (one row's prompt + the end of turn) before any
        model loads."""
        assert cfg.teacher_llm is not None
        remote = cls(conversation, n_shared, cfg.teacher_llm, protocol=cfg.teacher_logprobs, top_k=cfg.teacher_top_k)
        prompt = conversation.prompt_ids(row["transcript"], row["query"])
        try:
            remote.probe(prompt + [conversation.end_id], len(prompt))
        except BaseException:
            remote.close()
            raise
        info(
            f"teacher '{cfg.teacher}' on {cfg.teacher_llm.base_url} (model "
            f"'{cfg.teacher_llm.model}', log-probs by {remote.protocol.value})"
        )
        return remote

    @property
    def where(self) -> str:
        return f"--teacher-base-url {self.config.base_url}"

    def probe(self, ids: list[int], start: int) -> None:
        """Ask once, before training, and settle ``auto`` on what the server answers; a clear
        error naming the flag and the fix when it answers neither form."""
        tried = []
        for protocol in self.protocols():
            done = self._run(self._one(ids, start, protocol))
            if isinstance(done, SequenceScores):
                self.protocol = protocol
                return
            if done.startswith("connection error"):  # no server: asking another way cannot help
                raise TeacherServerError(
                    f"nothing answers at {self.where}: {done}. Start the teacher's server (vllm "
                    f"serve {self.config.model}) or fix --teacher-base-url, then run the same "
                    "command again."
                )
            tried.append(f"{protocol.value}: {done}")
        raise TeacherServerError(
            f"{self.where} cannot score the student's tokens: asked /completions for the log-probs "
            f"of a token-id prompt, and {'; '.join(tried)}. {FIX}. (Or check --teacher-model "
            f"'{self.config.model}', and --teacher-top-k {self.top_k} against the server's "
            "--max-logprobs.)"
        )

    def protocols(self) -> tuple[TeacherLogprobs, ...]:
        """The forms to ask for: ``auto`` tries vLLM's prompt_logprobs, then echo."""
        if self.protocol is TeacherLogprobs.auto:
            return (TeacherLogprobs.prompt_logprobs, TeacherLogprobs.echo)
        return (self.protocol,)

    def score(self, prompts: list[list[int]], tokens: Any, real: Any, *, full: bool) -> TeacherScores:
        """One request per completion (the client's concurrency); the server's log-probs and,
        for ``full``, its top-k at each completion position."""
        completions = self.completion_ids(tokens, real)
        sequences = [(list(p) + completions[b][real[b]].tolist(), len(p)) for b, p in enumerate(prompts)]
        results: dict[int, SequenceScores | str] = {}

        async def one(job: tuple[int, tuple[list[int], int]]) -> None:
            b, (ids, start) = job
            results[b] = await self._one(ids, start, self.protocol)

        self._run(run_pool(enumerate(sequences), one, concurrency=self.config.concurrency))
        failed = [(b, r) for b, r in sorted(results.items()) if not isinstance(r, SequenceScores)]
        if failed:
            raise TeacherServerError(
                f"{self.where}: {len(failed)} of {len(sequences)} teacher requests failed, e.g. "
                f"{failed[0][1]}. The run stops here; start the server again (or lower "
                "--teacher-concurrency) and re-run the same command: it resumes from its last "
                "checkpoint."
            )
        rows = [results[b] for b in range(len(sequences))]
        logp, ids, top = scores_tensors(
            rows,
            real,
            self.n_shared,  # type: ignore[arg-type]
            full=full,
        )
        return TeacherScores(logp, top_ids=ids, top_logp=top)

    async def _one(self, ids: list[int], start: int, protocol: TeacherLogprobs) -> SequenceScores | str:
        """One sequence's scores, or why not (a failed request, a reply without the log-probs)."""
        body = request_body(self.config.model, ids, protocol=protocol, top_k=self.top_k)
        reply = await self.client.post_json("/completions", body)
        if reply.data is None:
            return reply.reason or "no reply"
        try:
            return parse_reply(reply.data, protocol=protocol, ids=ids, start=start, vocab=self.vocab)
        except ReplyShape as exc:
            return str(exc)

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(coroutine)

    def record(self, estimator: Estimator, loss: Loss) -> dict[str, Any]:
        llm = self.config
        return {
            "base_url": llm.base_url,
            "model": llm.model,
            "logprobs": self.protocol,
            "top_k": self.top_k if estimator is Estimator.full else None,
            "approximation": approximation(estimator, loss, self.top_k),
            **self.usage(),
        }

    def usage(self) -> dict[str, Any]:
        ledger = self.client.ledger
        return {
            "requests": ledger.requests,
            "input_tokens": ledger.input_tokens,
            "concurrency": self.client.in_flight.record(),
        }

    def close(self) -> None:
        self._run(self.client.aclose())
        self._loop.close()
