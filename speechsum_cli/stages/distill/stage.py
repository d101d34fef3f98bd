"""``run(cfg)``: check everything, load the student and the teacher, train, write the output."""

from __future__ import annotations

from typing import Any

from speechsum_cli.console import info, plural, warn
from speechsum_cli.data.dataset import load_rows
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import long_audio_plan
from speechsum_cli.dtypes import Dtype
from speechsum_cli.stages.distill.batch import Batcher
from speechsum_cli.stages.distill.checks import check_output_width, check_rows, check_teacher
from speechsum_cli.stages.distill.config import DistillConfig, DistillResult, check_config
from speechsum_cli.stages.distill.teacher import DistillTeacher, LocalTeacher, RemoteTeacher
from speechsum_cli.stages.distill.trainer import (
    STEP_LOG_KEYS,
    DistillCollator,
    DistillTrainer,
    heldout_divergence,
    sample_heldout,
    step_history,
)
from speechsum_cli.teacher import TEACHER_USER, Teacher
from speechsum_cli.training.model import load_for_training, make_trainable
from speechsum_cli.training.run import check_run, finish_run, start_run, train_metrics


def run(cfg: DistillConfig) -> DistillResult:
    """Distill, then write the adapter (or merged checkpoint) + processor + speechsum.json."""
    check_config(cfg)
    dtype = check_run(cfg.train, cfg.out)
    rows = load_rows(cfg.data, columns=cfg.columns, split=cfg.split)
    durations = check_rows(rows, cfg.data, needs_summary=cfg.lmbda < 1.0 or cfg.sft_alpha > 0)
    conversation, n_shared = check_teacher(cfg, rows)
    remote = None
    if cfg.teacher_llm is not None:
        remote = RemoteTeacher.open(cfg, conversation, n_shared, rows[0])
    try:
        return distill(cfg, rows, durations, dtype, conversation, n_shared, remote)
    finally:
        if remote is not None:
            remote.close()


def distill(
    cfg: DistillConfig,
    rows: Any,
    durations: list[float],
    dtype: Dtype,
    conversation: Teacher,
    n_shared: int,
    remote: RemoteTeacher | None,
) -> DistillResult:
    """Load the student (then a local teacher), train, and finish the run."""
    train = cfg.train
    run_ = start_run(cfg, train, cfg.out, dtype)
    lm, reference = load_for_training(cfg.model, run_.model_dtype(train), is_main=run_.is_main)
    check_output_width("student", lm.model, n_shared)
    teacher: DistillTeacher
    if remote is None:
        teacher = LocalTeacher.load(cfg, conversation.tokenizer, n_shared)
        check_output_width("teacher", teacher.model, n_shared)
    else:
        teacher = remote
    stop_ids = lm.stop_token_ids()
    train_ds, counts = training_rows(cfg, rows, durations, lm.window_seconds)

    model, groups = make_trainable(lm, train, reference, is_main=run_.is_main)
    run_.use_feature_cache(model, lm.family, train)
    batcher = Batcher(lm, teacher, stop_ids, cfg.chunk_size)

    metrics: dict[str, Any] = {}
    held = None
    if cfg.eval_data is not None:
        held = sample_heldout(cfg, model, lm)
        counts.update(held.counts)
        metrics["heldout_reverse_kl_before"] = heldout_divergence(model, batcher, held, train.batch_size)
        info(
            f"held-out reverse KL before: {metrics['heldout_reverse_kl_before']:.4f} "
            f"({len(held.rows)} rows, {sum(map(len, held.completions))} completion tokens)"
        )

    trainer = DistillTrainer(
        model=model,
        args=run_.args,
        train_dataset=train_ds,
        data_collator=DistillCollator(lm, lm.window_seconds, chunk=train.on_long_audio is LongAudio.chunk),
        family=lm.family,
        cfg=cfg,
        batcher=batcher,
    )
    if run_.is_main:
        info(
            f"distilling on {plural(len(train_ds), 'row')} from teacher '{cfg.teacher}' "
            f"({cfg.loss.value}, estimator {cfg.estimator.value}, lmbda {cfg.lmbda:g})"
        )
    output = trainer.train(resume_from_checkpoint=run_.resume_argument)
    metrics.update(train_metrics(trainer, output, run_, STEP_LOG_KEYS))
    metrics["log_history"] = step_history(trainer)
    if held is not None:
        metrics["heldout_reverse_kl_after"] = heldout_divergence(model, batcher, held, train.batch_size)
        info(f"held-out reverse KL after: {metrics['heldout_reverse_kl_after']:.4f}")
    add_sample_totals(trainer.totals, counts, metrics)

    finish_run(
        trainer,
        run_,
        lm,
        stage="distill",
        config=cfg,
        train=train,
        inputs=[cfg.data, *([cfg.eval_data] if cfg.eval_data else []), lm.source],
        counts=counts,
        metrics=metrics,
        extra={
            "base_model": reference,
            "teacher": teacher_record(cfg, teacher, n_shared),
            "loss": cfg.loss,
            "estimator": cfg.estimator,
            "lmbda": cfg.lmbda,
            "parameters": [vars(g) for g in groups],
            "window_seconds": lm.window_seconds,
        },
    )
    return DistillResult(cfg.out, counts, metrics, groups)


def training_rows(cfg: DistillConfig, rows: Any, durations: list[float], window: float) -> tuple[Any, dict[str, Any]]:
    """The rows that train (long audio per --on-long-audio), as the trainer's dataset; counts."""
    from datasets import Dataset

    plan = long_audio_plan(rows["id"], durations, window, cfg.train.on_long_audio, cfg.data)
    counts: dict[str, Any] = {"rows_in": len(rows), **plan.counts}
    kept = rows.select(plan.keep)
    train_ds = Dataset.from_dict(
        {
            "id": kept["id"],
            "audio": kept["audio"],
            "query": kept["query"],
            "transcript": kept["transcript"],
            "summary": kept["summary"] if "summary" in kept.column_names else [""] * len(kept),
            "truncate": plan.truncate,
            "length": [int(durations[i] * 100) for i in plan.keep],
        }
    )
    counts["train_rows"] = len(train_ds)
    return train_ds, counts


def add_sample_totals(totals: dict[str, Any], counts: dict[str, Any], metrics: dict[str, Any]) -> None:
    """The trainer's sample counts into ``counts``, their means into ``metrics`` (a resumed run:
    the resumed part only); a warning when sampled tokens could not be scored."""
    totals = dict(totals)
    repetition = totals.pop("repetition_sum")
    counts.update(totals)
    if totals["samples_drawn"]:
        metrics["mean_completion_length"] = totals["completion_tokens"] / totals["samples_drawn"]
        metrics["repetition_rate_mean"] = repetition / totals["samples_drawn"]
    if totals["student_only_tokens"]:
        warn(
            f"{totals['student_only_tokens']} sampled token(s) exist only in the student's "
            "vocabulary; the teacher cannot score them, so they were left out of the loss."
        )


def teacher_record(cfg: DistillConfig, teacher: DistillTeacher, n_shared: int) -> dict[str, Any]:
    """The teacher in ``speechsum.json``: where it ran and, on a server, what its log-probs made
    of the loss."""
    record = {"source": cfg.teacher, "user_turn": TEACHER_USER, "shared_vocabulary": n_shared}
    return {**record, **teacher.record(cfg.estimator, cfg.loss)}
