"""``sft``: supervised fine-tuning of an audio LLM on (audio, query) -> summary rows.

The paper's stage 1 defaults: audio encoder frozen, projector trainable, LoRA (r=16, alpha=32)
on the language model only; cross-entropy on the summary tokens only (the family's ``encode``
masks the prompt and padding with -100). Batches are grouped by length (audio tokens + text
tokens) so padding stays small. Everything family-specific comes from the family interface, so
any checkpoint whose ``model_type`` has a family trains, including ``speechsum compose`` output.

Training runs in ``.OUT.partial/`` beside ``--out`` (Trainer checkpoints live there, so
``resume`` continues an interrupted run); the final directory appears atomically at the end.

Uses transformers' ``Trainer`` rather than TRL's ``SFTTrainer``: SFTTrainer's value is text
dataset preparation (chat templating, tokenization, packing, completion masks), all of which
would have to be switched off here because audio rows must go through the family's encoder and
placeholder expansion; what remains is Trainer plus metrics computed on ``input_ids`` that do
not account for the audio placeholders.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.console import err_console, info, warn
from speechsum_cli.data.audio import iter_chunks, load_audio, probe
from speechsum_cli.data.dataset import ColumnMap, load_rows, require_columns, rows_with_empty
from speechsum_cli.errors import AudioError, InputError, ModelError
from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest

LONG_AUDIO_CHOICES = ("truncate", "drop", "error")
"""What to do with rows whose audio is longer than the family's window (default: error)."""
SFT_LONG_AUDIO_CHOICES = ("chunk", *LONG_AUDIO_CHOICES)
"""sft also takes ``chunk``: the windows of a long recording fill one prompt, nothing is lost."""
REPORT_CHOICES = ("none", "tensorboard", "wandb")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
SHOWN_IDS = 5
"""Row ids quoted in one error message."""
REQUIRED_COLUMNS = ["audio", "query", "summary"]


@dataclass(frozen=True)
class SftConfig:
    """Settings of one ``speechsum sft`` run."""

    data: Path
    """Training rows (save_to_disk dir, parquet/jsonl) with audio, query, summary."""
    model: str
    """Base checkpoint: local dir, hub id, or an earlier sft adapter dir (merged first)."""
    out: Path
    """Output directory (adapter or full checkpoint + processor + speechsum.json)."""
    split: str | None = None
    """Split of a DatasetDict in ``data``."""
    columns: ColumnMap = field(default_factory=ColumnMap)
    """Names of the user's columns for id/audio/query/summary."""
    eval_data: Path | None = None
    """Separate evaluation rows; eval loss is computed at the end of every epoch/eval step."""
    eval_split: float = 0.0
    """Fraction of ``data`` held out for eval loss (ignored when ``eval_data`` is given)."""
    lora_r: int = 16
    """LoRA rank (paper: 16)."""
    lora_alpha: int = 32
    """LoRA alpha (paper: 32)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    lora_targets: tuple[str, ...] | None = None
    """Module names LoRA wraps inside the language model; default: the family's."""
    train_encoder: bool = False
    """Also train the audio encoder (frozen in the paper)."""
    full: bool = False
    """Full fine-tuning of the language model + projector instead of LoRA."""
    epochs: float = 2.0
    """Passes over the training rows (paper: 2); ignored when max_steps > 0."""
    max_steps: int = -1
    """Stop after this many optimizer steps (> 0 overrides epochs)."""
    lr: float = 1e-4
    """Peak learning rate (linear warmup, then linear decay)."""
    batch_size: int = 4
    """Rows per device per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimizer step."""
    warmup: float = 0.03
    """Warmup: a fraction of the total steps if < 1, else a number of steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    group_by_length: bool = True
    """Batch rows of similar length (audio + text tokens) together to reduce padding."""
    on_long_audio: str = "error"
    """chunk | truncate | drop | error: rows whose audio exceeds the family's window."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (less memory, ~30% slower)."""
    precision: str = "auto"
    """auto (bf16/fp16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16."""
    resume: bool = False
    """Continue from the last checkpoint in ``.OUT.partial/``."""
    merge: bool = False
    """Write a merged full checkpoint instead of the adapter."""
    report_to: str = "none"
    """none | tensorboard | wandb."""
    logging_steps: int = 10
    """Log train loss every this many steps."""
    save_steps: int = 500
    """Write a resumable checkpoint every this many steps."""
    eval_steps: int | None = None
    """Eval every this many steps (default: once per epoch, or at the end with max_steps)."""
    seed: int = 0
    """Seed for initialisation, shuffling and the eval split."""
    num_workers: int = 0
    """DataLoader worker processes that decode audio."""
    overwrite: bool = False
    """Replace an existing ``out`` (and discard an interrupted run in ``.OUT.partial/``)."""


@dataclass
class ParameterGroup:
    name: str
    total: int
    trainable: int


@dataclass
class SftResult:
    out: Path
    counts: dict[str, Any]
    metrics: dict[str, Any]
    parameters: list[ParameterGroup] = field(default_factory=list)


# --- data -----------------------------------------------------------------------------------


def _shown(ids: list[str]) -> str:
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(repr(i) for i in ids[:SHOWN_IDS]) + more


def check_rows(ds: Any, source: Path) -> list[float]:
    """Audio duration of every row; one error naming every bad row id and column."""
    require_columns(
        ds, REQUIRED_COLUMNS, source,
        "sft needs audio, query and summary per row: run 'speechsum synth' first, or map your "
        "columns with --audio-column/--query-column/--summary-column.",
    )
    problems: list[str] = []
    for column in ("query", "summary"):
        empty = rows_with_empty(ds, column)
        if empty:
            problems.append(f"{len(empty)} row(s) with an empty '{column}': ids {_shown(empty)}")
    durations: list[float] = []
    unreadable: list[str] = []
    reasons: list[str] = []
    for row_id, audio in zip(ds["id"], ds["audio"]):
        try:
            if not audio or (isinstance(audio, dict) and not (audio.get("bytes") or audio.get("path"))):
                raise AudioError("no audio in the row")
            found = probe(audio)
            durations.append(found.frames / found.sample_rate)
        except AudioError as exc:
            unreadable.append(row_id)
            reasons.append(f"{row_id!r}: {exc}")
            durations.append(0.0)
    if unreadable:
        problems.append(
            f"{len(unreadable)} row(s) with unreadable 'audio': ids {_shown(unreadable)} "
            f"(first: {reasons[0]})"
        )
    if problems:
        raise InputError(
            f"data '{source}' has rows sft cannot train on: " + "; ".join(problems)
            + ". Fix or remove those rows."
        )
    return durations


def long_audio_plan(
    ids: list[str], durations: list[float], window: float, policy: str, source: Path
) -> tuple[list[int], list[bool], dict[str, int]]:
    """Rows to keep, which of them to truncate, and the counts for speechsum.json.

    ``chunk`` keeps every row whole (the collator splits long audio into windows).
    """
    long_rows = [i for i, d in enumerate(durations) if d > window + 1e-6]
    counts = {"long_audio": len(long_rows), "dropped_long_audio": 0, "truncated_long_audio": 0}
    if policy == "chunk":
        counts["chunked_long_audio"] = len(long_rows)
    if long_rows and policy == "error":
        longest = max(durations[i] for i in long_rows)
        raise InputError(
            f"data '{source}' has {len(long_rows)} row(s) with audio longer than the model's "
            f"{window:g} s window (longest {longest:.1f} s): ids {_shown([ids[i] for i in long_rows])}. "
            "Pass --on-long-audio chunk where the stage offers it (every window in one prompt; "
            "longer sequences), --on-long-audio truncate (train on the first window; the summary "
            "may then mention things the model never hears) or --on-long-audio drop (skip those "
            "rows), or split the recordings before synth."
        )
    keep = list(range(len(ids)))
    truncate = [False] * len(ids)
    if long_rows and policy == "drop":
        dropped = set(long_rows)
        keep = [i for i in keep if i not in dropped]
        counts["dropped_long_audio"] = len(long_rows)
        warn(f"dropped {len(long_rows)} row(s) with audio over the {window:g} s window "
             f"(ids {_shown([ids[i] for i in long_rows])}).")
    elif long_rows and policy == "truncate":
        for i in long_rows:
            truncate[i] = True
        counts["truncated_long_audio"] = len(long_rows)
        warn(f"truncating {len(long_rows)} row(s) to the {window:g} s window "
             f"(ids {_shown([ids[i] for i in long_rows])}).")
    if not keep:
        raise InputError(f"data '{source}': no rows left after dropping long audio.")
    return keep, [truncate[i] for i in keep], counts


def audio_token_curve(lm: Any, window: float) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, audio tokens) at a few durations, to estimate any row's audio token count."""
    sr = lm.sampling_rate
    seconds = np.linspace(min(1.0, window), window, 5)
    tokens = [
        lm.family.audio_features(lm.processor, lm.config, [np.zeros(int(s * sr), np.float32)]).num_tokens[0]
        for s in seconds
    ]
    return seconds, np.asarray(tokens, dtype=np.float64)


def estimate_lengths(
    lm: Any, queries: list[str], summaries: list[str], seconds: list[float], window: float,
    *, chunked: bool = False,
) -> list[int]:
    """Approximate token length of each row: audio tokens + query + summary tokens.

    Audio beyond one window counts as truncated, or with ``chunked`` as whole windows + the rest.
    """
    grid, tokens = audio_token_curve(lm, window)
    tok = lm.tokenizer
    text = tok([f"{q}\n{s}" for q, s in zip(queries, summaries)], add_special_tokens=False)["input_ids"]
    seconds_arr = np.asarray(seconds, dtype=np.float64)
    full = np.floor(seconds_arr / window) if chunked else np.zeros_like(seconds_arr)
    rest = seconds_arr - full * window if chunked else np.minimum(seconds_arr, window)
    audio = full * tokens[-1] + np.where(rest > 0, np.interp(rest, grid, tokens), 0.0)
    return [round(a) + len(t) for a, t in zip(audio, text)]


def build_dataset(
    ds: Any, keep: list[int], truncate: list[bool], lengths: list[int]
) -> Any:
    """The rows the Trainer iterates: id, audio (undecoded), query, summary, truncate, length."""
    from datasets import Dataset

    rows = ds.select(keep)
    return Dataset.from_dict({
        "id": rows["id"],
        "audio": rows["audio"],
        "query": rows["query"],
        "summary": rows["summary"],
        "truncate": truncate,
        "length": lengths,
    })


@dataclass
class SpeechCollator:
    """Decode a batch's audio and encode it with the family: loss only on summary tokens."""

    lm: Any
    """The :class:`SpeechLM` being trained (its family, processor and config)."""
    window: float
    dtype: Any = None
    """Floating model inputs are cast to this (the model's weights' dtype)."""
    chunk: bool = False
    """Audio longer than the window becomes consecutive windows in one prompt (else it is cut)."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        from speechsum_cli.families import Prompt

        sr = self.lm.sampling_rate
        limit = int(self.window * sr)
        prompts = []
        for row in rows:
            try:
                wave = load_audio(row["audio"], sr)
            except AudioError as exc:
                raise AudioError(f"row {row['id']!r}, column 'audio': {exc}") from None
            audio: Any = wave
            if self.chunk and not row["truncate"] and len(wave) > limit:
                audio = [c.samples for c in iter_chunks(row["audio"], sr, self.window)]
            elif len(wave) > limit:  # planned truncation; or resampling added a sample or two
                audio = wave[:limit]
            prompts.append(Prompt(query=row["query"], audio=audio, answer=row["summary"]))
        inputs = self.lm.encode(prompts, padding_side="right").inputs
        if self.dtype is not None:
            inputs = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
        return inputs


def summary_token_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy summed over the summary tokens, divided by the summary tokens in the step.

    ``num_items_in_batch`` is the Trainer's count over every micro-batch of the optimizer step
    (and every process under DDP), so gradient accumulation and data parallelism weight each
    summary token equally, whatever the padding. Without it (eval), the mean over the batch's
    summary tokens. Done here rather than in the model because some families' forward (e.g.
    Qwen2-Audio's) takes ``**kwargs`` yet ignores ``num_items_in_batch``: the Trainer then
    scales their per-batch mean by the world size and skips the division by accumulation steps.
    """
    import torch

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    total = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=-100, reduction="sum",
    )
    count = num_items_in_batch if num_items_in_batch is not None else (shift_labels != -100).sum()
    if torch.is_tensor(count):
        count = count.to(total.device)
    return total / count


# --- what trains ----------------------------------------------------------------------------


def lora_pattern(prefix: str, targets: tuple[str, ...]) -> str:
    """Regex over full module names: ``targets`` inside the language model only."""
    names = "|".join(re.escape(t) for t in targets)
    return rf"^{re.escape(prefix)}\..*\.(?:{names})$"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def grouped_parameters(model: Any, family: Any) -> Iterator[tuple[str, Any]]:
    """(group, parameter) for every weight of ``model``: encoder / projector / LM / LoRA / other."""
    for name, param in model.named_parameters():
        if ".original_module." in name:  # peft's frozen copy of a module it trains in full
            continue
        bare = name.removeprefix("base_model.model.").replace(".modules_to_save.default", "")
        if "lora_" in bare:
            yield "LoRA", param
        elif _under(bare, family.audio_encoder_prefixes):
            yield "encoder", param
        elif _under(bare, family.projector_prefixes):
            yield "projector", param
        elif _under(bare, (family.language_model_prefix,)):
            yield "language model", param
        else:
            yield "other", param


def parameter_groups(model: Any, family: Any) -> list[ParameterGroup]:
    """Total and trainable parameter counts per group: encoder / projector / LM / LoRA / other."""
    groups = {n: ParameterGroup(n, 0, 0) for n in ("encoder", "projector", "language model", "LoRA", "other")}
    for group, param in grouped_parameters(model, family):
        groups[group].total += param.numel()
        if param.requires_grad:
            groups[group].trainable += param.numel()
    return list(groups.values())


def prepare_model(model: Any, family: Any, cfg: SftConfig, base_source: str) -> Any:
    """Freeze/unfreeze per the config and wrap with LoRA; fail if LoRA matched nothing."""
    if cfg.full:
        for name, param in model.named_parameters():
            param.requires_grad = cfg.train_encoder or not _under(name, family.audio_encoder_prefixes)
        return model
    import torch
    from peft import LoraConfig, get_peft_model

    targets = tuple(cfg.lora_targets or family.lora_targets)
    pattern = lora_pattern(family.language_model_prefix, targets)
    matched = [name for name, _ in model.named_modules() if re.match(pattern, name)]
    if not matched:
        lm_names = sorted({
            name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if _under(name, (family.language_model_prefix,)) and type(module).__name__ == "Linear"
        })
        raise ModelError(
            f"LoRA targets {', '.join(targets)} match no module of the language model "
            f"('{family.language_model_prefix}') of '{base_source}', so training would change "
            f"nothing there. Linear layers it has: {', '.join(lm_names) or 'none'}. Pass "
            "--lora-targets with some of those names."
        )
    save = list(family.projector_prefixes) + (list(family.audio_encoder_prefixes) if cfg.train_encoder else [])
    config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=pattern, modules_to_save=save, task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_source
    for param in peft_model.parameters():  # trained weights stay fp32 under a bf16/fp16 base
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return peft_model


def print_parameter_table(groups: list[ParameterGroup]) -> None:
    from rich.table import Table

    table = Table(title="Parameters", title_justify="left")
    for column in ("group", "total", "trainable", "%"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for g in groups:
        if g.total or g.name == "LoRA":
            share = f"{100 * g.trainable / g.total:.1f}" if g.total else "-"
            table.add_row(g.name, f"{g.total:,}", f"{g.trainable:,}", share)
    err_console.print(table)


# --- training -------------------------------------------------------------------------------


def resolve_precision(precision: str) -> str:
    """auto -> bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."""
    import torch

    if precision not in PRECISION_CHOICES:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_CHOICES)}.")
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision in ("bf16", "fp16") and not cuda:
        raise InputError(f"--precision {precision} needs a GPU; none is visible. Use fp32 (or auto).")
    return precision


def to_training_args(cfg: SftConfig, output_dir: Path, *, precision: str, has_eval: bool) -> Any:
    """The one translation of :class:`SftConfig` into transformers ``TrainingArguments``."""
    import torch
    from transformers import TrainingArguments

    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if cfg.eval_steps else ("epoch" if cfg.max_steps <= 0 else "no")
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup if cfg.warmup < 1 else int(cfg.warmup),
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # the collator needs id/audio/query/summary
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=cfg.num_workers,
        disable_tqdm=True,
        log_level="error",
    )


def _log_callback() -> Any:
    from transformers import TrainerCallback

    class StderrLog(TrainerCallback):
        """Training logs on stderr (the Trainer's printer writes dicts to stdout)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            shown = ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in logs.items() if k in ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch")
            )
            if shown:
                info(f"step {state.global_step}/{state.max_steps}: {shown}")

    return StderrLog()


def _gradient_check_callback(model: Any, family: Any) -> Any:
    """Fail at the first optimizer step if a group of trainable weights received no gradient.

    Catches training that silently changes nothing: an adapter on modules the forward pass
    never reaches, a trained copy of a module that is not the one being run.
    """
    from transformers import TrainerCallback

    class GradientCheck(TrainerCallback):
        done = False

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.done:
                return
            self.done = True
            reached: dict[str, bool] = {}
            for group, param in grouped_parameters(model, family):
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

    return GradientCheck()


def last_checkpoint(work_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if work_dir.is_dir() and (found := get_last_checkpoint(str(work_dir))) else None


def work_dir_for(out: Path) -> Path:
    """Where training runs and checkpoints live until the output is complete."""
    return out.parent / f".{out.name}.partial"


RUN_CONFIG_FILE = "sft-config.json"
"""The interrupted run's settings, kept in the work dir so --resume can check them."""
RESUME_FREE_FIELDS = ("resume", "overwrite", "logging_steps", "save_steps", "report_to", "num_workers")
"""Settings a resumed run may change; any other difference would mix two trainings."""


def _resumable_settings(cfg: SftConfig) -> dict[str, Any]:
    settings = json.loads(json.dumps(asdict(cfg), default=str))
    return {k: v for k, v in settings.items() if k not in RESUME_FREE_FIELDS}


def plan_resume(cfg: SftConfig, work_dir: Path, is_main: bool) -> Path | None:
    """The checkpoint to resume from; errors when the request and the work dir disagree."""
    checkpoint = last_checkpoint(work_dir)
    if cfg.resume:
        if checkpoint is None:
            raise InputError(
                f"--resume: no checkpoint in '{work_dir}' to continue from. Run without --resume "
                "to start training."
            )
        saved_file = work_dir / RUN_CONFIG_FILE
        if saved_file.is_file():
            saved, now = json.loads(saved_file.read_text()), _resumable_settings(cfg)
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            if changed:
                detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
                raise InputError(
                    f"--resume with settings that differ from the interrupted run ({detail}). "
                    "Resume with the original settings, or pass --overwrite without --resume "
                    "to start over."
                )
        return checkpoint
    if checkpoint is not None and not cfg.overwrite:
        raise InputError(
            f"'{work_dir}' holds an interrupted run (last checkpoint: {checkpoint.name}). "
            "Pass --resume to continue it, or --overwrite to start over."
        )
    if is_main:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        (work_dir / RUN_CONFIG_FILE).write_text(json.dumps(_resumable_settings(cfg), indent=2) + "\n")
    return None


def _load_inputs(cfg: SftConfig, source: Path, split: str | None) -> Any:
    return load_rows(source, columns=cfg.columns, split=split)


def run(cfg: SftConfig) -> SftResult:
    """Train, then write the adapter (or merged / full checkpoint) + processor + speechsum.json."""
    start = time.perf_counter()
    if cfg.on_long_audio not in SFT_LONG_AUDIO_CHOICES:
        raise InputError(f"--on-long-audio must be one of {', '.join(SFT_LONG_AUDIO_CHOICES)}.")
    if cfg.report_to not in REPORT_CHOICES:
        raise InputError(f"--report-to must be one of {', '.join(REPORT_CHOICES)}.")
    if not 0.0 <= cfg.eval_split < 1.0:
        raise InputError(f"--eval-split must be in [0, 1); got {cfg.eval_split}.")
    if cfg.merge and cfg.full:
        raise InputError("--merge applies to LoRA training; --full already writes a full checkpoint.")
    check_output_dir(cfg.out, overwrite=cfg.overwrite)
    precision = resolve_precision(cfg.precision)

    # Inputs are checked before any model is loaded.
    train_rows = _load_inputs(cfg, cfg.data, cfg.split)
    train_seconds = check_rows(train_rows, cfg.data)
    eval_rows = eval_seconds = None
    if cfg.eval_data is not None:
        eval_rows = _load_inputs(cfg, cfg.eval_data, None)
        eval_seconds = check_rows(eval_rows, cfg.eval_data)

    from accelerate import PartialState

    from speechsum_cli.families import adapter_base, load, resolve_source

    work_dir = work_dir_for(cfg.out)
    has_eval = cfg.eval_data is not None or cfg.eval_split > 0
    args = to_training_args(cfg, work_dir, precision=precision, has_eval=has_eval)
    _ = args.device  # sets up the process group under torchrun / accelerate launch
    state = PartialState()
    resume_from = plan_resume(cfg, work_dir, state.is_main_process)

    source = resolve_source(cfg.model)
    lm = load(source, device="cpu", dtype="float32" if precision == "fp32" or cfg.full else precision)
    base_source = cfg.model if not Path(cfg.model).exists() else str(Path(cfg.model).resolve())
    if adapter_base(source) is not None:  # continue from an earlier sft adapter: already merged
        base_source = str(Path(source).resolve())
        info(f"'{cfg.model}' is an adapter: merged into its base, a new LoRA trains on top.")
    window = lm.window_seconds

    counts: dict[str, Any] = {"rows_in": len(train_rows)}
    keep, truncate, long_counts = long_audio_plan(
        train_rows["id"], train_seconds, window, cfg.on_long_audio, cfg.data
    )
    counts.update(long_counts)
    seconds = [train_seconds[i] for i in keep]
    kept = train_rows.select(keep)
    chunked = cfg.on_long_audio == "chunk"
    lengths = estimate_lengths(lm, kept["query"], kept["summary"], seconds, window, chunked=chunked)
    train_ds = build_dataset(train_rows, keep, truncate, lengths)
    eval_ds = None
    if eval_rows is not None:
        e_keep, e_trunc, e_counts = long_audio_plan(
            eval_rows["id"], eval_seconds, window, cfg.on_long_audio, cfg.eval_data
        )
        counts["eval_rows_in"] = len(eval_rows)
        counts.update({f"eval_{k}": v for k, v in e_counts.items()})
        e_kept = eval_rows.select(e_keep)
        e_lengths = estimate_lengths(
            lm, e_kept["query"], e_kept["summary"], [eval_seconds[i] for i in e_keep], window,
            chunked=chunked,
        )
        eval_ds = build_dataset(eval_rows, e_keep, e_trunc, e_lengths)
    elif cfg.eval_split > 0:
        if len(train_ds) < 2:
            raise InputError(f"--eval-split needs at least 2 rows; data '{cfg.data}' has {len(train_ds)}.")
        split = train_ds.train_test_split(test_size=cfg.eval_split, seed=cfg.seed)
        train_ds, eval_ds = split["train"], split["test"]
    counts["train_rows"] = len(train_ds)
    counts["eval_rows"] = len(eval_ds) if eval_ds is not None else 0
    counts["train_audio_hours"] = round(sum(seconds) / 3600, 4)

    from transformers import set_seed

    set_seed(cfg.seed)  # LoRA's initialisation happens here, before the Trainer seeds anything
    base_dtype = lm.model.dtype
    model = prepare_model(lm.model, lm.family, cfg, base_source)
    groups = parameter_groups(model, lm.family)
    if state.is_main_process:
        print_parameter_table(groups)
    if cfg.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()

    from transformers import PrinterCallback, ProgressCallback, Trainer

    collator = SpeechCollator(lm, window, dtype=base_dtype, chunk=chunked)
    trainer = Trainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=collator, compute_loss_func=summary_token_loss,
        callbacks=[_log_callback()],
    )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):  # sharded grads: skip
        trainer.add_callback(_gradient_check_callback(model, lm.family))
    if state.is_main_process:
        info(f"training on {len(train_ds)} rows" + (f", {len(eval_ds)} eval rows" if eval_ds else "")
             + (f"; resuming from {resume_from.name}" if resume_from else "") + f" ({work_dir})")
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    metrics = _metrics(trainer, output)
    if resume_from is not None:
        metrics["resumed_from_step"] = int(resume_from.name.rsplit("-", 1)[-1])
    if eval_ds is not None:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])

    # Every rank takes part: FSDP/DeepSpeed gather the full weights inside save_model.
    saved = work_dir / "final"
    trainer.save_model(str(saved))
    if trainer.is_world_process_zero():
        with atomic_output_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
            if cfg.merge:
                write_merged(lm, saved, tmp)
            else:
                for item in saved.iterdir():
                    if item.name != TRAINER_ARGS_FILE:
                        shutil.move(str(item), tmp / item.name)
            lm.processor.save_pretrained(tmp)
            write_manifest(
                tmp, stage="sft", config=cfg,
                inputs=[cfg.data, *([cfg.eval_data] if cfg.eval_data else []), source],
                counts=counts, metrics=metrics, wall_time=round(time.perf_counter() - start, 2),
                extra={
                    "base_model": base_source,
                    "output": "merged" if cfg.merge else ("full" if cfg.full else "adapter"),
                    "parameters": [vars(g) for g in groups],
                    "window_seconds": window,
                    "world_size": state.num_processes,
                },
            )
        shutil.rmtree(work_dir, ignore_errors=True)
    state.wait_for_everyone()
    return SftResult(cfg.out, counts, metrics, groups)


TRAINER_ARGS_FILE = "training_args.bin"
"""A pickle the Trainer writes beside saved models; not part of a checkpoint (the config is in
speechsum.json)."""


def write_merged(lm: Any, adapter_dir: Path, out: Path) -> None:
    """A full checkpoint: the saved adapter merged into a fresh copy of the base weights.

    Merging the saved adapter (rather than the in-memory model) works the same under DDP, FSDP
    and DeepSpeed, whose in-memory weights may be sharded.
    """
    from speechsum_cli.families import attach_adapter, load

    base = load(lm.source, device="cpu", dtype=str(lm.model.dtype).removeprefix("torch."))
    attach_adapter(base.model, str(adapter_dir)).save_pretrained(out)


def _metrics(trainer: Any, output: Any) -> dict[str, Any]:
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    metrics: dict[str, Any] = {
        "global_step": int(trainer.state.global_step),
        "train_loss_mean": float(output.training_loss),
    }
    if losses:
        metrics["train_loss_first"] = float(losses[0][1])
        metrics["train_loss_last"] = float(losses[-1][1])
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    if evals:
        metrics["eval_loss_history"] = [float(e) for e in evals]
    return metrics if all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)) else {
        **metrics, "warning": "non-finite loss"}
