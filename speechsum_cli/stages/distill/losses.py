"""Token-level distillation losses for ``speechsum distill`` (pure torch; no model, no I/O).

Conventions: ``student_logits`` and ``teacher_logits`` are ``[N, V]`` over the *same* token ids
(the caller slices both to the shared vocabulary); rows are completion positions. Divergences
are per position, over the full vocabulary:

* ``reverse-kl``  KL(p_s || p_t) = sum_v p_s (log p_s - log p_t)   (mode-seeking; the paper's)
* ``forward-kl``  KL(p_t || p_s) = sum_v p_t (log p_t - log p_s)   (mass-covering)
* ``jsd``         generalized JSD with mixture m = beta p_t + (1 - beta) p_s:
                  beta KL(p_t || m) + (1 - beta) KL(p_s || m), 0 < beta < 1 (GKD's form)

:func:`chunked_divergence` walks the rows of two logit tensors in checkpointed chunks. What
distill runs is the ``head_*`` family below: it starts from each model's last hidden states
``[N, H]`` and LM head, so no ``[N, V]`` tensor exists for either model at all — only one chunk's.

:func:`sampled_reverse_kl` is the per-token policy-gradient (score-function) estimator of the
reverse KL: it needs only the teacher's log-prob of the sampled token. :func:`distill_loss` is
what a training step takes: one of them over the masked completion positions of a
:class:`~speechsum_cli.stages.distill.scores.Scored` batch.
"""

from __future__ import annotations

import math
from typing import Any

from speechsum_cli.stages.distill.config import DEFAULT_CHUNK, Estimator, Loss
from speechsum_cli.stages.distill.scores import Scored


def token_divergence(student_logits: Any, teacher_logits: Any, kind: Loss = Loss.reverse_kl, beta: float = 0.5) -> Any:
    """Per-row divergence ``[N]`` (fp32) between the two ``[N, V]`` logit tensors."""
    import torch

    log_s = torch.log_softmax(student_logits.float(), dim=-1)
    log_t = torch.log_softmax(teacher_logits.float(), dim=-1)
    return logprob_divergence(log_s, log_t, kind, beta)


def logprob_divergence(log_s: Any, log_t: Any, kind: Loss = Loss.reverse_kl, beta: float = 0.5) -> Any:
    """Per-row divergence ``[N]`` between two ``[N, V]`` fp32 log-probability tensors."""
    import torch

    if kind == Loss.reverse_kl:
        return _kl(log_s, log_t)
    if kind == Loss.forward_kl:
        return _kl(log_t, log_s)
    if kind == Loss.jsd:
        if not 0.0 < beta < 1.0:
            raise ValueError(f"jsd needs 0 < beta < 1, got {beta}")
        mixture = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1.0 - beta)]), dim=0)
        return beta * _kl(log_t, mixture) + (1.0 - beta) * _kl(log_s, mixture)
    choices = ", ".join(k.value for k in Loss)
    raise ValueError(f"unknown divergence {kind!r}; choose one of {choices}")


def _kl(log_p: Any, log_q: Any) -> Any:
    """KL(p || q) per row from log-probabilities (0 log 0 = 0)."""
    import torch

    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def chunked_divergence(
    student_logits: Any,
    teacher_logits: Any,
    kind: Loss = Loss.reverse_kl,
    beta: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
) -> Any:
    """:func:`token_divergence` over ``chunk_size`` rows at a time; equal values and gradients.

    Each chunk runs under activation checkpointing when the student needs gradients, so what
    autograd keeps between forward and backward is only the inputs (the student's logits and the
    teacher's logits in their own dtype), not a fp32 softmax of every row.
    """
    import torch
    from torch.utils.checkpoint import checkpoint

    if chunk_size <= 0 or student_logits.shape[0] <= chunk_size:
        return token_divergence(student_logits, teacher_logits, kind, beta)
    parts = []
    for start in range(0, student_logits.shape[0], chunk_size):
        s = student_logits[start : start + chunk_size]
        t = teacher_logits[start : start + chunk_size]
        if s.requires_grad:
            parts.append(checkpoint(token_divergence, s, t, kind, beta, use_reentrant=False))
        else:
            parts.append(token_divergence(s, t, kind, beta))
    return torch.cat(parts)


def token_logprobs(logits: Any, tokens: Any, chunk_size: int = DEFAULT_CHUNK) -> Any:
    """log p(tokens) ``[N]`` (fp32) from ``[N, V]`` logits, a chunk of rows at a time."""
    import torch

    parts = []
    step = chunk_size if chunk_size > 0 else max(1, logits.shape[0])
    for start in range(0, logits.shape[0], step):
        chunk = logits[start : start + step].float()
        picked = chunk.gather(-1, tokens[start : start + step].unsqueeze(-1)).squeeze(-1)
        parts.append(picked - torch.logsumexp(chunk, dim=-1))
    return torch.cat(parts) if parts else logits.new_zeros(0, dtype=torch.float32)


def sampled_reverse_kl(student_logp: Any, teacher_logp: Any) -> Any:
    """Per-token policy-gradient estimator of KL(p_s || p_t) on tokens sampled from the student.

    Advantage ``A = log p_t(y) - log p_s(y)``, with no gradient through it (nor the samples).
    The value returned is the plain estimate ``log p_s(y) - log p_t(y)`` (so the logged loss is a
    reverse-KL estimate); its gradient is ``-A * grad log p_s(y)``.
    """
    advantage = (teacher_logp - student_logp).detach()
    surrogate = -advantage * student_logp
    return (student_logp - teacher_logp).detach() + (surrogate - surrogate.detach())


def completion_mask(completions: Any, stop_ids: list[int], pad_mask: Any = None) -> Any:
    """True up to and including the first stop token of each row; False after it (and on pads)."""
    import torch

    is_stop = torch.isin(completions, torch.tensor(stop_ids, device=completions.device))
    before = (is_stop.long().cumsum(-1) - is_stop.long()) == 0  # no stop strictly earlier
    return before if pad_mask is None else before & pad_mask.bool()


def repetition_rate(tokens: list[int], n: int = 3) -> float:
    """Share of the sequence's n-grams that repeat an earlier n-gram (0 = none repeated)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


# --- from last hidden states and the LM head, a chunk of positions at a time --------------------
#
# The functions below never hold a ``[N, V]`` tensor for all rows: they take each model's last
# hidden states ``[N, H]`` and its LM head (a callable: hidden -> logits over the shared
# vocabulary) and make the logits of ``chunk_size`` rows at a time. With gradients, each chunk runs
# under activation checkpointing, so backward keeps only the chunk's inputs (hidden states, a few
# KB per row) and recomputes its logits, instead of every chunk's logits and softmaxes — the
# memory of TRL's chunked divergence / Liger's fused linear losses, without a custom kernel.

LOG_ZERO = -1e4
"""log 0 in an empty top-k slot: exp() is exactly 0 in fp32 and, unlike -inf, differences (and
so gradients) stay finite."""
TAIL_FLOOR = 1e-12
"""Smallest probability given to the tail bucket (the top-k may carry all the mass, to rounding)."""


def chunk_rows(fn: Any, inputs: tuple[Any, ...], chunk_size: int, *, grad: bool) -> list[Any]:
    """``fn(*rows)`` on ``chunk_size`` rows of every tensor in ``inputs`` at a time; each of its
    outputs concatenated over the chunks. With ``grad``, every chunk is checkpointed (recomputed in
    backward), so nothing ``fn`` makes inside a chunk outlives that chunk."""
    import torch
    from torch.utils.checkpoint import checkpoint

    n = inputs[0].shape[0]
    step = chunk_size if chunk_size > 0 else max(n, 1)
    parts = []
    for start in range(0, max(n, 1), step):
        rows = tuple(t[start : start + step] for t in inputs)
        parts.append(checkpoint(fn, *rows, use_reentrant=False) if grad else fn(*rows))
    return [torch.cat(column) for column in zip(*parts)]


def _picked(log_p: Any, tokens: Any) -> Any:
    return log_p.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def head_divergence(
    student_hidden: Any,
    student_head: Any,
    teacher_hidden: Any,
    teacher_head: Any,
    tokens: Any,
    kind: Loss = Loss.reverse_kl,
    beta: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[Any, Any, Any, Any]:
    """The full-vocabulary divergence per row ``[N]`` of two models given by last hidden states
    and LM heads; also (no gradient) the reverse KL, and the student's and the teacher's log-prob
    of ``tokens``. Equal to :func:`token_divergence` on the heads' logits."""
    import torch

    def chunk(s_h: Any, t_h: Any, tok: Any) -> tuple[Any, Any, Any, Any]:
        log_s = torch.log_softmax(student_head(s_h).float(), dim=-1)
        log_t = torch.log_softmax(teacher_head(t_h).to(log_s.device).float(), dim=-1)
        div = logprob_divergence(log_s, log_t, kind, beta)
        with torch.no_grad():
            reverse = div.detach() if kind == Loss.reverse_kl else _kl(log_s, log_t)
            return div, reverse, _picked(log_s, tok).detach(), _picked(log_t, tok)

    grad = torch.is_grad_enabled() and student_hidden.requires_grad
    div, reverse, s_logp, t_logp = chunk_rows(chunk, (student_hidden, teacher_hidden, tokens), chunk_size, grad=grad)
    return div, reverse, s_logp, t_logp


def head_logprobs(hidden: Any, head: Any, tokens: Any, chunk_size: int = DEFAULT_CHUNK) -> Any:
    """log p(tokens) ``[N]`` (fp32) from last hidden states and an LM head, with gradients when
    ``hidden`` has them (checkpointed chunks)."""
    import torch

    def chunk(h: Any, tok: Any) -> tuple[Any]:
        logits = head(h).float()
        return (_picked(logits, tok) - torch.logsumexp(logits, dim=-1),)

    grad = torch.is_grad_enabled() and hidden.requires_grad
    return chunk_rows(chunk, (hidden, tokens), chunk_size, grad=grad)[0]


def with_tail(top_logp: Any) -> Any:
    """``[N, K]`` log-probs of K distinct tokens -> ``[N, K + 1]``: the rest of the mass as one bucket."""
    import torch

    rest = (1.0 - top_logp.exp().sum(-1)).clamp(min=TAIL_FLOOR)
    return torch.cat([top_logp, rest.log().unsqueeze(-1)], dim=-1)


def head_topk_divergence(
    student_hidden: Any,
    student_head: Any,
    tokens: Any,
    top_ids: Any,
    top_logp: Any,
    kind: Loss = Loss.reverse_kl,
    beta: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[Any, Any, Any]:
    """The divergence per row between the two distributions coarsened to the teacher's top-k
    tokens plus one tail bucket holding the rest of the mass (what a server that returns top-k
    log-probs allows); also the reverse KL (no gradient) and the student's log-prob of ``tokens``.

    ``top_ids`` ``[N, K]`` are the teacher's tokens (-1 = empty slot), ``top_logp`` their
    log-probs. By the data-processing inequality this is a lower bound of the full divergence,
    equal to it when the teacher's top-k holds all its mass.
    """
    import torch

    def chunk(s_h: Any, tok: Any, ids: Any, t_top: Any) -> tuple[Any, Any, Any]:
        log_s = torch.log_softmax(student_head(s_h).float(), dim=-1)
        s_top = torch.where(ids >= 0, log_s.gather(-1, ids.clamp(min=0)), torch.full_like(t_top, LOG_ZERO))
        s_b = torch.log_softmax(with_tail(s_top), dim=-1)
        t_b = torch.log_softmax(with_tail(t_top.float()), dim=-1)
        div = logprob_divergence(s_b, t_b, kind, beta)
        with torch.no_grad():
            reverse = div.detach() if kind == Loss.reverse_kl else _kl(s_b, t_b)
            return div, reverse, _picked(log_s, tok).detach()

    grad = torch.is_grad_enabled() and student_hidden.requires_grad
    div, reverse, s_logp = chunk_rows(chunk, (student_hidden, tokens, top_ids, top_logp.float()), chunk_size, grad=grad)
    return div, reverse, s_logp


# --- the step's loss ------------------------------------------------------------------------------


def distill_loss(
    scored: Scored, *, kind: Loss, beta: float, estimator: Estimator, chunk_size: int
) -> tuple[Any, dict[str, float]]:
    """The token-mean loss over masked completion positions, and the step's statistics.

    Every full-vocabulary quantity is made from hidden states and heads a chunk of positions at a
    time (the ``head_*`` functions above); no ``[tokens, vocab]`` tensor is held.
    """
    flat = scored.mask.reshape(-1)

    def rows(x: Any) -> Any:
        return x.reshape(-1, *x.shape[2:])[flat]

    s, head, tokens = rows(scored.student_hidden), scored.student_head, rows(scored.tokens)
    t = scored.teacher
    t_logp = rows(t.logp)
    if estimator == Estimator.sampled:
        s_logp = head_logprobs(s, head, tokens, chunk_size)
        per_token = sampled_reverse_kl(s_logp, t_logp)
        reverse = per_token.detach()
    elif t.hidden is not None:
        per_token, reverse, s_logp, _ = head_divergence(s, head, rows(t.hidden), t.head, tokens, kind, beta, chunk_size)
    else:
        per_token, reverse, s_logp = head_topk_divergence(
            s, head, tokens, rows(t.top_ids), rows(t.top_logp), kind, beta, chunk_size
        )
    loss = per_token.mean() if per_token.numel() else scored.student_hidden.sum() * 0.0
    return loss, step_stats(reverse, t_logp, s_logp, flat)


def step_stats(reverse: Any, t_logp: Any, s_logp: Any, flat: Any) -> dict[str, float]:
    """The step's reverse KL, both models' mean log-prob of the completion, the tokens scored."""
    return {
        "reverse_kl": float(reverse.mean()) if reverse.numel() else 0.0,
        "logp/teacher": float(t_logp.mean()) if t_logp.numel() else 0.0,
        "logp/student": float(s_logp.detach().mean()) if s_logp.numel() else 0.0,
        "scored_tokens": float(flat.sum()),
    }
