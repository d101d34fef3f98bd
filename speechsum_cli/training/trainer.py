"""``SpeechTrainer``: transformers' ``Trainer`` with what every speech training stage needs.

* training logs on stderr (the Trainer's printer writes dicts to stdout), one line per logging
  step, and a second line with the stage's own statistics (``step_log_keys``);
* per-step statistics a stage records in its loss (:meth:`SpeechTrainer.record`), averaged
  over the logging interval and merged into the Trainer's logs (and so into trackers);
* the first-step gradient check: a group of trainable weights that receives no gradient is a
  failure, not a silent no-op;
* :func:`answer_token_loss`, cross-entropy on the answer tokens weighted per token across
  gradient accumulation and processes.

Uses transformers' ``Trainer`` rather than TRL's trainers: those prepare text (chat templating,
tokenization, packing) and have no audio path (no feature extraction, no placeholder
expansion), which is the whole difficulty here.
"""

from __future__ import annotations

import warnings
from typing import Any

from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

from speechsum_cli.console import info
from speechsum_cli.errors import ModelError
from speechsum_cli.training.model import grouped_parameters

PEFT_NO_BASE_CONFIG = r"Could not find a config file in .* - will assume that the vocabulary was not modified"
MAIN_LOG_KEYS = ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch")
"""Shown on each step's first log line."""


def _format(logs: dict[str, Any], keys: tuple[str, ...]) -> str:
    return ", ".join(
        f"{k} {logs[k]:.4g}" if isinstance(logs[k], float) else f"{k} {logs[k]}" for k in keys if k in logs
    )


class StderrLog(TrainerCallback):
    """Each logging step on stderr: the loss line, then the stage's statistics."""

    def __init__(self, step_log_keys: tuple[str, ...]) -> None:
        self.step_log_keys = step_log_keys
        self.last_step: int | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "loss" not in logs and "eval_loss" not in logs:  # the end-of-training summary
            return
        main = _format(logs, MAIN_LOG_KEYS)
        if state.global_step == self.last_step:  # a second log of the same step (eval): no second header
            info("  " + main)
        else:
            info(f"step {state.global_step}/{state.max_steps}: {main}")
        self.last_step = state.global_step
        stats = _format(logs, self.step_log_keys)
        if stats:
            info("  " + stats)


class GradientCheck(TrainerCallback):
    """Fail at the first optimizer step if a group of trainable weights received no gradient.

    Catches training that silently changes nothing: an adapter on modules the forward pass
    never reaches, a trained copy of a module that is not the one being run.
    """

    def __init__(self, model: Any, family: Any) -> None:
        self.model, self.family, self.done = model, family, False

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.done:
            return
        self.done = True
        reached: dict[str, bool] = {}
        for group, param in grouped_parameters(self.model, self.family):
            if param.requires_grad:
                got = param.grad is not None and bool(param.grad.detach().abs().sum() > 0)
                reached[group] = reached.get(group, False) or got
        missed = sorted(group for group, got in reached.items() if not got)
        if missed:
            raise ModelError(
                f"trainable weights of {', '.join(missed)} received no gradient in the first "
                "step: training would not change them. This is a bug in the model family's "
                "setup; please report it with the model's model_type."
            )


class EpochSeededLengthGroupedSampler:
    """transformers' length-grouped order, drawn from ``seed + epoch`` instead of the global RNG.

    The stock ``LengthGroupedSampler`` permutes with the global generator when its iterator is made,
    so a run resumed inside an epoch (a fresh process, or the RNG where the crash left it) followed
    another order than the one it interrupted, and skipping the trained batches skipped other rows.
    The Trainer calls :meth:`set_epoch` before each epoch, as for the seedable random sampler."""

    def __init__(self, sampler: Any, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = sampler.lengths, sampler.batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Any:
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class SpeechTrainer(Trainer):
    """The Trainer every training stage subclasses (or uses as is, with ``compute_loss_func``).

    ``family`` is the model's :class:`AudioFamily` (for the gradient check's parameter groups).
    A subclass sets ``step_log_keys`` to the statistics it records and wants on stderr.
    """

    step_log_keys: tuple[str, ...] = ()

    def __init__(self, *args: Any, family: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for noisy in (PrinterCallback, ProgressCallback):
            self.remove_callback(noisy)
        self.add_callback(StderrLog(self.step_log_keys))
        if not (self.is_fsdp_enabled or self.is_deepspeed_enabled):  # sharded grads: skip
            self.add_callback(GradientCheck(self.model, family))
        self._stats: dict[str, list[float]] = {}

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """The stock sampler, except that a length-grouped order depends only on the seed and the epoch
        (:class:`EpochSeededLengthGroupedSampler`): a resumed run repeats the interrupted one exactly."""
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthGroupedSampler(sampler, seed)
        return sampler

    def record(self, stats: dict[str, float]) -> None:
        """Keep this micro-batch's statistics until the next log (then their mean is logged)."""
        for name, value in stats.items():
            self._stats.setdefault(name, []).append(float(value))

    def _save(self, *args: Any, **kwargs: Any) -> None:
        """Every save (checkpoints, the final model), without peft's note on an adapter whose base
        was merged from another adapter dir: that dir has no config.json, the vocabulary is the
        base's own, and peft assumes exactly that — there is nothing to act on."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=PEFT_NO_BASE_CONFIG, category=UserWarning)
            return super()._save(*args, **kwargs)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._stats:
            logs = {**logs, **{k: sum(v) / len(v) for k, v in self._stats.items()}}
            self._stats = {}
        super().log(logs, *args, **kwargs)


def answer_token_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy summed over the answer tokens, divided by the answer tokens in the step.

    ``num_items_in_batch`` is the Trainer's count over every micro-batch of the optimizer step
    (and every process under DDP), so gradient accumulation and data parallelism weight each
    answer token equally, whatever the padding. Without it (eval), the mean over the batch's
    answer tokens. Done here rather than in the model because some families' forward (e.g.
    Qwen2-Audio's) takes ``**kwargs`` yet ignores ``num_items_in_batch``: the Trainer then
    scales their per-batch mean by the world size and skips the division by accumulation steps.
    """
    import torch

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    total = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (shift_labels != -100).sum()
    if torch.is_tensor(count):
        count = count.to(total.device)
    return total / count
