"""Projector alignment without the language model: CTC over the LM's own input embeddings.

The projector maps frozen encoder states to vectors the LM reads as input embeddings. Here it
learns that mapping directly: each audio embedding ``h_t`` is scored against the LM's input
embedding ``e_v`` of every token ``v`` of the corpus (``logit = scale * h_t . e_v``, plus one
learned *blank* vector), and CTC aligns the sequence with the transcript's tokens. No LM forward
or backward is paid, so thousands of steps cost what a few LM-in-the-loop steps cost; the encoder
states come from the feature cache. Restricting the softmax to the corpus's tokens keeps the
``[frames, vocabulary]`` logits small.

CTC can stall: everything predicts blank (loss on a plateau, no token emitted) for a long time.
:class:`StallWatch` makes that visible: the share of non-blank argmax frames is tracked, and a
run past its warm-up whose share stays near zero is reported as stalled.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

BLANK = 0
"""Index of the blank class; token ``vocab[i]`` is class ``i + 1``."""
STALL_SHARE = 0.02
"""Below this share of non-blank frames (mean of the last steps) the alignment has not started."""
STALL_WINDOW = 10
NORM_WEIGHT = 0.1
"""Weight of :meth:`CtcHead.norm_penalty` in the alignment loss."""
BLANK_BIAS_START = 5.0
"""The blank's logit starts this far ahead, so training starts where CTC usually does (blank on
most frames) and tokens emerge from it; started at 0, one of two runs of the mini student fell into
the repeat collapse instead (held-out WER 0.90 after 600 steps; with 5: 0.43 after 300)."""
REPEAT_FACTOR = 2.0
"""Emitting tokens on more than this many times the frames the transcripts need is the repeat
collapse (measured: a healthy alignment 0.27 of frames for 0.26 needed; a collapsed one 0.71)."""
HEAD_FILE = "alignment/ctc_head.safetensors"
"""Where ``align`` saves the trained head inside its output: with the checkpoint's projector it
decodes the audio into the corpus vocabulary, the selector that CTC-guided compression needs."""
HEAD_LR_FACTOR = 10.0
"""The head's few parameters (blank vector and bias, temperature) learn this much faster than the
projector: at the projector's rate the blank's logit cannot catch up with thousands of tokens'."""


@dataclass(frozen=True)
class CorpusVocab:
    """The LM token ids the corpus's transcripts use, in class order (blank excluded)."""

    ids: tuple[int, ...]

    @classmethod
    def of(cls, targets: list[list[int]]) -> CorpusVocab:
        return cls(tuple(sorted({t for row in targets for t in row})))

    def classes(self, row: list[int]) -> list[int]:
        """``row``'s token ids as CTC classes; tokens outside the vocabulary are skipped."""
        index = {t: i + 1 for i, t in enumerate(self.ids)}
        return [index[t] for t in row if t in index]


def ctc_feasible(target_length: int, frames: int) -> bool:
    """Whether CTC can emit ``target_length`` tokens from ``frames`` (repeats need a blank between;
    a margin of one frame per 8 tokens is kept for them)."""
    return 0 < target_length and target_length + target_length // 8 <= frames


class CtcHead(torch.nn.Module):
    """Scores audio embeddings against the LM's (frozen) input embeddings of the corpus vocabulary."""

    def __init__(self, embeddings: Any, vocab: CorpusVocab) -> None:
        super().__init__()
        table = embeddings[list(vocab.ids)].detach().float().clone()
        self.register_buffer("table", table)
        self.blank = torch.nn.Parameter(table.mean(0).clone())
        """The blank's vector, learned (it starts at the mean token embedding)."""
        self.log_scale = torch.nn.Parameter(torch.zeros(()))
        """Logit temperature, learned, so sharpening need not inflate the audio embeddings' norm."""
        self.blank_bias = torch.nn.Parameter(torch.tensor(BLANK_BIAS_START))
        """A free logit for the blank. Without it the blank (a vector near the embeddings' large
        common component) never beats the best of thousands of tokens, CTC cannot use it, and the
        projector collapses to repeating frequent tokens ("the the the")."""
        self.embedding_norm = float(table.norm(dim=-1).mean())

    def forward(self, hidden: Any) -> Any:
        """``[batch, frames, 1 + vocab]`` log-probabilities (class 0 = blank).

        The audio embeddings are scored at the tokens' mean norm (their direction decides), so the
        projector cannot win by inflating norms: with raw dot products it did (audio norm 25 vs
        token 2.8), every logit outgrew the blank's and the alignment collapsed to repeating
        frequent words. :meth:`norm_penalty` keeps the norms the LM will read near the tokens'.
        """
        hidden = hidden.float()
        self.last_norms = hidden.norm(dim=-1)
        scaled = torch.nn.functional.normalize(hidden, dim=-1) * self.embedding_norm
        weights = torch.cat([self.blank[None, :], self.table], dim=0)
        logits = torch.matmul(scaled, weights.T) * self.log_scale.exp()
        blank = torch.zeros_like(logits[..., :1]) + self.blank_bias
        return torch.log_softmax(torch.cat([logits[..., :1] + blank, logits[..., 1:]], dim=-1), dim=-1)

    def norm_penalty(self) -> Any:
        """Mean squared relative gap between the last batch's audio-embedding norms and the
        tokens' mean norm."""
        return ((self.last_norms / self.embedding_norm - 1) ** 2).mean()


def save_head(head: CtcHead, vocab: CorpusVocab, folder: Path) -> Path:
    """Write ``head``'s learned parameters and ``vocab`` to ``folder / HEAD_FILE`` (the token table
    is the LM's own embeddings, read again on load)."""
    import torch
    from safetensors.torch import save_file

    path = Path(folder) / HEAD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: param.detach().float().cpu().contiguous() for name, param in head.named_parameters()}
    tensors["vocab_ids"] = torch.tensor(vocab.ids, dtype=torch.long)
    save_file(tensors, str(path), metadata={"format": "speechsum-ctc-head-1"})
    return path


def load_head(folder: Path, embeddings: Any) -> tuple[CtcHead, CorpusVocab]:
    """The head ``align`` saved in ``folder``, scoring against ``embeddings`` (the LM's input table)."""
    from safetensors.torch import load_file

    from speechsum_cli.errors import ModelError

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise ModelError(f"'{folder}' has no {HEAD_FILE}: it is not a 'speechsum align' output "
                         "(or one from before the head was saved); run align on it again.")
    tensors = load_file(str(path))
    vocab = CorpusVocab(tuple(int(i) for i in tensors.pop("vocab_ids").tolist()))
    if max(vocab.ids) >= embeddings.shape[0]:
        raise ModelError(f"'{path}' names token ids up to {max(vocab.ids)} but the LM has "
                         f"{embeddings.shape[0]} embeddings: the head belongs to another model.")
    head = CtcHead(embeddings, vocab)
    head.load_state_dict({**tensors, "table": head.table}, strict=True)
    return head, vocab


def ctc_loss(log_probs: Any, lengths: Any, targets: list[list[int]]) -> Any:
    """Mean CTC loss per target token (torch's ``reduction='mean'``)."""
    flat = torch.tensor([c for row in targets for c in row], dtype=torch.long)
    target_lengths = torch.tensor([len(row) for row in targets], dtype=torch.long)
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), flat, lengths.cpu(), target_lengths, blank=BLANK,
        reduction="mean", zero_infinity=True,
    )


def greedy_decode(log_probs: Any, lengths: Any, vocab: CorpusVocab) -> list[list[int]]:
    """Best path per row: argmax, repeats collapsed, blanks dropped; as LM token ids."""
    best = log_probs.argmax(-1).tolist()
    out = []
    for row, n in zip(best, lengths.tolist()):
        ids, previous = [], BLANK
        for c in row[:n]:
            if c != previous and c != BLANK:
                ids.append(vocab.ids[c - 1])
            previous = c
        out.append(ids)
    return out


def nonblank_share(log_probs: Any, lengths: Any) -> float:
    """Share of real frames whose best class is not blank."""
    frames = torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths.to(log_probs.device)[:, None]
    emitted = (log_probs.argmax(-1) != BLANK) & frames
    return float(emitted.sum()) / max(1, int(frames.sum()))


@dataclass
class StallWatch:
    """Flags an alignment that, once its warm-up is over, sits in one of CTC's two dead ends.

    * ``blank``: every frame predicts blank (the classic plateau; the loss is flat);
    * ``repeats``: frames emit tokens far more often than the transcripts have tokens (a healthy
      alignment emits on about as many frames as there are target tokens and blanks the rest): the
      projector has collapsed to repeating frequent tokens ("the the the") and the loss creeps down
      through the language prior, not through hearing.
    """

    check_from: int
    """The step from which a blank plateau counts as a stall (after warm-up)."""
    repeats_from: int = 0
    """The step from which the repeat collapse counts: later, as a healthy run passes through a
    repeating phase on its way out of the blank start (measured: 0.65 of frames at step 75, 0.50 at
    150, 0.25 from 225 of 600)."""
    recent: deque = field(default_factory=lambda: deque(maxlen=STALL_WINDOW))
    stalled_at: int | None = None
    kind: str | None = None

    def update(self, step: int, share: float, needed: float = 0.0) -> str | None:
        """Record the non-blank ``share`` of a step whose targets need ``needed`` of its frames;
        the kind of stall exactly once, when it is first detected, else None."""
        self.recent.append((share, needed))
        if self.stalled_at is not None or step < self.check_from or len(self.recent) < self.recent.maxlen:
            return None
        shares = [s for s, _ in self.recent]
        needs = sum(n for _, n in self.recent) / len(self.recent)
        if max(shares) < STALL_SHARE:
            self.kind = "blank"
        elif step >= self.repeats_from and needs > 0 and min(shares) > REPEAT_FACTOR * needs:
            self.kind = "repeats"
        else:
            return None
        self.stalled_at = step
        return self.kind

    @property
    def stalled(self) -> bool:
        return self.stalled_at is not None


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
