"""The wire protocol of a distill teacher behind a vLLM-compatible server (``--teacher-base-url``).

The teacher reads the same token ids a local teacher would — its prompt (transcript + query in the
chat template of ``--teacher``, which still names the tokenizer) then the student's completion ids —
sent as a token-id ``prompt`` to ``/v1/completions``, one request per completion, through the one
LLM client (adaptive concurrency, retries). Its log-probs of exactly those tokens come back as:

* ``prompt_logprobs`` (vLLM's OpenAI-compatible server: ``"prompt_logprobs": K`` in the request;
  each choice carries, per prompt position, ``{token_id: {"logprob", "rank", "decoded_token"}}``
  for the token at that position and the top K; the first position is null);
* or ``echo`` + ``logprobs`` (the legacy completions form: ``"echo": true, "logprobs": K,
  "max_tokens": 0``; ``choices[0].logprobs`` lists ``token_logprobs`` and ``top_logprobs`` for the
  prompt's tokens; ``return_tokens_as_token_ids`` asks for ``token_id:N`` keys).

``--teacher-logprobs auto`` asks the server once before training which of the two it answers.

The sampled estimator needs only the log-prob of each sampled token: exact this way. The
full-vocabulary divergences get the teacher's top-k log-probs (``--teacher-top-k``): the loss is
then taken between the two distributions coarsened to those k tokens + one bucket for the rest of
the mass (:func:`~speechsum_cli.stages.distill.losses.head_topk_divergence`), recorded as such in
``speechsum.json``. The server's log-probs are normalised over its model's whole output layer
(a local teacher renormalises over the shared vocabulary: the same when the output layer is the
tokenizer's size, as for the test's teacher).

Here: the request, the two reply forms and the tensors they make, pure (no client, no loop);
:class:`~speechsum_cli.stages.distill.teacher.RemoteTeacher` sends the requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speechsum_cli.errors import ModelError
from speechsum_cli.stages.distill.config import Estimator, Loss, TeacherLogprobs
from speechsum_cli.stages.distill.losses import LOG_ZERO

TOKEN_ID_PREFIX = "token_id:"
FIX = (
    "Serve the teacher with vLLM (vllm serve TEACHER), whose OpenAI-compatible server returns "
    "prompt_logprobs for a token-id prompt, or pass --teacher-logprobs echo for a server that "
    "echoes the prompt with logprobs"
)


class TeacherServerError(ModelError):
    """The teacher's server cannot score the student's tokens (or stopped answering)."""


class ReplyShape(Exception):
    """A reply without the log-probs asked for (the message says what is missing)."""


@dataclass(frozen=True)
class SequenceScores:
    """The teacher on one completion: per completion position, the log-prob of its token, and the
    top-k token ids -> log-probs the server returned there (empty unless asked)."""

    logp: list[float]
    top: list[dict[int, float]]


def request_body(model: str, ids: list[int], *, protocol: TeacherLogprobs, top_k: int) -> dict[str, Any]:
    """The ``/v1/completions`` request that returns log-probs of the prompt ``ids`` themselves."""
    if protocol is TeacherLogprobs.prompt_logprobs:
        return {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": max(1, top_k)}
    return {
        "model": model,
        "prompt": ids,
        "max_tokens": 0,
        "temperature": 0.0,
        "echo": True,
        "logprobs": max(1, top_k),
        "return_tokens_as_token_ids": True,
    }


def _logprob(value: Any) -> float:
    """vLLM's ``{"logprob": x, ...}`` or a bare number."""
    return float(value["logprob"] if isinstance(value, dict) else value)


def _token_id(key: str, vocab: dict[str, int]) -> int | None:
    """``token_id:N`` (vLLM's return_tokens_as_token_ids), else a token string of the vocabulary."""
    if key.startswith(TOKEN_ID_PREFIX) and key[len(TOKEN_ID_PREFIX) :].isdigit():
        return int(key[len(TOKEN_ID_PREFIX) :])
    return vocab.get(key)


def parse_prompt_logprobs(choice: dict[str, Any], ids: list[int], start: int) -> SequenceScores:
    """Positions ``start..`` of vLLM's ``prompt_logprobs`` (entry i: the distribution of ``ids[i]``)."""
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list):
        raise ReplyShape("its reply has no prompt_logprobs")
    if len(entries) < len(ids):
        raise ReplyShape(f"its prompt_logprobs cover {len(entries)} of the {len(ids)} prompt tokens")
    logp, top = [], []
    for i in range(start, len(ids)):
        entry = {int(k): _logprob(v) for k, v in (entries[i] or {}).items()}
        if ids[i] not in entry:
            raise ReplyShape(
                f"its prompt_logprobs at position {i} do not include the prompt's token {ids[i]} "
                "(was the prompt re-tokenized instead of read as token ids?)"
            )
        logp.append(entry[ids[i]])
        top.append(entry)
    return SequenceScores(logp, top)


def parse_echo(choice: dict[str, Any], ids: list[int], start: int, vocab: dict[str, int]) -> SequenceScores:
    """Positions ``start..`` of an echoed prompt's ``logprobs`` (``token_logprobs``, ``top_logprobs``)."""
    block = choice.get("logprobs") or {}
    values, tops, tokens = block.get("token_logprobs"), block.get("top_logprobs"), block.get("tokens")
    if not isinstance(values, list) or len(values) < len(ids):
        raise ReplyShape("its reply does not echo the prompt's tokens with logprobs")
    if isinstance(tokens, list) and tokens and str(tokens[0]).startswith(TOKEN_ID_PREFIX):
        echoed = [_token_id(str(t), vocab) for t in tokens[: len(ids)]]
        if echoed != ids:
            raise ReplyShape("the tokens it echoes are not the prompt's token ids")
    logp, top = [], []
    for i in range(start, len(ids)):
        if values[i] is None:
            raise ReplyShape(f"it echoes no logprob for prompt position {i}")
        entry: dict[int, float] = {}
        for key, value in ((tops or [None] * len(ids))[i] or {}).items():
            token = _token_id(str(key), vocab)
            if token is None:
                raise ReplyShape(
                    f"its top_logprobs name a token {key!r} that is not a token of the "
                    "teacher's tokenizer (ask for token ids: return_tokens_as_token_ids)"
                )
            entry[token] = _logprob(value)
        entry[ids[i]] = _logprob(values[i])
        logp.append(entry[ids[i]])
        top.append(entry)
    return SequenceScores(logp, top)


def parse_reply(
    data: dict[str, Any], *, protocol: TeacherLogprobs, ids: list[int], start: int, vocab: dict[str, int]
) -> SequenceScores:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ReplyShape("its reply has no choices")
    if protocol is TeacherLogprobs.prompt_logprobs:
        return parse_prompt_logprobs(choices[0], ids, start)
    return parse_echo(choices[0], ids, start, vocab)


def scores_tensors(
    rows: list[SequenceScores], real: Any, n_shared: int, *, full: bool
) -> tuple[Any, Any | None, Any | None]:
    """``[B, C]`` log-probs (0 off the completions) and, for ``full``, ``[B, C, K]`` top-k ids
    (-1 = empty slot; ids past the shared vocabulary count in the tail) and their log-probs."""
    import torch

    batch, width = real.shape
    logp = torch.zeros((batch, width), dtype=torch.float32)
    for b, row in enumerate(rows):
        logp[b, : len(row.logp)] = torch.tensor(row.logp, dtype=torch.float32)
    if not full:
        return logp, None, None
    k = max([len(entry) for row in rows for entry in row.top] or [1])
    ids = torch.full((batch, width, k), -1, dtype=torch.long)
    top = torch.full((batch, width, k), LOG_ZERO, dtype=torch.float32)
    for b, row in enumerate(rows):
        for c, entry in enumerate(row.top):
            kept = [(t, v) for t, v in entry.items() if 0 <= t < n_shared]
            if kept:
                ids[b, c, : len(kept)] = torch.tensor([t for t, _ in kept])
                top[b, c, : len(kept)] = torch.tensor([max(v, LOG_ZERO) for _, v in kept])
    return logp, ids, top


def approximation(estimator: Estimator, loss: Loss, top_k: int) -> str:
    """What the remote teacher's log-probs make of the loss, for ``speechsum.json``."""
    if estimator is Estimator.sampled:
        return "exact: the server's log-prob of each sampled token (policy-gradient estimator)"
    return (
        f"top-{top_k} log-probs + one tail bucket: {loss.value} between the two "
        f"distributions coarsened to the teacher's top-{top_k} tokens and the rest of the mass "
        "(a lower bound of the full divergence)"
    )
