"""``TrainSettings``: the training fields every training stage holds, each documented once.

A stage's config holds one (``SftConfig.train``), as litgpt's finetune scripts hold
``train: TrainArgs``; the stage adds only its method's own fields. Stages whose sensible
default differs from another's pass their own ``TrainSettings(...)`` and say why in
``DEFAULT_REASONS`` (shown in ``--help``).

Light on purpose (no torch): the CLI builds its options from these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.errors import InputError


class Precision(str, Enum):
    """Weights' and compute dtype; the one dtype vocabulary of every stage."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class ReportTo(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"


@dataclass(frozen=True)
class TrainSettings:
    """How a training stage trains (shared by sft, distill and dpo)."""

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
    """Passes over the training rows; ignored when max_steps > 0."""
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
    on_long_audio: LongAudio = LongAudio.error
    """Rows whose audio exceeds the family's window: error | chunk | truncate | drop."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (less memory, ~30% slower)."""
    precision: Precision = Precision.auto
    """auto (bfloat16/float16 on GPU, float32 on CPU) | float32 | bfloat16 | float16."""
    resume: bool = False
    """Insist on continuing an interrupted run (an error if there is none to continue)."""
    restart: bool = False
    """Discard an interrupted run's checkpoints and start over."""
    merge: bool = False
    """Write a merged full checkpoint instead of the adapter."""
    report_to: ReportTo = ReportTo.none
    """none | tensorboard | wandb."""
    logging_steps: int = 10
    """Log the loss and the stage's statistics every this many steps."""
    save_steps: int = 500
    """Write a resumable checkpoint every this many steps."""
    eval_steps: int | None = None
    """Eval every this many steps (default: once per epoch, or at the end with max_steps)."""
    seed: int = 0
    """Seed for initialisation, shuffling, sampling and the eval split."""
    num_workers: int = 0
    """DataLoader worker processes that decode audio."""
    overwrite: bool = False
    """Replace an existing output (and discard an interrupted run)."""
    feature_cache: bool = True
    """Cache the frozen audio encoder's output per window on disk (unused with train_encoder)."""
    feature_cache_dir: Path | None = None
    """Where the feature cache lives; default: ``.feature-cache`` beside the output directory."""
    feature_cache_gb: float = 20.0
    """Disk bound of the feature cache; least recently used windows are deleted past it."""


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


RESUME_FREE_FIELDS = frozenset({
    "resume", "restart", "overwrite", "logging_steps", "save_steps", "report_to", "num_workers",
    "feature_cache", "feature_cache_dir", "feature_cache_gb",
})
"""Settings a resumed run may change; any other difference would mix two trainings."""



def check_settings(train: TrainSettings, *, long_audio: tuple[LongAudio, ...] = tuple(LongAudio)) -> None:
    """One error listing every contradiction in ``train`` (before anything loads)."""
    problems = []
    if train.merge and train.full:
        problems.append("--merge applies to LoRA training; --full already writes a full checkpoint")
    if train.resume and train.restart:
        problems.append("--resume continues an interrupted run and --restart discards it: pass one")
    if LongAudio(train.on_long_audio) not in long_audio:
        problems.append(f"--on-long-audio must be one of {', '.join(p.value for p in long_audio)}")
    if train.epochs <= 0 and train.max_steps <= 0:
        problems.append("--epochs must be > 0 unless --max-steps is given")
    if problems:
        raise InputError("; ".join(problems) + ".")
