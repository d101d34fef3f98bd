"""The distill trainer: each step samples from the student, has the teacher score the samples and
pulls the student toward it; and the held-out divergence on fixed samples, before and after."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from speechsum_cli.data.dataset import load_rows
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import AudioRowCollator, long_audio_plan
from speechsum_cli.stages.distill.batch import Batcher
from speechsum_cli.stages.distill.checks import check_rows
from speechsum_cli.stages.distill.config import DistillConfig, Estimator, Loss
from speechsum_cli.stages.distill.losses import distill_loss, repetition_rate
from speechsum_cli.stages.distill.sampling import (
    reference_completion,
    sample_completions,
    sampling_settings,
)
from speechsum_cli.training.trainer import SpeechTrainer, answer_token_loss

STEP_LOG_KEYS = ("reverse_kl", "logp/teacher", "logp/student", "completion_length", "repetition", "hit_max_new_tokens")
"""Logged every --logging-steps beside the loss (trainer logs, trackers, stderr)."""
HISTORY_KEYS = ("loss", "reverse_kl", "logp/teacher", "logp/student")
"""Per logged step in ``speechsum.json``'s ``log_history``."""


@dataclass
class DistillCollator(AudioRowCollator):
    """Decode each row's audio; rows stay rows (sampling happens in the loss).

    Audio over one window is split into consecutive windows that fill one prompt with ``chunk``
    (``--on-long-audio chunk``), else cut to the window (rows planned for truncation).
    """

    def build(self, rows: list[dict[str, Any]], audios: list[Any]) -> dict[str, Any]:
        return {
            "rows": [
                {
                    "id": row["id"],
                    "wave": wave,
                    "query": row["query"],
                    "transcript": row["transcript"],
                    "summary": row.get("summary") or "",
                }
                for row, wave in zip(rows, audios)
            ]
        }


@dataclass
class Draw:
    """One step's completions: each with the student's prompt and the teacher's prompt ids."""

    prompts: list[Any] = field(default_factory=list)
    teacher_prompts: list[list[int]] = field(default_factory=list)
    completions: list[list[int]] = field(default_factory=list)
    references: list[Any] = field(default_factory=list)
    """Every row's reference summary as a prompt with its answer (the --sft-alpha term)."""


class DistillTrainer(SpeechTrainer):
    """Trainer whose loss samples from the student and pulls it toward the teacher."""

    step_log_keys = STEP_LOG_KEYS

    def __init__(self, *args: Any, cfg: DistillConfig, batcher: Batcher, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg, self.batcher = cfg, batcher
        self._rng = random.Random(cfg.train.seed)
        self.totals = {
            "samples_drawn": 0,
            "off_policy_rows": 0,
            "completion_tokens": 0,
            "hit_max_new_tokens": 0,
            "student_only_tokens": 0,
            "repetition_sum": 0.0,
        }

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        cfg, b = self.cfg, self.batcher
        draw = self.draw(self.accelerator.unwrap_model(model), inputs["rows"])
        scored = b.score(
            model, draw.prompts, draw.teacher_prompts, draw.completions, full=cfg.estimator is Estimator.full
        )
        self.totals["student_only_tokens"] += scored.student_only
        loss, stats = distill_loss(
            scored, kind=cfg.loss, beta=cfg.beta, estimator=cfg.estimator, chunk_size=cfg.chunk_size
        )
        if cfg.sft_alpha and draw.references:
            ce = self.reference_loss(model, draw.references)
            loss = loss + cfg.sft_alpha * ce
            stats["sft_ce"] = float(ce.detach())
        self.record(stats)
        return (loss, None) if return_outputs else loss

    def draw(self, student: Any, rows: list[dict[str, Any]]) -> Draw:
        """The step's completions: a row with a summary is off-policy (its reference summary) with
        probability ``1 - lmbda``; every other row is sampled ``samples_per_prompt`` times."""
        from speechsum_cli.families import Prompt

        cfg, b = self.cfg, self.batcher
        draw, on_policy = Draw(), []
        for row in rows:
            prompt = Prompt(row["query"], row["wave"])
            t_prompt = b.teacher.prompt_ids(row["transcript"], row["query"])
            if row["summary"].strip():
                draw.references.append(Prompt(row["query"], row["wave"], answer=row["summary"]))
            if row["summary"].strip() and self._rng.random() >= cfg.lmbda:
                draw.prompts.append(prompt)
                draw.teacher_prompts.append(t_prompt)
                draw.completions.append(reference_completion(b.lm, draw.references[-1], b.stop_ids))
                self.totals["off_policy_rows"] += 1
            else:
                on_policy += [(prompt, t_prompt)] * cfg.samples_per_prompt
        if on_policy:
            sampled = self.sample(student, [p for p, _ in on_policy])
            draw.prompts += [p for p, _ in on_policy]
            draw.teacher_prompts += [t for _, t in on_policy]
            draw.completions += sampled
        return draw

    def sample(self, student: Any, prompts: list[Any]) -> list[list[int]]:
        """The student's samples for ``prompts``, counted and logged (length, repetition, limit)."""
        stop_ids = self.batcher.stop_ids
        sampled, truncated = sample_completions(student, self.batcher.lm, prompts, sampling_settings(self.cfg))
        self.totals["samples_drawn"] += len(sampled)
        self.totals["hit_max_new_tokens"] += sum(truncated)
        self.totals["completion_tokens"] += sum(len(c) for c in sampled)
        reps = [repetition_rate([t for t in c if t not in stop_ids]) for c in sampled]
        self.totals["repetition_sum"] += sum(reps)
        self.record(
            {
                "completion_length": sum(len(c) for c in sampled) / len(sampled),
                "repetition": sum(reps) / len(reps),
                "hit_max_new_tokens": sum(truncated) / len(truncated),
            }
        )
        return sampled

    def reference_loss(self, model: Any, references: list[Any]) -> Any:
        """Cross-entropy of the student on the reference summaries' answer tokens."""
        lm = self.batcher.lm
        batch = lm.encode(references, padding_side="right").inputs
        labels = batch.pop("labels")
        outputs = model(**lm.to_model(batch))
        return answer_token_loss(outputs, labels.to(outputs.logits.device))


def step_history(trainer: Any) -> list[dict[str, float]]:
    """Every logged training step: the loss and the stage's statistics."""
    return [
        {"step": h["step"], **{k: h[k] for k in HISTORY_KEYS if k in h}}
        for h in trainer.state.log_history
        if "loss" in h and "train_runtime" not in h
    ]


# --- held-out divergence --------------------------------------------------------------------


@dataclass
class HeldOut:
    """Decoded held-out rows and the student's completions for them, sampled once (fixed)."""

    rows: list[dict[str, Any]]
    completions: list[list[int]]
    counts: dict[str, int]


def heldout_rows(cfg: DistillConfig, lm: Any, window: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Decoded eval rows (long audio handled per --on-long-audio) and their counts."""
    ds = load_rows(cfg.eval_data, columns=cfg.columns)
    durations = check_rows(ds, cfg.eval_data, needs_summary=False)
    policy = cfg.train.on_long_audio
    plan = long_audio_plan(ds["id"], durations, window, policy, cfg.eval_data)
    collate = DistillCollator(lm, window, chunk=policy is LongAudio.chunk)
    rows = collate([{**ds[i], "truncate": t} for i, t in zip(plan.keep, plan.truncate)])["rows"]
    return rows, {"eval_rows": len(rows), **{f"eval_{k}": v for k, v in plan.counts.items()}}


def sample_heldout(cfg: DistillConfig, model: Any, lm: Any) -> HeldOut:
    """The held-out rows and the student's samples for them, seeded with ``--seed``."""
    from transformers import set_seed

    from speechsum_cli.families import Prompt

    rows, counts = heldout_rows(cfg, lm, lm.window_seconds)
    set_seed(cfg.train.seed)
    fixed, _ = sample_completions(model, lm, [Prompt(r["query"], r["wave"]) for r in rows], sampling_settings(cfg))
    return HeldOut(rows, fixed, counts)


def heldout_divergence(model: Any, batcher: Batcher, held: HeldOut, batch_size: int) -> float:
    """Token-mean full-vocabulary reverse KL(student || teacher) on the fixed completions."""
    import torch

    from speechsum_cli.families import Prompt

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(held.rows), batch_size):
            part = held.rows[start : start + batch_size]
            prompts = [Prompt(r["query"], r["wave"]) for r in part]
            t_prompts = [batcher.teacher.prompt_ids(r["transcript"], r["query"]) for r in part]
            completions = held.completions[start : start + batch_size]
            with torch.no_grad():
                scored = batcher.score(model, prompts, t_prompts, completions, full=True)
                _, stats = distill_loss(
                    scored, kind=Loss.reverse_kl, beta=0.5, estimator=Estimator.full, chunk_size=batcher.chunk_size
                )
            total += stats["reverse_kl"] * stats["scored_tokens"]
            count += int(stats["scored_tokens"])
    finally:
        model.train(was_training)
    return total / max(count, 1)
