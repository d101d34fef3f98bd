"""``distill``: on-policy distillation from a text LLM that reads the transcript (stage 2).

Each training step, for every row of the batch:

1. **Sample** (inside ``compute_loss``): the student, in eval mode and without gradients, samples
   ``samples_per_prompt`` completions for (audio, query) with the family's prompt; audio
   placeholders are suppressed; each completion is cut after its first stop token. With
   ``lmbda < 1`` a row whose dataset has a reference summary uses that summary instead
   (off-policy, GKD's mixing) with probability ``1 - lmbda``.
2. **Score**: the teacher reads ``[system?, user: transcript + query]`` rendered by *its own* chat
   template with the generation prompt, followed by the student's completion **token ids**
   (never re-tokenized text), so position ``j`` of the completion is the same token for both
   models — in this process, or on a vLLM-compatible server (``--teacher-base-url``), which
   returns its log-probs of the same token ids. The conversation is :mod:`speechsum_cli.teacher`'s,
   which ``speechsum sft`` fine-tunes a teacher on (text mode); such a teacher (an adapter dir
   too) is asked with the system turn it was trained with.
3. **Update**: the student re-reads prompt + completion with gradients; the divergence between
   the two next-token distributions is computed on the completion positions only (prompt and
   post-stop padding masked), over the shared vocabulary, from each model's last hidden states
   and LM head a chunk of positions at a time (:mod:`~speechsum_cli.training.head`): no
   ``[batch, length, vocab]`` logits are made.

Token alignment. Before any model loads, the vocabularies are compared: every teacher token must
have the same id in the student, and the student's other tokens must be tokens it added (audio
placeholders, chat-template markers from ``compose``). The divergence is taken over the teacher's
ids ``[0, n_shared)``, both distributions renormalised there. A sampled token outside that range
(a student-only token) cannot be scored: the teacher reads its own end-of-turn token at that
position, the position is masked and counted (``student_only_tokens``).

End of turn. The stop token that ends a completion is kept and scored: when student and teacher
share it (a student composed around the teacher's LLM, or a student of the teacher's family),
the teacher's probability of ending the turn there is distilled too — which is what reins in the
run-on repetition the paper warns about. A completion that reaches ``max_new_tokens`` without a
stop token is scored as is, and counted (``hit_max_new_tokens``).

LoRA: an adapter given as ``--model`` (the sft output) is merged into its base first and a new
LoRA trains on top (the output's base is the merged sft model). The method only — row contract,
collator, sampling, scoring, divergence — on top of :mod:`speechsum_cli.training`.

The modules, each importing only those above it:

* :mod:`.config` — :class:`DistillConfig`, its enums, :func:`check_config` (light: no torch);
* :mod:`.scores` — what the models give the loss (``TeacherScores``, ``Scored``);
* :mod:`.losses` — the divergences (pure torch) and ``distill_loss``;
* :mod:`.remote` — the teacher server's requests and replies;
* :mod:`.checks` — rows, vocabulary, teacher template, checked before any model loads;
* :mod:`.teacher` — one teacher interface: ``LocalTeacher`` and ``RemoteTeacher``, one ``score``;
* :mod:`.batch` — ``Batcher``: one scored batch; :mod:`.sampling` — the student's samples;
* :mod:`.trainer` — ``DistillTrainer``, its collator, the held-out divergence;
* :mod:`.stage` — :func:`run`.
"""

from __future__ import annotations

from speechsum_cli.stages.distill.config import (
    DistillConfig,
    DistillResult,
    Estimator,
    Loss,
    TeacherLogprobs,
    check_config,
)

__all__ = ["DistillConfig", "DistillResult", "Estimator", "Loss", "TeacherLogprobs", "check_config", "run"]


def run(cfg: DistillConfig) -> DistillResult:
    """Distill (:func:`.stage.run`); torch and transformers load on the call, not on the import,
    so the CLI builds ``--help`` from this package's config without them."""
    from speechsum_cli.stages.distill.stage import run as run_stage

    return run_stage(cfg)
