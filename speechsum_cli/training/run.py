"""A training run's setup and finish, the same for every training stage.

Training runs in ``.OUT.partial/`` beside ``--out`` (the Trainer's checkpoints live there); the
final directory appears atomically at the end, and the work dir is removed.

**Resume rule** (every stage, synth included): an interrupted run continues when the same
command is run again. The work dir keeps the interrupted run's settings; a re-run with the same
settings resumes from the last checkpoint, a re-run with different ones is refused (naming
them) unless ``--restart`` (or ``--overwrite``) discards the interrupted run. ``--resume``
insists on continuing: it is an error when there is nothing to continue.

**Saving** goes through ``Trainer.save_model`` on every rank, so FSDP and DeepSpeed gather the
full weights; ``--merge`` merges the *saved* adapter into a fresh copy of the base, which works
the same whatever the in-memory model's sharding.

**Every output loads without speechsum.** An adapter names a base plain ``from_pretrained``
understands: a run that started from an adapter also writes the merged starting weights (a fresh
load, not the trained in-memory model) as a full checkpoint in ``OUT/base/`` and the adapter
names ``./base``; a local starting checkpoint beside the output is named relative to it, one
elsewhere by its absolute path, a hub id as given
(:func:`speechsum_cli.families.model.recorded_base`).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.console import info
from speechsum_cli.data.workdir import work_dir_for
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError
from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest
from speechsum_cli.training.model import training_dtype, write_adapter_base, write_merged
from speechsum_cli.training.settings import (
    RESUME_FREE_FIELDS,
    LongAudio,
    ReportTo,
    TrainSettings,
    check_settings,
)

RUN_CONFIG_FILE = "run-config.json"
"""The interrupted run's settings, kept in the work dir so a re-run can check them."""
TRAINER_ARGS_FILE = "training_args.bin"
"""A pickle the Trainer writes beside saved models; not part of a checkpoint (the config is in
speechsum.json)."""


def check_run(train: TrainSettings, out: Path, *, long_audio: tuple[LongAudio, ...] = tuple(LongAudio)) -> Dtype:
    """Settings, output dir and dtype checked before any input or model is read; the dtype the
    run trains in."""
    check_settings(train, long_audio=long_audio)
    check_output_dir(out, overwrite=train.overwrite)
    return training_dtype(train.dtype)


def to_training_args(train: TrainSettings, output_dir: Path, *, dtype: Dtype, has_eval: bool) -> Any:
    """The one translation of :class:`TrainSettings` into transformers ``TrainingArguments``."""
    import torch
    from transformers import TrainingArguments

    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if train.eval_steps else ("epoch" if train.max_steps <= 0 else "no")
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        learning_rate=train.lr,
        warmup_steps=train.warmup if train.warmup < 1 else int(train.warmup),
        weight_decay=train.weight_decay,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # the collators need the raw rows
        eval_strategy=eval_strategy,
        eval_steps=train.eval_steps,
        logging_steps=train.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=2,
        activation_checkpointing=train.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
        bf16=dtype is Dtype.bfloat16,
        fp16=dtype is Dtype.float16,
        use_cpu=not torch.cuda.is_available(),
        report_to=[] if train.report_to is ReportTo.none else [train.report_to.value],
        seed=train.seed,
        data_seed=train.seed,
        dataloader_num_workers=train.num_workers,
        disable_tqdm=True,
        log_level="error",
    )


def last_checkpoint(work_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if work_dir.is_dir() and (found := get_last_checkpoint(str(work_dir))) else None


def run_fingerprint(config: Any) -> dict[str, Any]:
    """The settings that decide what a run trains (a stage config with a ``train`` field)."""
    settings = json.loads(json.dumps(asdict(config), default=str))  # enums are str: their values
    train = {k: v for k, v in settings.pop("train", {}).items() if k not in RESUME_FREE_FIELDS}
    return {**settings, **{f"train.{k}": v for k, v in train.items()}}


def plan_resume(config: Any, train: TrainSettings, work_dir: Path, is_main: bool) -> Path | None:
    """The checkpoint to continue from (None: a fresh start), per the resume rule above."""
    checkpoint = last_checkpoint(work_dir)
    now = run_fingerprint(config)
    if checkpoint is not None and not (train.restart or train.overwrite):
        saved_file = work_dir / RUN_CONFIG_FILE
        saved = json.loads(saved_file.read_text()) if saved_file.is_file() else now
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise InputError(
                f"'{work_dir}' holds an interrupted run (last checkpoint: {checkpoint.name}) with "
                f"other settings ({detail}). Re-run with the original settings to continue it, or "
                "pass --restart to discard it and start over."
            )
        return checkpoint
    if train.resume:
        raise InputError(
            f"--resume: no checkpoint in '{work_dir}' to continue from. Run without --resume to "
            "start training (a re-run of an interrupted command resumes by itself)."
        )
    if is_main:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        (work_dir / RUN_CONFIG_FILE).write_text(json.dumps(now, indent=2) + "\n")
    return None


@dataclass
class TrainResult:
    """What a training stage returns: where its output is, its counts and metrics."""

    out: Path
    counts: dict[str, Any]
    metrics: dict[str, Any]
    parameters: list[Any] = field(default_factory=list)
    """The parameter groups (encoder / projector / LM / LoRA) with total and trainable counts."""


@dataclass
class TrainingRun:
    """An open run: where it trains, its Trainer arguments, and where it resumes from."""

    out: Path
    work_dir: Path
    args: Any
    state: Any
    """accelerate's ``PartialState`` (process rank, world size)."""
    resume_from: Path | None
    dtype: Dtype
    """The dtype it trains in (resolved: never auto)."""
    started: float
    feature_cache: Any = None
    """The stage's :class:`~speechsum_cli.inference.feature_cache.FeatureCache`, if it uses one."""

    def use_feature_cache(self, model: Any, family: Any, train: TrainSettings) -> None:
        """Serve ``model``'s frozen encoder from the feature cache (unless switched off)."""
        from speechsum_cli.inference.feature_cache import cache_for_training

        self.feature_cache = cache_for_training(
            model,
            family,
            self.out,
            enabled=train.feature_cache,
            directory=train.feature_cache_dir,
            max_gb=train.feature_cache_gb,
            train_encoder=train.train_encoder,
        )

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    @property
    def resume_argument(self) -> str | None:
        return str(self.resume_from) if self.resume_from else None

    def model_dtype(self, train: TrainSettings) -> Dtype:
        """The dtype to load the trained model in (float32 for full fine-tuning and on CPU)."""
        return Dtype.float32 if train.full else self.dtype


def start_run(
    config: Any, train: TrainSettings, out: Path, dtype: Dtype, *, has_eval: bool = False, started: float | None = None
) -> TrainingRun:
    """Trainer arguments, the process group (torchrun / accelerate launch) and the resume plan."""
    from accelerate import PartialState

    work_dir = work_dir_for(out)
    args = to_training_args(train, work_dir, dtype=dtype, has_eval=has_eval)
    _ = args.device  # sets up the process group under torchrun / accelerate launch
    state = PartialState()
    resume_from = plan_resume(config, train, work_dir, state.is_main_process)
    if resume_from is not None and state.is_main_process:
        info(f"resuming the interrupted run from {resume_from.name} ({work_dir})")
    return TrainingRun(
        out, work_dir, args, state, resume_from, dtype, time.perf_counter() if started is None else started
    )


def train_metrics(trainer: Any, output: Any, run: TrainingRun, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Steps, mean loss, the first and last logged value of the loss and of ``keys``, evals."""
    history = trainer.state.log_history
    metrics: dict[str, Any] = {
        "global_step": int(trainer.state.global_step),
        "train_loss_mean": float(output.training_loss),
    }
    for key in ("loss", *keys):
        values = [h[key] for h in history if key in h and "train_runtime" not in h]
        if values:
            metrics[f"{key}_first"] = float(values[0])
            metrics[f"{key}_last"] = float(values[-1])
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    if evals:
        metrics["eval_loss_history"] = [float(e) for e in evals]
    if run.resume_from is not None:
        metrics["resumed_from_step"] = int(run.resume_from.name.rsplit("-", 1)[-1])
    if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
        metrics["warning"] = "non-finite loss"
    return metrics


def finish_run(
    trainer: Any,
    run: TrainingRun,
    lm: Any,
    *,
    stage: str,
    config: Any,
    train: TrainSettings,
    inputs: list[Any],
    counts: dict[str, Any],
    metrics: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Save (every rank: FSDP/DeepSpeed gather inside), then write ``--out`` atomically on rank 0."""
    saved = run.work_dir / "final"
    trainer.save_model(str(saved))
    if trainer.is_world_process_zero():
        output = "merged" if train.merge else ("full" if train.full else "adapter")
        from speechsum_cli.families.compression import carry as carry_compression

        with atomic_output_dir(run.out, overwrite=train.overwrite) as tmp:
            recorded: dict[str, Any] = {}
            if train.merge:
                write_merged(lm, saved, tmp)
            else:
                for item in saved.iterdir():
                    if item.name != TRAINER_ARGS_FILE:
                        shutil.move(str(item), tmp / item.name)
                if output == "adapter":
                    dtype = run.model_dtype(train)
                    recorded["adapter_base"] = write_adapter_base(lm, tmp, run.out, dtype)
            lm.processor.save_pretrained(tmp)
            carry_compression(getattr(lm, "compressor", None), tmp)
            if run.feature_cache is not None:
                from speechsum_cli.inference.feature_cache import report

                recorded["feature_cache"] = report(run.feature_cache)
            write_manifest(
                tmp,
                stage=stage,
                config=config,
                inputs=inputs,
                counts=counts,
                metrics=metrics,
                wall_time=round(time.perf_counter() - run.started, 2),
                extra={**extra, **recorded, "output": output, "world_size": run.state.num_processes},
            )
        shutil.rmtree(run.work_dir, ignore_errors=True)
    run.state.wait_for_everyone()
