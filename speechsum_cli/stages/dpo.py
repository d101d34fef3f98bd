"""``dpo``: direct preference optimization of an audio LLM on judge-built pairs (stage 3).

The reference policy is the ``--model`` checkpoint itself (the KD checkpoint in the paper): a new
LoRA is trained on top of its (merged) weights and the reference is the same network with the
LoRA and the trained projector copy disabled; with ``--full`` the reference is a frozen copy.
Never an empty reference.

Each batch holds the rows' prompts twice — once with the chosen, once with the rejected answer —
encoded by the family in one padded batch (the audio features duplicated), so chosen and rejected
log-probabilities come from one forward pass with identical audio.

The method only — pair contract, pair collator, DPO loss — on top of
:mod:`speechsum_cli.training`. Uses transformers' ``Trainer`` with a DPO loss rather than TRL's
``DPOTrainer``: DPOTrainer tokenizes prompt/chosen/rejected text itself and has no audio path (no
feature extraction, no placeholder expansion), which is the whole difficulty here; the loss
variants are a few lines each (their names follow TRL's ``DPOConfig``: ``beta``, ``loss_type``
sigmoid/ipo/hinge, ``rpo_alpha``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechsum_cli.console import info, plural
from speechsum_cli.data.dataset import load_rows
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import AudioRowCollator, check_audio_rows, long_audio_plan, shown_ids
from speechsum_cli.errors import InputError
from speechsum_cli.training.lengths import estimate_lengths
from speechsum_cli.training.model import load_for_training, make_trainable
from speechsum_cli.training.run import TrainResult, check_run, finish_run, start_run, train_metrics
from speechsum_cli.training.settings import DPO_DEFAULTS, StageConfig, TrainSettings
from speechsum_cli.training.trainer import SpeechTrainer

LOSSES = ("sigmoid", "ipo", "hinge")
DEFAULT_TRAIN = DPO_DEFAULTS
STEP_LOG_KEYS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
"""Logged every --logging-steps beside the loss (trainer logs, trackers, stderr)."""


@dataclass(frozen=True, kw_only=True)
class DpoConfig(StageConfig):
    """Settings of one ``speechsum dpo`` run."""

    train: TrainSettings = DEFAULT_TRAIN
    """How it trains; --full: the reference is a frozen copy."""
    beta: float = 0.1
    """Strength of the KL anchor to the reference (DPO's beta)."""
    loss: str = "sigmoid"
    """sigmoid (DPO) | ipo | hinge."""
    rpo_alpha: float = 0.0
    """Weight of an added NLL term on the chosen answers (RPO); 0 = plain DPO."""


DpoResult = TrainResult


def check_pairs(ds: Any, source: Path) -> list[float]:
    """Audio duration per row; one error naming every unusable row id and column."""
    same = []
    if {"chosen", "rejected"} <= set(ds.column_names):
        same = [i for i, c, r in zip(ds["id"], ds["chosen"], ds["rejected"]) if c == r]
    return check_audio_rows(
        ds,
        source,
        stage="dpo",
        required=["audio", "query", "chosen", "rejected"],
        nonempty=["query", "chosen", "rejected"],
        hint="Run 'speechsum pairs' first: dpo trains on its output.",
        extra_problems=[f"{len(same)} row(s) whose chosen equals rejected: ids {shown_ids(same)}"] if same else [],
    )


@dataclass
class PairCollator(AudioRowCollator):
    """Decode each row's audio once; encode [chosen rows..., rejected rows...] in one batch."""

    def build(self, rows: list[dict[str, Any]], audios: list[Any]) -> dict[str, Any]:
        from speechsum_cli.families import Prompt

        prompts = [Prompt(r["query"], a, answer=r["chosen"]) for r, a in zip(rows, audios)]
        prompts += [Prompt(r["query"], a, answer=r["rejected"]) for r, a in zip(rows, audios)]
        return self.encode(prompts)


def sequence_logps(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Sum of log-probabilities of the label tokens per row, and the label-token counts."""
    import torch

    shifted = labels[:, 1:].clone()
    mask = shifted != -100
    shifted[~mask] = 0
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, shifted.unsqueeze(-1)).squeeze(-1)
    return (logps * mask).sum(-1), mask.sum(-1)


def preference_loss(policy_c: Any, policy_r: Any, ref_c: Any, ref_r: Any, beta: float, kind: str) -> Any:
    """Per-pair loss from sequence log-probs (DPO sigmoid, IPO, or hinge)."""
    import torch.nn.functional as F

    logits = (policy_c - ref_c) - (policy_r - ref_r)
    if kind == "sigmoid":
        return -F.logsigmoid(beta * logits)
    if kind == "ipo":
        return (logits - 1 / (2 * beta)) ** 2
    return F.relu(1 - beta * logits)


class DpoTrainer(SpeechTrainer):
    """Trainer whose loss is DPO against a reference (disabled adapter or frozen copy)."""

    step_log_keys = STEP_LOG_KEYS

    def __init__(
        self, *args: Any, beta: float, loss_kind: str, rpo_alpha: float, ref_model: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.beta, self.loss_kind, self.rpo_alpha, self.ref_model = beta, loss_kind, rpo_alpha, ref_model
        # The loss is a mean over this micro-batch's pairs: let the Trainer divide it by the
        # accumulation steps (the model's forward takes **kwargs, which would make it skip that).
        self.model_accepts_loss_kwargs = False

    def _reference_logps(self, model: Any, inputs: dict[str, Any]) -> Any:
        import torch

        with torch.no_grad():
            if self.ref_model is not None:
                logits = self.ref_model(**inputs).logits
            else:
                with self.accelerator.unwrap_model(model).disable_adapter():
                    logits = model(**inputs).logits
        return sequence_logps(logits, inputs["labels"])[0]

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logps, counts = sequence_logps(outputs.logits, labels)
        ref = self._reference_logps(model, {**inputs, "labels": labels})
        half = logps.shape[0] // 2
        losses = preference_loss(logps[:half], logps[half:], ref[:half], ref[half:], self.beta, self.loss_kind)
        loss = losses.mean()
        if self.rpo_alpha:
            loss = loss + self.rpo_alpha * (-(logps[:half] / counts[:half].clamp(min=1)).mean())
        chosen_reward = self.beta * (logps[:half] - ref[:half]).detach()
        rejected_reward = self.beta * (logps[half:] - ref[half:]).detach()
        self.record(
            {
                "rewards/chosen": chosen_reward.mean(),
                "rewards/rejected": rejected_reward.mean(),
                "rewards/margins": (chosen_reward - rejected_reward).mean(),
                "rewards/accuracies": (chosen_reward > rejected_reward).float().mean(),
                "logps/chosen": logps[:half].detach().mean(),
                "logps/rejected": logps[half:].detach().mean(),
            }
        )
        return (loss, outputs) if return_outputs else loss


def run(cfg: DpoConfig) -> DpoResult:
    """Train DPO, then write the adapter (or merged checkpoint) + processor + speechsum.json."""
    train = cfg.train
    problems = []
    if cfg.loss not in LOSSES:
        problems.append(f"--loss must be one of {', '.join(LOSSES)}, got '{cfg.loss}'")
    if cfg.beta <= 0:
        problems.append(f"--beta must be > 0, got {cfg.beta}")
    if problems:
        raise InputError("; ".join(problems) + ".")
    dtype = check_run(train, cfg.out)
    rows = load_rows(cfg.data, columns=cfg.columns, split=cfg.split)
    durations = check_pairs(rows, cfg.data)

    run_ = start_run(cfg, train, cfg.out, dtype)
    lm, reference = load_for_training(cfg.model, run_.model_dtype(train), is_main=run_.is_main)
    window = lm.window_seconds
    policy = train.on_long_audio
    plan = long_audio_plan(rows["id"], durations, window, policy, cfg.data)
    counts: dict[str, Any] = {"pairs_in": len(rows), **plan.counts}
    kept = rows.select(plan.keep)
    longer = [c if len(c) >= len(r) else r for c, r in zip(kept["chosen"], kept["rejected"])]
    lengths = estimate_lengths(
        lm, kept["query"], longer, [durations[i] for i in plan.keep], window, chunked=policy is LongAudio.chunk
    )
    from datasets import Dataset

    train_ds = Dataset.from_dict(
        {
            "id": kept["id"],
            "audio": kept["audio"],
            "query": kept["query"],
            "chosen": kept["chosen"],
            "rejected": kept["rejected"],
            "truncate": plan.truncate,
            "length": lengths,
        }
    )
    counts["train_pairs"] = len(train_ds)

    ref_model = copy.deepcopy(lm.model).eval().requires_grad_(False) if train.full else None
    model, groups = make_trainable(lm, train, reference, is_main=run_.is_main)
    run_.use_feature_cache(model, lm.family, train)
    trainer = DpoTrainer(
        model=model,
        args=run_.args,
        train_dataset=train_ds,
        data_collator=PairCollator(
            lm, window, chunk=policy is LongAudio.chunk, dtype=next(lm.model.parameters()).dtype
        ),
        family=lm.family,
        beta=cfg.beta,
        loss_kind=cfg.loss,
        rpo_alpha=cfg.rpo_alpha,
        ref_model=ref_model,
    )
    if run_.is_main:
        info(f"dpo on {plural(len(train_ds), 'pair')}, reference '{cfg.model}' (beta {cfg.beta:g}, {cfg.loss})")
    output = trainer.train(resume_from_checkpoint=run_.resume_argument)
    metrics = train_metrics(trainer, output, run_, STEP_LOG_KEYS)
    finish_run(
        trainer,
        run_,
        lm,
        stage="dpo",
        config=cfg,
        train=train,
        inputs=[cfg.data, lm.source],
        counts=counts,
        metrics=metrics,
        extra={
            "reference_model": reference,
            "base_model": reference,
            "parameters": [vars(g) for g in groups],
            "window_seconds": window,
        },
    )
    return DpoResult(cfg.out, counts, metrics, groups)
