"""``DistillConfig``: the settings of one ``speechsum distill`` run, and their checks.

Light on purpose (no torch): the CLI reads the enums below when it builds its options.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from speechsum_cli import generation
from speechsum_cli.console import info, warn
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.training.run import TrainResult
from speechsum_cli.training.settings import DISTILL_DEFAULTS, StageConfig, TrainSettings
from speechsum_cli.typed import enum_fields


class Loss(str, Enum):
    """The divergence between the student's and the teacher's next-token distributions."""

    reverse_kl = "reverse-kl"
    forward_kl = "forward-kl"
    jsd = "jsd"


class Estimator(str, Enum):
    """How the loss is estimated from the sampled completions."""

    full = "full"
    sampled = "sampled"


class TeacherLogprobs(str, Enum):
    """How the teacher's server returns the log-probs of a token-id prompt."""

    auto = "auto"
    prompt_logprobs = "prompt_logprobs"
    echo = "echo"


DEFAULT_CHUNK = 512
"""Completion positions per chunk of the full-vocabulary divergence."""
DEFAULT_TOP_K = 20
"""vLLM's default ``--max-logprobs``: the most log-probs per position its server returns."""


@dataclass(frozen=True, kw_only=True)
class DistillConfig(StageConfig):
    """Settings of one ``speechsum distill`` run."""

    teacher: str
    """Text causal LM (local dir or hub id) reading transcript + query in its own chat template."""
    train: TrainSettings = DISTILL_DEFAULTS
    """How it trains; batch_size counts rows before sampling."""
    loss: Loss = Loss.reverse_kl
    """reverse-kl (paper) | forward-kl | jsd."""
    beta: float = 0.5
    """jsd only: teacher weight of the mixture, 0 < beta < 1."""
    estimator: Estimator = Estimator.full
    """full (divergence over the whole vocabulary) | sampled (policy gradient; reverse-kl only)."""
    lmbda: float = 1.0
    """Share of rows trained on the student's own samples; the rest on the reference summary."""
    sft_alpha: float = 0.0
    """Weight of a cross-entropy term on the reference summaries (0 = off)."""
    samples_per_prompt: int = 1
    """Completions sampled per (audio, query) each step."""
    temperature: float = generation.default("distill", "temperature")
    """Sampling temperature (1 = the student's own distribution; 0 = greedy)."""
    top_p: float = generation.default("distill", "top_p")
    """Nucleus mass when sampling."""
    max_new_tokens: int = generation.default("distill", "max_new_tokens")
    """Longest sampled completion; hitting it without a stop token is counted."""
    chunk_size: int = DEFAULT_CHUNK
    """Completion positions per chunk of the full-vocabulary divergence (0 = one chunk)."""
    teacher_device: str = "auto"
    """Device of the teacher (auto = cuda if visible, else cpu)."""
    teacher_dtype: Dtype = Dtype.auto
    """Teacher weights' dtype (auto = bfloat16/float16 on GPU, float32 on CPU)."""
    teacher_system: str | None = None
    """System message of the teacher's conversation (default: its template's own)."""
    eval_data: Path | None = None
    """Held-out rows: reverse KL to the teacher on fixed student samples, before and after."""
    teacher_llm: LLMConfig | None = None
    """The teacher's vLLM-compatible server (``--teacher-base-url``): it scores the completions over
    HTTP through the one LLM client; None = the teacher runs in this process."""
    teacher_logprobs: TeacherLogprobs = TeacherLogprobs.auto
    """How that server returns the prompt's log-probs: auto | prompt_logprobs (vLLM) | echo."""
    teacher_top_k: int = DEFAULT_TOP_K
    """Remote teacher, --estimator full: log-probs per position it returns; the rest: one bucket."""

    def __post_init__(self) -> None:
        enum_fields(self, loss=Loss, estimator=Estimator, teacher_dtype=Dtype, teacher_logprobs=TeacherLogprobs)


DistillResult = TrainResult


def check_config(cfg: DistillConfig) -> None:
    """Every inconsistent setting in one error (before any data or model loads)."""
    problems = config_problems(cfg)
    if problems:
        raise InputError("; ".join(problems) + ".")
    if cfg.teacher_llm is not None and cfg.estimator is Estimator.full:
        info(
            f"remote teacher with --estimator full: {cfg.loss.value} over the teacher's "
            f"top-{cfg.teacher_top_k} tokens + one tail bucket (an approximation; --estimator "
            "sampled is exact)."
        )
    if cfg.estimator is Estimator.sampled and (cfg.temperature != 1.0 or cfg.top_p < 1.0):
        warn(
            "--estimator sampled with --temperature != 1 or --top-p < 1: the samples do not come "
            "from the student's own distribution, so the policy-gradient estimate is biased."
        )


def config_problems(cfg: DistillConfig) -> list[str]:
    problems = []
    if cfg.loss is Loss.jsd and not 0.0 < cfg.beta < 1.0:
        problems.append(
            f"--beta must be strictly between 0 and 1 for jsd, got {cfg.beta} "
            "(beta 0/1 are forward-kl/reverse-kl: use those losses)"
        )
    if cfg.estimator is Estimator.sampled and cfg.loss is not Loss.reverse_kl:
        problems.append(
            "--estimator sampled is the policy-gradient form of the reverse KL: use it with --loss reverse-kl"
        )
    if cfg.estimator is Estimator.sampled and cfg.lmbda < 1.0:
        problems.append(
            "--estimator sampled needs the student's own samples (on-policy): use "
            "--lmbda 1, or --estimator full to mix in reference summaries"
        )
    if not 0.0 <= cfg.lmbda <= 1.0:
        problems.append(f"--lmbda must be in [0, 1], got {cfg.lmbda}")
    if cfg.samples_per_prompt < 1 or cfg.max_new_tokens < 1:
        problems.append("--samples-per-prompt and --max-new-tokens must be >= 1")
    if cfg.teacher_top_k < 1:
        problems.append(f"--teacher-top-k must be >= 1, got {cfg.teacher_top_k}")
    return problems
