"""The one option vocabulary: a flag that means the same thing in two commands is defined here.

Typer ``Annotated`` aliases (as the ``hf`` CLI keeps its shared options), plus
:func:`train_options`, which gives sft, distill and dpo the same training flags — names, short
flags, help and defaults — from :class:`~speechsum_cli.training.settings.TrainSettings`; a
stage whose default differs says why in its help (``DEFAULT_REASONS``).

Old spellings keep working for one release: a hidden option (:func:`deprecated_option`) or a
value alias (``--precision bf16``) prints a deprecation note on stderr and maps to the new one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.training.settings import (
    DEFAULT_REASONS,
    DISTILL_DEFAULTS,
    DPO_DEFAULTS,
    DTYPE_ALIASES,
    SFT_DEFAULTS,
    Precision,
    ReportTo,
    TrainSettings,
)

TRAINING_PANEL = "Training (shared by sft, distill, dpo)"
COLUMNS_PANEL = "Column mapping"


def deprecation(old: str, new: str) -> None:
    from speechsum_cli.console import warn

    warn(f"{old} is deprecated and will be removed in the next release; use {new}.")


# --- the shared options ----------------------------------------------------------------------

MODEL_HELP = ("Starting checkpoint: local dir, hub id or hub_id@revision (an adapter dir is merged "
              "into its base).")


def model_option(help: str = MODEL_HELP, *extra: str) -> Any:
    """``--model/-m``, the checkpoint a stage starts from; ``--ckpt`` is its synonym everywhere."""
    return typer.Option("--model", "-m", "--ckpt", *extra, help=help, show_default=False)


def data_option(help: str) -> Any:
    return typer.Option("--data", "-d", help=help, show_default=False)


def out_option(help: str) -> Any:
    return typer.Option("--out", "-o", help=help, show_default=False)


Json = Annotated[bool, typer.Option("--json", help="Print the result (path, counts, metrics) as JSON on stdout.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")]
Split = Annotated[Optional[str], typer.Option(help="Split of a saved DatasetDict in --data.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")]


def normalize_dtype(value: str) -> str:
    """The dtype vocabulary (auto, float32, bfloat16, float16); fp32/bf16/fp16 are deprecated."""
    if value in DTYPE_ALIASES:
        deprecation(f"the dtype '{value}'", f"'{DTYPE_ALIASES[value]}'")
        return DTYPE_ALIASES[value]
    allowed = [p.value for p in Precision]
    if value not in allowed:
        raise typer.BadParameter(f"'{value}' is not one of {', '.join(allowed)}.")
    return value


DTYPE_HELP = "auto (bfloat16/float16 on GPU, float32 on CPU), float32, bfloat16 or float16."
Dtype = Annotated[str, typer.Option(help=DTYPE_HELP, callback=normalize_dtype)]


@dataclass(frozen=True)
class ColumnOptions:
    """Which of the contract columns a stage's ``--X-column`` flags map."""

    names: tuple[str, ...]


def column_params(names: tuple[str, ...]) -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            f"{name}_column", inspect.Parameter.KEYWORD_ONLY, default=name,
            annotation=Annotated[str, typer.Option(f"--{name}-column", help=f"Column holding the {name}.",
                                                   rich_help_panel=COLUMNS_PANEL)],
        )
        for name in names
    ]


# --- training options ------------------------------------------------------------------------

STAGE_DEFAULTS = {"sft": SFT_DEFAULTS, "distill": DISTILL_DEFAULTS, "dpo": DPO_DEFAULTS}


def _train_option_specs() -> dict[str, tuple[Any, tuple[str, ...], str, dict[str, Any]]]:
    """field -> (CLI type, flag names, help, extra typer.Option arguments)."""
    return {
        "epochs": (float, ("--epochs",), "Passes over the rows (ignored with --max-steps).", {"min": 0.0}),
        "max_steps": (int, ("--max-steps",), "Optimizer steps; > 0 overrides --epochs.", {}),
        "lr": (float, ("--lr",), "Peak learning rate (linear warmup, then linear decay).", {"min": 0.0}),
        "batch_size": (int, ("--batch-size",), "Rows per device per forward pass.", {"min": 1}),
        "grad_accum": (int, ("--grad-accum",), "Forward passes per optimizer step.", {"min": 1}),
        "warmup": (float, ("--warmup",), "Warmup: a fraction of the steps if < 1, else a number of steps.", {"min": 0.0}),
        "weight_decay": (float, ("--weight-decay",), "AdamW weight decay.", {"min": 0.0}),
        "lora_r": (int, ("--lora-r",), "LoRA rank (paper: 16).", {"min": 1}),
        "lora_alpha": (int, ("--lora-alpha",), "LoRA alpha (paper: 32).", {"min": 1}),
        "lora_dropout": (float, ("--lora-dropout",), "Dropout on the LoRA branch.", {"min": 0.0, "max": 1.0}),
        "lora_targets": (Optional[str], ("--lora-targets",), "Comma-separated module names inside the language model  \\[default: the family's].", {"show_default": False}),
        "train_encoder": (bool, ("--train-encoder",), "Also train the audio encoder (frozen in the paper).", {}),
        "full": (bool, ("--full",), "Full fine-tuning of the LM + projector instead of LoRA.", {}),
        "merge": (bool, ("--merge",), "Write a merged full checkpoint instead of the adapter.", {}),
        "on_long_audio": (LongAudio, ("--on-long-audio",), "Rows with audio over the model's window: error, chunk (all windows in one prompt), truncate or drop (both counted).", {}),
        "group_by_length": (bool, ("--group-by-length/--no-group-by-length",), "Batch rows of similar length together (less padding).", {}),
        "gradient_checkpointing": (bool, ("--gradient-checkpointing",), "Recompute activations in backward: less memory, ~30% slower.", {}),
        "precision": (str, ("--precision",), DTYPE_HELP, {"callback": normalize_dtype}),
        "seed": (int, ("--seed",), "Seed for initialisation, shuffling, sampling and splits.", {}),
        "resume": (bool, ("--resume",), "Insist on continuing an interrupted run (a re-run of the same command resumes by itself).", {}),
        "restart": (bool, ("--restart",), "Discard an interrupted run and start over.", {}),
        "overwrite": (bool, ("--overwrite",), "Replace an existing --out (and discard an interrupted run).", {}),
        "report_to": (ReportTo, ("--report-to",), "Experiment tracker.", {}),
        "logging_steps": (int, ("--logging-steps",), "Log the loss and the stage's statistics every N steps.", {"min": 1}),
        "save_steps": (int, ("--save-steps",), "Resumable checkpoint every N steps.", {"min": 1}),
        "eval_steps": (Optional[int], ("--eval-steps",), "Eval every N steps  \\[default: every epoch, or at the end with --max-steps].", {"min": 1, "show_default": False}),
        "num_workers": (int, ("--num-workers",), "DataLoader worker processes decoding audio.", {"min": 0}),
    }


TRAIN_FLAGS = tuple(_train_option_specs())


def _train_params(stage: str) -> list[inspect.Parameter]:
    defaults, reasons = STAGE_DEFAULTS[stage], DEFAULT_REASONS.get(stage, {})
    params = []
    for name, (kind, flags, help, extra) in _train_option_specs().items():
        default = getattr(defaults, name)
        if name in reasons and default != getattr(SFT_DEFAULTS, name):
            help = f"{help} (Here {default!r}: {reasons[name]}.)"
        if name == "precision":
            default = Precision(default).value
        option = typer.Option(*flags, help=help, rich_help_panel=TRAINING_PANEL, **extra)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, option]))
    return params


def _settings_from(values: dict[str, Any]) -> TrainSettings:
    targets = values.pop("lora_targets")
    values["lora_targets"] = tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else None
    values["precision"] = Precision(values["precision"])
    return TrainSettings(**values)


def train_options(stage: str, columns: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared training flags (and ``--X-column`` flags for ``columns``).

    The command declares ``train: TrainSettings`` (and ``columns: ColumnMap`` when ``columns``
    is given) instead of the individual flags; it receives them built from the flags.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
               if p.name not in ("train", "columns")]
        shared = _train_params(stage) + column_params(columns)

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            from speechsum_cli.data.dataset import ColumnMap

            train = _settings_from({name: kwargs.pop(name) for name in TRAIN_FLAGS})
            extra = {"train": train}
            if columns:
                extra["columns"] = ColumnMap(**{n: kwargs.pop(f"{n}_column") for n in columns})
            return func(**kwargs, **extra)

        parameters = own + shared
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # Typer must read the new signature, not the function's
        return wrapper

    return decorate


def deprecated_option(old: str, new: str) -> Any:
    """A hidden option for an old spelling; :func:`prefer` maps it to the new one with a note."""
    return typer.Option(old, hidden=True, help=f"Deprecated: use {new}.")


def prefer(new_value: Any, old_value: Any, *, new: str, old: str, required: bool = True) -> Any:
    """The new option's value, else the deprecated one's (with a note); a usage error if neither."""
    if old_value is not None:
        deprecation(old, new)
        if new_value is None:
            return old_value
    if new_value is None and required:
        raise typer.BadParameter(f"Missing option '{new}'.", param_hint=new)
    return new_value


def echo_result(result: Any, as_json: bool) -> None:
    """A training stage's result on stdout: its path, or with --json path, counts and metrics."""
    import json

    if as_json:
        typer.echo(json.dumps({"out": str(result.out), "counts": result.counts, "metrics": result.metrics}))
    else:
        typer.echo(str(result.out))
