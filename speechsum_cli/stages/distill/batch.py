"""One scored batch: the student's (audio, query) prompts and the teacher's prompts, each followed
by the same completion **token ids** (never re-tokenized text), so position ``j`` of a completion
is the same token for both models.

The completion positions in the loss run up to and including each completion's first stop token
(kept and scored: where student and teacher share it, the teacher's probability of ending the turn
there is distilled too), minus the student-only tokens the teacher cannot score (counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from speechsum_cli.stages.distill.config import DEFAULT_CHUNK
from speechsum_cli.stages.distill.losses import completion_mask
from speechsum_cli.stages.distill.scores import Scored
from speechsum_cli.stages.distill.teacher import DistillTeacher, torch_where_scorable
from speechsum_cli.training.head import Head, HeadStates


@dataclass
class Batcher:
    """Builds the student's inputs for prompts + completion ids; runs the teacher, then the
    student."""

    lm: Any
    teacher: DistillTeacher
    """A :class:`~speechsum_cli.stages.distill.teacher.LocalTeacher` or ``RemoteTeacher``."""
    stop_ids: list[int]
    chunk_size: int = DEFAULT_CHUNK
    student_states: HeadStates = field(default_factory=lambda: HeadStates("student"))

    @property
    def n_shared(self) -> int:
        return self.teacher.n_shared

    def pad_completions(self, completions: list[list[int]]) -> tuple[Any, Any]:
        """``[B, C]`` completion ids (the student's pad past each end) and which are real."""
        import torch

        width = max(1, max(len(c) for c in completions))
        tok = self.lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]
        ids = torch.full((len(completions), width), pad, dtype=torch.long)
        real = torch.zeros((len(completions), width), dtype=torch.bool)
        for i, c in enumerate(completions):
            ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            real[i, : len(c)] = True
        return ids, real

    def student_inputs(self, prompts: list[Any], tokens: Any, real: Any) -> dict[str, Any]:
        """The family's left-padded (audio, query) prompts + the completion ids."""
        import torch

        inputs = self.lm.encode(prompts, padding_side="left").inputs
        inputs["input_ids"] = torch.cat([inputs["input_ids"], tokens], 1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], real.long()], 1)
        return inputs

    def score(
        self,
        model: Any,
        prompts: list[Any],
        teacher_prompts: list[list[int]],
        completions: list[list[int]],
        *,
        full: bool,
    ) -> Scored:
        """The teacher (no gradients) then the student (gradients if enabled) on the completions."""
        tokens, real = self.pad_completions(completions)
        mask = completion_mask(tokens, self.stop_ids, real)
        scorable = tokens < self.n_shared
        student_only = int((mask & ~scorable).sum())
        teacher = self.teacher.score(teacher_prompts, tokens, real, full=full)
        hidden, head = self.student_hidden(model, prompts, tokens, real)
        device = hidden.device
        safe = torch_where_scorable(tokens, scorable)
        return Scored(hidden, head, teacher.to(device), safe.to(device), (mask & scorable).to(device), student_only)

    def student_hidden(self, model: Any, prompts: list[Any], tokens: Any, real: Any) -> tuple[Any, Head]:
        """The student's last hidden states at the completion positions, ``[B, C, H]``, and its
        head."""
        s_inputs = self.lm.to_model(self.student_inputs(prompts, tokens, real))
        return self.student_states(model, s_inputs, tokens.shape[1], self.n_shared)
