"""``dpo``: direct preference optimization of an audio LLM on judge-built pairs (stage 3).

The reference policy is the ``--ckpt`` model itself (the KD checkpoint in the paper): a new LoRA
is trained on top of its (merged) weights and the reference is the same network with the LoRA
and the trained projector copy disabled; with ``--full`` the reference is a frozen copy. Never an
empty reference.

Each batch holds the rows' prompts twice — once with the chosen, once with the rejected answer —
encoded by the family in one padded batch (the audio features duplicated), so chosen and rejected
log-probabilities come from one forward pass with identical audio.

Uses transformers' ``Trainer`` with a DPO loss rather than TRL's ``DPOTrainer``: DPOTrainer
tokenizes prompt/chosen/rejected text itself and has no audio path (no feature extraction, no
placeholder expansion), which is the whole difficulty here; the loss itself is a few lines.
The training conventions (LoRA targets, parameter table, output layout, resume, accelerate) are
sft's, imported from there.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.data.audio import load_audio
from speechsum_cli.data.dataset import load_rows, require_columns, rows_with_empty
from speechsum_cli.errors import AudioError, InputError
from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest
from speechsum_cli.stages import sft

LOSSES = ("sigmoid", "ipo", "hinge")


@dataclass(frozen=True)
class DpoConfig:
    """Settings of one ``speechsum dpo`` run (training fields mean what they mean in sft)."""

    ckpt: str
    """Policy initialisation and reference (the KD checkpoint); adapter dirs are merged first."""
    pairs: Path
    """Pairs dataset: id, audio, query, chosen, rejected (``speechsum pairs`` output)."""
    out: Path
    """Output directory (adapter or merged checkpoint + processor + speechsum.json)."""
    beta: float = 0.1
    """Strength of the KL anchor to the reference (DPO's beta)."""
    loss: str = "sigmoid"
    """sigmoid (DPO) | ipo | hinge."""
    rpo_alpha: float = 0.0
    """Weight of an added NLL term on the chosen answers (RPO); 0 = plain DPO."""
    split: str | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] | None = None
    train_encoder: bool = False
    full: bool = False
    """Full fine-tuning (reference: a frozen copy of the starting weights)."""
    epochs: float = 1.0
    """The paper: 1 epoch."""
    max_steps: int = -1
    lr: float = 5e-6
    batch_size: int = 2
    """Pairs per device per step (2x rows in the forward pass)."""
    grad_accum: int = 1
    warmup: float = 0.1
    weight_decay: float = 0.0
    group_by_length: bool = True
    on_long_audio: str = "error"
    """truncate | drop | error, as in sft."""
    gradient_checkpointing: bool = False
    precision: str = "auto"
    resume: bool = False
    merge: bool = False
    report_to: str = "none"
    logging_steps: int = 10
    save_steps: int = 500
    eval_steps: int | None = None
    seed: int = 0
    num_workers: int = 0
    overwrite: bool = False


@dataclass
class DpoResult:
    out: Path
    counts: dict[str, Any]
    metrics: dict[str, Any]
    parameters: list[Any] = field(default_factory=list)


def check_pairs(ds: Any, source: Path) -> list[float]:
    """Audio duration per row; one error naming every unusable row id and column."""
    require_columns(ds, ["audio", "query", "chosen", "rejected"], source,
                    "Run 'speechsum pairs' first: dpo trains on its output.")
    problems = []
    for column in ("query", "chosen", "rejected"):
        empty = rows_with_empty(ds, column)
        if empty:
            problems.append(f"{len(empty)} row(s) with an empty '{column}': ids {sft._shown(empty)}")
    same = [i for i, c, r in zip(ds["id"], ds["chosen"], ds["rejected"]) if c == r]
    if same:
        problems.append(f"{len(same)} row(s) whose chosen equals rejected: ids {sft._shown(same)}")
    durations, unreadable = [], []
    for row_id, audio in zip(ds["id"], ds["audio"]):
        try:
            from speechsum_cli.data.audio import probe

            durations.append(probe(audio).duration)
        except AudioError as exc:
            unreadable.append(f"{row_id!r}: {exc}")
            durations.append(0.0)
    if unreadable:
        problems.append(f"{len(unreadable)} row(s) with unreadable 'audio' (first: {unreadable[0]})")
    if problems:
        raise InputError(f"pairs '{source}' has rows dpo cannot train on: " + "; ".join(problems) + ".")
    return durations


@dataclass
class PairCollator:
    """Decode each row's audio once; encode [chosen rows..., rejected rows...] in one batch."""

    lm: Any
    window: float
    dtype: Any = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from speechsum_cli.families import Prompt

        sr = self.lm.sampling_rate
        limit = int(self.window * sr)
        waves = []
        for row in rows:
            try:
                waves.append(load_audio(row["audio"], sr)[:limit])
            except AudioError as exc:
                raise AudioError(f"row {row['id']!r}, column 'audio': {exc}") from None
        prompts = [Prompt(r["query"], w, answer=r["chosen"]) for r, w in zip(rows, waves)]
        prompts += [Prompt(r["query"], w, answer=r["rejected"]) for r, w in zip(rows, waves)]
        inputs = self.lm.encode(prompts, padding_side="right").inputs
        if self.dtype is not None:
            inputs = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        return inputs


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


def dpo_trainer_class() -> Any:
    import torch
    from transformers import Trainer

    class DpoTrainer(Trainer):
        """Trainer whose loss is DPO against a reference (disabled adapter or frozen copy)."""

        def __init__(self, *args: Any, beta: float, loss_kind: str, rpo_alpha: float,
                     ref_model: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.beta, self.loss_kind, self.rpo_alpha, self.ref_model = beta, loss_kind, rpo_alpha, ref_model
            self._stats: dict[str, list[float]] = {}

        def _reference_logps(self, model: Any, inputs: dict[str, Any]) -> Any:
            with torch.no_grad():
                if self.ref_model is not None:
                    logits = self.ref_model(**inputs).logits
                else:
                    with self.accelerator.unwrap_model(model).disable_adapter():
                        logits = model(**inputs).logits
            return sequence_logps(logits, inputs["labels"])[0]

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
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
            for name, value in (
                ("rewards/chosen", chosen_reward.mean()),
                ("rewards/rejected", rejected_reward.mean()),
                ("rewards/margins", (chosen_reward - rejected_reward).mean()),
                ("rewards/accuracies", (chosen_reward > rejected_reward).float().mean()),
                ("logps/chosen", logps[:half].detach().mean()),
                ("logps/rejected", logps[half:].detach().mean()),
            ):
                self._stats.setdefault(name, []).append(float(value))
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._stats:
                logs = {**logs, **{k: sum(v) / len(v) for k, v in self._stats.items()}}
                self._stats = {}
            super().log(logs, *args, **kwargs)

    return DpoTrainer


def run(cfg: DpoConfig) -> DpoResult:
    """Train DPO, then write the adapter (or merged checkpoint) + processor + speechsum.json."""
    start = time.perf_counter()
    if cfg.loss not in LOSSES:
        raise InputError(f"--loss must be one of {', '.join(LOSSES)}, got '{cfg.loss}'.")
    if cfg.beta <= 0:
        raise InputError(f"--beta must be > 0, got {cfg.beta}.")
    if cfg.on_long_audio not in sft.LONG_AUDIO_CHOICES:
        raise InputError(f"--on-long-audio must be one of {', '.join(sft.LONG_AUDIO_CHOICES)}.")
    if cfg.merge and cfg.full:
        raise InputError("--merge applies to LoRA training; --full already writes a full checkpoint.")
    check_output_dir(cfg.out, overwrite=cfg.overwrite)
    precision = sft.resolve_precision(cfg.precision)
    rows = load_rows(cfg.pairs, split=cfg.split)
    durations = check_pairs(rows, cfg.pairs)

    from accelerate import PartialState

    from speechsum_cli.families import adapter_base, load, resolve_source

    work_dir = sft.work_dir_for(cfg.out)
    args = sft.to_training_args(cfg, work_dir, precision=precision, has_eval=False)
    _ = args.device  # sets up the process group under torchrun before PartialState (as in sft)
    state = PartialState()
    resume_from = sft.plan_resume(cfg, work_dir, state.is_main_process)
    source = resolve_source(cfg.ckpt)
    lm = load(source, device="cpu", dtype="float32" if precision == "fp32" or cfg.full else precision)
    reference = str(Path(source).resolve()) if Path(source).exists() else cfg.ckpt
    if adapter_base(source) is not None:
        from speechsum_cli.console import info

        info(f"'{cfg.ckpt}' is an adapter: merged into its base; the merged weights are the reference.")
    window = lm.window_seconds
    keep, truncate, counts = sft.long_audio_plan(rows["id"], durations, window, cfg.on_long_audio, cfg.pairs)
    counts = {"pairs_in": len(rows), **counts}
    kept = rows.select(keep)
    longer = [c if len(c) >= len(r) else r for c, r in zip(kept["chosen"], kept["rejected"])]
    lengths = sft.estimate_lengths(lm, kept["query"], longer, [durations[i] for i in keep], window)
    from datasets import Dataset

    train_ds = Dataset.from_dict({
        "id": kept["id"], "audio": kept["audio"], "query": kept["query"], "chosen": kept["chosen"],
        "rejected": kept["rejected"], "length": lengths,
    })
    counts["train_pairs"] = len(train_ds)

    from transformers import PrinterCallback, ProgressCallback, set_seed

    set_seed(cfg.seed)
    ref_model = None
    if cfg.full:
        import copy

        ref_model = copy.deepcopy(lm.model).eval().requires_grad_(False)
    model = sft.prepare_model(lm.model, lm.family, cfg, reference)
    groups = sft.parameter_groups(model, lm.family)
    if state.is_main_process:
        sft.print_parameter_table(groups)
    if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    trainer = dpo_trainer_class()(
        model=model, args=args, train_dataset=train_ds,
        data_collator=PairCollator(lm, window, dtype=next(lm.model.parameters()).dtype),
        callbacks=[sft._log_callback()], beta=cfg.beta, loss_kind=cfg.loss, rpo_alpha=cfg.rpo_alpha,
        ref_model=ref_model,
    )
    # The loss is a mean over this micro-batch's pairs: let the Trainer divide it by the
    # accumulation steps (the model's forward takes **kwargs, which would make it skip that).
    trainer.model_accepts_loss_kwargs = False
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    metrics = dpo_metrics(trainer, output)
    if trainer.is_world_process_zero():
        with atomic_output_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
            final = model.merge_and_unload() if cfg.merge else model
            final.save_pretrained(tmp)
            lm.processor.save_pretrained(tmp)
            write_manifest(
                tmp, stage="dpo", config=cfg, inputs=[cfg.pairs, source], counts=counts, metrics=metrics,
                wall_time=round(time.perf_counter() - start, 2),
                extra={"reference_model": reference, "base_model": reference,
                       "output": "merged" if cfg.merge else ("full" if cfg.full else "adapter"),
                       "parameters": [vars(g) for g in groups], "window_seconds": window,
                       "world_size": state.num_processes},
            )
        shutil.rmtree(work_dir, ignore_errors=True)
    state.wait_for_everyone()
    return DpoResult(cfg.out, counts, metrics, groups)


def dpo_metrics(trainer: Any, output: Any) -> dict[str, Any]:
    logs = [h for h in trainer.state.log_history if "rewards/margins" in h]
    metrics: dict[str, Any] = {"global_step": int(trainer.state.global_step),
                               "train_loss_mean": float(output.training_loss)}
    for key in ("rewards/margins", "rewards/accuracies", "loss"):
        if logs:
            metrics[f"{key}_first"] = float(logs[0][key])
            metrics[f"{key}_last"] = float(logs[-1][key])
    return metrics
