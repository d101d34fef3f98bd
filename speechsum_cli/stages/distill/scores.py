"""What the two models give the loss at the completion positions (plain tensors, no model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from speechsum_cli.training.head import Head


@dataclass
class TeacherScores:
    """What a teacher, local or remote, gives the loss at the completion positions."""

    logp: Any
    """[B, C] the teacher's log-prob of each completion token."""
    hidden: Any | None = None
    """[B, C, H] its last hidden states (a local teacher, --estimator full), for ``head``."""
    head: Head | None = None
    top_ids: Any | None = None
    """[B, C, K] a remote teacher's top-k token ids (-1 = empty slot), --estimator full."""
    top_logp: Any | None = None
    """[B, C, K] their log-probs."""

    def to(self, device: Any) -> TeacherScores:
        def move(x: Any) -> Any:
            return None if x is None else x.to(device)

        return TeacherScores(move(self.logp), move(self.hidden), self.head, move(self.top_ids), move(self.top_logp))


@dataclass
class Scored:
    """Student and teacher on one batch of completions, at the completion positions."""

    student_hidden: Any
    """[B, C, H] the student's last hidden states, with gradients (when its forward had them);
    [B, C, V] logits when ``student_head`` is the identity (a model post-processing its head)."""
    student_head: Head
    """Hidden states -> logits over the shared vocabulary, applied a chunk at a time."""
    teacher: TeacherScores
    tokens: Any
    """[B, C] completion ids (pad past each row's end)."""
    mask: Any
    """[B, C] positions in the loss: real completion tokens, up to the stop, that the teacher
    can score."""
    student_only: int
    """Completion tokens outside the shared vocabulary (masked)."""
