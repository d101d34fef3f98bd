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
from typing import Any

import torch

from speechsum_cli.console import progress_bar
from speechsum_cli.data.rows import decode_row_audio
from speechsum_cli.errors import ModelError
from speechsum_cli.families.ctc_head import BLANK
from speechsum_cli.training.model import _under

ENCODE_BATCH = 8
"""Rows per encoder forward when clips are encoded."""
STALL_SHARE = 0.02
"""Below this share of non-blank frames (mean of the last steps) the alignment has not started."""
STALL_WINDOW = 10
NORM_WEIGHT = 0.1
"""Weight of :meth:`CtcHead.norm_penalty` in the alignment loss."""
REPEAT_FACTOR = 2.0
"""Emitting tokens on more than this many times the frames the transcripts need is the repeat
collapse (measured: a healthy alignment 0.27 of frames for 0.26 needed; a collapsed one 0.71)."""
HEAD_LR_FACTOR = 10.0
"""The head's few parameters (blank vector and bias, temperature) learn this much faster than the
projector: at the projector's rate the blank's logit cannot catch up with thousands of tokens'."""


def ctc_feasible(target_length: int, frames: int) -> bool:
    """Whether CTC can emit ``target_length`` tokens from ``frames`` (repeats need a blank between;
    a margin of one frame per 8 tokens is kept for them)."""
    return 0 < target_length and target_length + target_length // 8 <= frames


def ctc_loss(log_probs: Any, lengths: Any, targets: list[list[int]]) -> Any:
    """Mean CTC loss per target token (torch's ``reduction='mean'``)."""
    flat = torch.tensor([c for row in targets for c in row], dtype=torch.long)
    target_lengths = torch.tensor([len(row) for row in targets], dtype=torch.long)
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        flat,
        lengths.cpu(),
        target_lengths,
        blank=BLANK,
        reduction="mean",
        zero_infinity=True,
    )


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


# --- clips: the rows as the projector sees them (encoded once; the feature cache keeps it) ------


@dataclass
class Clip:
    """One row as the projector sees it: cached encoder states of its real frames + its target."""

    row_id: str
    transcript: str
    states: Any
    """``[frames, width]`` float16, only the frames behind the clip's real audio tokens."""
    tokens: int
    """Audio embeddings the projector makes of ``states``."""
    target: list[int]
    """The transcript's LM token ids."""


def encode_clips(lm: Any, ds: Any, window: float, *, label: str, show_progress: bool) -> list[Clip]:
    """Every row's encoder states (real frames only) and target ids, through the feature cache."""
    family, sr = lm.family, lm.sampling_rate
    tok = lm.tokenizer
    clips: list[Clip] = []
    rows = list(ds)
    with progress_bar(f"encoding {label}", len(rows), enabled=show_progress) as advance:
        for start in range(0, len(rows), ENCODE_BATCH):
            part = rows[start : start + ENCODE_BATCH]
            waves = [decode_row_audio(row, sr, window, chunk=False) for row in part]
            features = family.audio_features(lm.processor, lm.config, waves)
            tensors = lm.to_model(features.tensors)
            with torch.no_grad():
                states = family.encoder_states(lm.model, tensors)
                full_tokens = family.project(lm.model, states[:1]).shape[1]
            frames_per_token = states.shape[1] // full_tokens
            for row, wave, n_tokens, row_states in zip(part, waves, features.num_tokens, states):
                real = min(n_tokens, full_tokens, math.ceil(len(wave) / sr / window * full_tokens) + 1)
                target = list(tok(row["transcript"], add_special_tokens=False)["input_ids"])
                clips.append(
                    Clip(
                        row["id"],
                        row["transcript"],
                        row_states[: real * frames_per_token].to("cpu", torch.float16).clone(),
                        real,
                        target,
                    )
                )
            advance(len(part))
    return clips


def batch_inputs(lm: Any, clips: list[Clip], device: Any) -> tuple[Any, Any]:
    """Padded encoder states ``[batch, frames, width]`` and each clip's embedding count."""
    width = max(c.states.shape[0] for c in clips)
    states = torch.zeros((len(clips), width, clips[0].states.shape[1]), dtype=lm.model.dtype)
    for i, clip in enumerate(clips):
        states[i, : clip.states.shape[0]] = clip.states.to(lm.model.dtype)
    return states.to(device), torch.tensor([c.tokens for c in clips], dtype=torch.long)


def project_batch(lm: Any, clips: list[Clip], device: Any) -> tuple[Any, Any]:
    """The projector's embeddings of a batch of clips, and their lengths."""
    states, lengths = batch_inputs(lm, clips, device)
    hidden = lm.family.project(lm.model, states)
    return hidden[:, : int(lengths.max())], lengths


def projector_parameters(lm: Any) -> list[Any]:
    """Freeze everything but the family's projector; return the projector's parameters."""
    params = []
    for name, param in lm.model.named_parameters():
        param.requires_grad = _under(name, lm.family.projector_prefixes)
        if param.requires_grad:
            params.append(param)
    if not params:
        raise ModelError(
            f"'{lm.source}': no parameter under {', '.join(lm.family.projector_prefixes)}; "
            "the checkpoint has no projector to align."
        )
    return params
