"""``sft``: supervised fine-tuning of an audio LLM on (audio, query) -> summary rows, or of a
text LM on (transcript, query) -> summary rows (text mode: the teacher, before it teaches).

The paper's stage 1 defaults: audio encoder frozen, projector trainable, LoRA (r=16, alpha=32)
on the language model only; cross-entropy on the summary tokens only (the family's ``encode``
masks the prompt and padding with -100). Batches are grouped by length (audio tokens + text
tokens) so padding stays small. Everything family-specific comes from the family interface, so
any checkpoint whose ``model_type`` has a family trains, including ``speechsum compose`` output.

Text mode is chosen by the checkpoint: a plain causal LM (a model_type with no audio family, e.g.
SmolLM2) trains on ``transcript, query, summary`` rows in the text teacher's conversation
(:mod:`speechsum_cli.teacher`): exactly the prompt ``speechsum distill`` and the mini baselines
ask it, with ``--system`` as their ``--teacher-system``. The sequence is built as distill's teacher
reads prompt + completion (prompt ids, then the summary's ids and the template's end-of-turn), and
the loss is on the summary and end-of-turn tokens. LoRA goes on the attention and MLP projections
of the whole model; everything else (settings, resume, --merge, the manifest) is shared.

The method only — row contract, collator, loss — on top of :mod:`speechsum_cli.training`
(settings, LoRA, the speech Trainer, run setup/resume/save). Uses transformers' ``Trainer``
rather than TRL's ``SFTTrainer``: SFTTrainer's value is text dataset preparation (chat
templating, tokenization, packing, completion masks), all of which would have to be switched off
here because audio rows must go through the family's encoder and placeholder expansion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechsum_cli.console import info, plural
from speechsum_cli.data.dataset import load_rows, shown_ids
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import (
    AudioRowCollator,
    check_audio_rows,
    check_text_rows,
    long_audio_plan,
)
from speechsum_cli.errors import InputError
from speechsum_cli.teacher import (
    TEACHER_USER,
    Teacher,
    check_teacher_template,
    load_teacher_tokenizer,
)
from speechsum_cli.training.lengths import estimate_lengths
from speechsum_cli.training.model import load_for_training, make_trainable
from speechsum_cli.training.run import TrainResult, check_run, finish_run, start_run, train_metrics
from speechsum_cli.training.settings import SFT_DEFAULTS, StageConfig, TrainSettings
from speechsum_cli.training.trainer import SpeechTrainer, answer_token_loss

REQUIRED_COLUMNS = ["audio", "query", "summary"]
TEXT_COLUMNS = ["transcript", "query", "summary"]
"""Text mode's row contract (an audio column, if any, is not read)."""
DEFAULT_TRAIN = SFT_DEFAULTS


@dataclass(frozen=True, kw_only=True)
class SftConfig(StageConfig):
    """Settings of one ``speechsum sft`` run."""

    train: TrainSettings = DEFAULT_TRAIN
    """How it trains: the paper's stage-1 defaults."""
    eval_data: Path | None = None
    """Separate evaluation rows; eval loss is computed at the end of every epoch/eval step."""
    eval_split: float = 0.0
    """Fraction of ``data`` held out for eval loss (ignored when ``eval_data`` is given)."""
    system: str | None = None
    """Text mode: the system turn of the teacher's conversation (distill's ``--teacher-system``);
    default: the chat template's own."""


SftResult = TrainResult


# --- rows -----------------------------------------------------------------------------------


def check_rows(ds: Any, source: Path) -> list[float]:
    """Audio duration of every row; one error naming every bad row id and column."""
    return check_audio_rows(
        ds,
        source,
        stage="sft",
        required=REQUIRED_COLUMNS,
        nonempty=["query", "summary"],
        hint="sft needs audio, query and summary per row: run 'speechsum synth' first, or map "
        "your columns with --audio-column/--query-column/--summary-column. (A plain chat LM "
        "as --model trains on transcript, query and summary instead.)",
    )


def check_text(ds: Any, source: Path) -> None:
    """Text mode: transcript, query and summary in every row; one error naming what is missing."""
    check_text_rows(
        ds,
        source,
        stage="sft",
        required=TEXT_COLUMNS,
        hint="sft of a text LM (text mode: the model has no audio family) needs transcript, query "
        "and summary per row: 'speechsum synth' output has them, or map your columns with "
        "--transcript-column/--query-column/--summary-column.",
    )


def build_dataset(ds: Any, keep: list[int], truncate: list[bool], lengths: list[int]) -> Any:
    """The rows the Trainer iterates: id, audio (undecoded), query, summary, truncate, length."""
    from datasets import Dataset

    rows = ds.select(keep)
    return Dataset.from_dict(
        {
            "id": rows["id"],
            "audio": rows["audio"],
            "query": rows["query"],
            "summary": rows["summary"],
            "truncate": truncate,
            "length": lengths,
        }
    )


def planned_dataset(
    lm: Any, rows: Any, seconds: list[float], policy: LongAudio, source: Path
) -> tuple[Any, dict[str, int], float]:
    """The Trainer's rows after the long-audio plan, their counts, and their hours of audio."""
    window = lm.window_seconds
    plan = long_audio_plan(rows["id"], seconds, window, policy, source)
    kept = rows.select(plan.keep)
    kept_seconds = [seconds[i] for i in plan.keep]
    lengths = estimate_lengths(
        lm, kept["query"], kept["summary"], kept_seconds, window, chunked=policy is LongAudio.chunk
    )
    return build_dataset(rows, plan.keep, plan.truncate, lengths), plan.counts, sum(kept_seconds) / 3600


@dataclass
class SpeechCollator(AudioRowCollator):
    """Decode a batch's audio and encode it with the family: loss only on summary tokens."""

    def build(self, rows: list[dict[str, Any]], audios: list[Any]) -> dict[str, Any]:
        from speechsum_cli.families import Prompt

        return self.encode([Prompt(query=r["query"], audio=a, answer=r["summary"]) for r, a in zip(rows, audios)])


# --- text mode ------------------------------------------------------------------------------


def check_conversation(cfg: SftConfig, first: dict[str, Any]) -> None:
    """Text mode, before the model loads: a chat template that renders the teacher's conversation."""
    tokenizer = load_teacher_tokenizer(cfg.model, flag="--model")
    check_teacher_template(
        Teacher(None, tokenizer, cfg.model, cfg.system),
        first["transcript"],
        first["query"],
        flag="--model",
        system_flag="--system",
    )


def text_dataset(teacher: Teacher, rows: Any, source: Path, context: int) -> Any:
    """The Trainer's text rows with their token lengths; rows longer than the model's context
    are refused (named), never cut."""
    from datasets import Dataset

    lengths = [
        len(teacher.training_ids(t, q, s)[0]) for t, q, s in zip(rows["transcript"], rows["query"], rows["summary"])
    ]
    too_long = [row_id for row_id, n in zip(rows["id"], lengths) if n > context]
    if too_long:
        raise InputError(
            f"data '{source}' has {len(too_long)} row(s) longer than the model's context of {context} "
            f"tokens (prompt + summary; longest {max(lengths)}): ids {shown_ids(too_long)}. "
            "Shorten or remove those rows."
        )
    return Dataset.from_dict(
        {
            "id": rows["id"],
            "transcript": rows["transcript"],
            "query": rows["query"],
            "summary": rows["summary"],
            "length": lengths,
        }
    )


@dataclass
class TextCollator:
    """Text mode: the teacher's prompt, then the summary and the end-of-turn; right-padded, loss
    only on the summary and end-of-turn (prompt and padding are -100)."""

    teacher: Teacher

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        encoded = [self.teacher.training_ids(r["transcript"], r["query"], r["summary"]) for r in rows]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(rows), width), self.teacher.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids, prompt_length) in enumerate(encoded):
            input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[i, : len(ids)] = 1
            labels[i, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


summary_token_loss = answer_token_loss
"""sft's loss: cross-entropy on the summary tokens (see :func:`answer_token_loss`)."""


# --- run ------------------------------------------------------------------------------------


def run(cfg: SftConfig) -> SftResult:
    """Train, then write the adapter (or merged / full checkpoint) + processor (a text LM's
    tokenizer with its chat template) + speechsum.json."""
    from speechsum_cli.families import is_text_lm

    train = cfg.train
    if not 0.0 <= cfg.eval_split < 1.0:
        raise InputError(f"--eval-split must be in [0, 1); got {cfg.eval_split}.")
    dtype = check_run(train, cfg.out)
    text = is_text_lm(cfg.model)  # reads the checkpoint's config only
    if cfg.system is not None and not text:
        raise InputError(
            f"--system applies to text mode only (a plain chat LM as --model: the text teacher); "
            f"'{cfg.model}' is not one. An audio LLM is trained on the prompt summarize, eval and "
            "distill ask it, which has no system turn: drop --system."
        )

    # Inputs are checked before any model is loaded.
    train_rows = load_rows(cfg.data, columns=cfg.columns, split=cfg.split)
    eval_rows = load_rows(cfg.eval_data, columns=cfg.columns) if cfg.eval_data is not None else None
    if text:
        for rows, source in ((train_rows, cfg.data), (eval_rows, cfg.eval_data)):
            if rows is not None:
                check_text(rows, source)
        check_conversation(cfg, train_rows[0])
    else:
        train_seconds = check_rows(train_rows, cfg.data)
        eval_seconds = check_rows(eval_rows, cfg.eval_data) if eval_rows is not None else None

    has_eval = cfg.eval_data is not None or cfg.eval_split > 0
    run_ = start_run(cfg, train, cfg.out, dtype, has_eval=has_eval)
    lm, base_source = load_for_training(cfg.model, run_.model_dtype(train), text=text, is_main=run_.is_main)
    policy = train.on_long_audio

    counts: dict[str, Any] = {"rows_in": len(train_rows)}
    eval_ds = None
    if text:
        teacher = Teacher(lm.model, lm.tokenizer, lm.source, cfg.system)
        train_ds = text_dataset(teacher, train_rows, cfg.data, lm.context_length)
        if eval_rows is not None:
            eval_ds = text_dataset(teacher, eval_rows, cfg.eval_data, lm.context_length)
            counts["eval_rows_in"] = len(eval_rows)
        counts["train_tokens"] = sum(train_ds["length"])
        mode: dict[str, Any] = {
            "mode": "text",
            "conversation": {
                "user_turn": TEACHER_USER,
                "system": cfg.system,
                "end_of_turn": lm.tokenizer.convert_ids_to_tokens(teacher.end_of_turn_id),
            },
        }
    else:
        train_ds, long_counts, hours = planned_dataset(lm, train_rows, train_seconds, policy, cfg.data)
        counts.update(long_counts)
        if eval_rows is not None:
            eval_ds, e_counts, _ = planned_dataset(lm, eval_rows, eval_seconds, policy, cfg.eval_data)
            counts["eval_rows_in"] = len(eval_rows)
            counts.update({f"eval_{k}": v for k, v in e_counts.items()})
        counts["train_audio_hours"] = round(hours, 4)
        mode = {"mode": "audio", "window_seconds": lm.window_seconds}
    if eval_rows is None and cfg.eval_split > 0:
        if len(train_ds) < 2:
            raise InputError(f"--eval-split needs at least 2 rows; data '{cfg.data}' has {len(train_ds)}.")
        split = train_ds.train_test_split(test_size=cfg.eval_split, seed=train.seed)
        train_ds, eval_ds = split["train"], split["test"]
    counts["train_rows"] = len(train_ds)
    counts["eval_rows"] = len(eval_ds) if eval_ds is not None else 0

    base_dtype = lm.model.dtype
    model, groups = make_trainable(lm, train, base_source, is_main=run_.is_main)
    if text:  # no audio encoder: no feature cache
        collator: Any = TextCollator(teacher)
    else:
        run_.use_feature_cache(model, lm.family, train)
        collator = SpeechCollator(lm, lm.window_seconds, chunk=policy is LongAudio.chunk, dtype=base_dtype)
    trainer = SpeechTrainer(
        model=model,
        args=run_.args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        compute_loss_func=answer_token_loss,
        family=lm.family,
    )
    if run_.is_main:
        info(
            f"training on {plural(len(train_ds), 'row')}"
            + (f", {plural(len(eval_ds), 'eval row')}" if eval_ds else "")
            + f" ({run_.work_dir})"
        )
    output = trainer.train(resume_from_checkpoint=run_.resume_argument)

    metrics = train_metrics(trainer, output, run_)
    if eval_ds is not None:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
    finish_run(
        trainer,
        run_,
        lm,
        stage="sft",
        config=cfg,
        train=train,
        inputs=[cfg.data, *([cfg.eval_data] if cfg.eval_data else []), lm.source],
        counts=counts,
        metrics=metrics,
        extra={"base_model": base_source, "parameters": [vars(g) for g in groups], **mode},
    )
    return SftResult(cfg.out, counts, metrics, groups)
