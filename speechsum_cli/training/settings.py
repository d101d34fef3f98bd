"""``TrainSettings``: the training fields every training stage holds, each documented once.

A stage's config holds one (``SftConfig.train``), as litgpt's finetune scripts hold
``train: TrainArgs``; the stage adds only its method's own fields. Stages whose sensible
default differs from another's pass their own ``TrainSettings(...)`` and say why in
``DEFAULT_REASONS`` (shown in ``--help``).

Each field's help is its metadata (:func:`doc`, as TRL's ``field(metadata={"help": ...})``):
the CLI builds every training flag from it (``speechsum_cli.cli.options``), so the flag's help
and the field's documentation are one text. Light on purpose (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from speechsum_cli import dtypes
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError
from speechsum_cli.typed import enum_fields


class ReportTo(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"


def doc(help: str, *, flag: str | None = None, **option: Any) -> dict[str, Any]:
    """A :class:`TrainSettings` field's metadata: its help, and how its CLI flag is spelled.

    ``flag`` overrides ``--field-name`` (``--group-by-length/--no-group-by-length``); ``option``
    goes to the flag's ``typer.Option`` (``min``, ``max``, ``show_default``).
    """
    return {"help": help, "flag": flag, "option": option}


@dataclass(frozen=True)
class TrainSettings:
    """How a training stage trains (shared by sft, distill and dpo). Each field's help is its
    metadata (``dataclasses.fields(TrainSettings)``), also the help of its flag."""

    epochs: float = field(
        default=2.0, metadata=doc("Passes over the training rows (ignored when --max-steps > 0).", min=0.0)
    )
    max_steps: int = field(default=-1, metadata=doc("Optimizer steps; > 0 overrides --epochs."))
    lr: float = field(default=1e-4, metadata=doc("Peak learning rate (linear warmup, then linear decay).", min=0.0))
    batch_size: int = field(default=4, metadata=doc("Rows per device per forward pass.", min=1))
    grad_accum: int = field(default=1, metadata=doc("Forward passes per optimizer step.", min=1))
    warmup: float = field(
        default=0.03, metadata=doc("Warmup: a fraction of the steps if < 1, else a number of steps.", min=0.0)
    )
    weight_decay: float = field(default=0.0, metadata=doc("AdamW weight decay.", min=0.0))
    lora_r: int = field(default=16, metadata=doc("LoRA rank (paper: 16).", min=1))
    lora_alpha: int = field(default=32, metadata=doc("LoRA alpha (paper: 32).", min=1))
    lora_dropout: float = field(default=0.05, metadata=doc("Dropout on the LoRA branch.", min=0.0, max=1.0))
    lora_targets: tuple[str, ...] | None = field(
        default=None,
        metadata=doc(
            "Comma-separated module names inside the language model  \\[default: the family's].", show_default=False
        ),
    )
    train_encoder: bool = field(default=False, metadata=doc("Also train the audio encoder (frozen in the paper)."))
    full: bool = field(default=False, metadata=doc("Full fine-tuning of the LM + projector instead of LoRA."))
    merge: bool = field(default=False, metadata=doc("Write a merged full checkpoint instead of the adapter."))
    on_long_audio: LongAudio = field(
        default=LongAudio.error,
        metadata=doc(
            "Rows with audio over the model's window: error, chunk (all windows in one prompt), "
            "truncate or drop (both counted)."
        ),
    )
    group_by_length: bool = field(
        default=True,
        metadata=doc(
            "Batch rows of similar length together (less padding).", flag="--group-by-length/--no-group-by-length"
        ),
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=doc("Recompute activations in backward: less memory, ~30% slower.")
    )
    dtype: Dtype = field(default=Dtype.auto, metadata=doc(dtypes.HELP))
    seed: int = field(default=0, metadata=doc("Seed for initialisation, shuffling, sampling and splits."))
    resume: bool = field(
        default=False,
        metadata=doc(
            "Insist on continuing an interrupted run: an error if there is none (a re-run of the same "
            "command resumes by itself)."
        ),
    )
    restart: bool = field(default=False, metadata=doc("Discard an interrupted run and start over."))
    overwrite: bool = field(default=False, metadata=doc("Replace an existing --out (and discard an interrupted run)."))
    report_to: ReportTo = field(default=ReportTo.none, metadata=doc("Experiment tracker."))
    logging_steps: int = field(
        default=10, metadata=doc("Log the loss and the stage's statistics every N steps.", min=1)
    )
    save_steps: int = field(default=500, metadata=doc("Resumable checkpoint every N steps.", min=1))
    eval_steps: int | None = field(
        default=None,
        metadata=doc(
            "Eval every N steps  \\[default: every epoch, or at the end with --max-steps].", min=1, show_default=False
        ),
    )
    num_workers: int = field(default=0, metadata=doc("DataLoader worker processes decoding audio.", min=0))
    feature_cache: bool = field(
        default=True,
        metadata=doc(
            "Compute the frozen audio encoder's output for each window once and reuse it (every epoch, "
            "every stage reading the same audio; off with --train-encoder, whose output changes).",
            flag="--feature-cache/--no-feature-cache",
        ),
    )
    feature_cache_dir: Path | None = field(
        default=None,
        metadata=doc("Directory of the feature cache  \\[default: .feature-cache beside --out].", show_default=False),
    )
    feature_cache_gb: float = field(
        default=20.0, metadata=doc("Disk bound of the feature cache (least recently used windows go first).", min=0.001)
    )

    def __post_init__(self) -> None:
        enum_fields(self, on_long_audio=LongAudio, dtype=Dtype, report_to=ReportTo)


SFT_DEFAULTS = TrainSettings()
"""sft: the paper's stage 1 (2 epochs, LoRA r16/a32, lr 1e-4, 3% warmup)."""
DISTILL_DEFAULTS = TrainSettings(epochs=1.0, batch_size=2, warmup=0.0, group_by_length=False)
DPO_DEFAULTS = TrainSettings(epochs=1.0, lr=5e-6, batch_size=2, warmup=0.1)

DEFAULT_REASONS: dict[str, dict[str, str]] = {
    "distill": {
        "epochs": "one pass, as in the paper: every step samples fresh completions",
        "batch_size": "rows before sampling: each is sampled --samples-per-prompt times, and the "
        "teacher scores every sample",
        "warmup": "none: the student starts from a trained sft checkpoint",
        "group_by_length": "off: a row's length is its sampled completion's, unknown in advance",
    },
    "dpo": {
        "epochs": "one pass, as in the paper",
        "lr": "small, as preference optimization from a trained policy moves it far with large "
        "steps (TRL's and Zephyr's DPO recipes)",
        "batch_size": "pairs: each is two rows (chosen and rejected) in the forward pass",
        "warmup": "longer, for the same reason as the small --lr",
    },
}
"""Why a stage's default differs from sft's (shown in that stage's --help)."""


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """What every training stage's config holds; a stage's config adds its method's fields."""

    data: Path
    """The stage's rows: a save_to_disk dir, .parquet or .jsonl file."""
    model: str
    """Starting checkpoint: local dir, hub id, or an earlier stage's adapter (merged first)."""
    out: Path
    """Output directory (adapter, or merged/full checkpoint, + processor + speechsum.json)."""
    train: TrainSettings = SFT_DEFAULTS
    """How it trains (the fields shared by every training stage)."""
    split: str | None = None
    """Split of a DatasetDict in ``data``."""
    columns: ColumnMap = field(default_factory=ColumnMap)
    """Names of the user's columns for the contract columns the stage reads."""


RESUME_FREE_FIELDS = frozenset(
    {
        "resume",
        "restart",
        "overwrite",
        "logging_steps",
        "save_steps",
        "report_to",
        "num_workers",
        "feature_cache",
        "feature_cache_dir",
        "feature_cache_gb",
    }
)
"""Settings a resumed run may change; any other difference would mix two trainings."""


def check_settings(train: TrainSettings, *, long_audio: tuple[LongAudio, ...] = tuple(LongAudio)) -> None:
    """One error listing every contradiction in ``train`` (before anything loads)."""
    problems = []
    if train.merge and train.full:
        problems.append("--merge applies to LoRA training; --full already writes a full checkpoint")
    if train.resume and train.restart:
        problems.append("--resume continues an interrupted run and --restart discards it: pass one")
    if train.on_long_audio not in long_audio:
        problems.append(f"--on-long-audio must be one of {', '.join(p.value for p in long_audio)}")
    if train.epochs <= 0 and train.max_steps <= 0:
        problems.append("--epochs must be > 0 unless --max-steps is given")
    if problems:
        raise InputError("; ".join(problems) + ".")
