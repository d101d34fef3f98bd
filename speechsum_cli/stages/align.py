"""``align``: teach a fresh projector to hear, without paying for the language model.

Before the LM-in-the-loop warm-up (``sft`` on transcription rows), the projector alone is
trained on (audio, transcript) rows by CTC over the LM's own input embeddings
(:mod:`speechsum_cli.training.alignment`). The frozen encoder runs once per window (through the
feature cache, so a re-run and the later ``sft`` on the same audio read it from disk); the
training steps then touch only the projector and a ``[frames, corpus vocabulary]`` product.

Output: the whole checkpoint with the new projector (encoder and LM unchanged), ready for
``speechsum sft --model OUT``. ``speechsum.json`` records the held-out WER curve against minutes
of compute (the projector's CTC transcript, greedy) and whether the alignment stalled.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechsum_cli.console import info, progress_bar, warn
from speechsum_cli.data.dataset import ColumnMap, load_rows
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import check_audio_rows, long_audio_plan
from speechsum_cli.errors import InputError, ModelError, SpeechsumError
from speechsum_cli.families import compression
from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest
from speechsum_cli.typed import enum_fields

if TYPE_CHECKING:  # torch loads with the training layer, inside run: `speechsum --help` stays fast
    from speechsum_cli.training.alignment import Clip

REQUIRED_COLUMNS = ["audio", "transcript"]
STALL_MIN_STEPS = 20
"""Steps past warm-up before a blank plateau counts as a stall (CTC often sits there a while)."""
LONG_AUDIO = (LongAudio.error, LongAudio.drop)
"""A row is one window; longer rows are refused or dropped (counted), never cut."""


class AlignmentStalled(SpeechsumError):
    """The alignment sat at the blank plateau past its warm-up (``--on-stall error``)."""


@dataclass(frozen=True, kw_only=True)
class AlignConfig:
    """Settings of one ``speechsum align`` run."""

    data: Path
    """Transcription rows: id, audio, transcript (one window each)."""
    model: str
    """The checkpoint whose projector learns (``speechsum compose`` output, or any alignable family)."""
    out: Path
    """Output checkpoint directory (the whole model, new projector)."""
    heldout: Path | None = None
    """Rows for the WER curve; default: ``heldout_rows`` rows split off ``data`` (seeded)."""
    heldout_rows: int = 100
    """Rows split off ``data`` for the WER curve when ``heldout`` is not given."""
    epochs: float = 4.0
    """Passes over the training rows (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many steps (> 0 overrides epochs)."""
    lr: float = 1e-3
    """Peak learning rate of the projector (AdamW)."""
    batch_size: int = 8
    """Rows per step (small: the number of updates matters more than their size here)."""
    warmup: float = 0.1
    """Linear warm-up: a fraction of the steps if < 1, else a number of steps; then cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    evals: int = 8
    """Held-out WER measurements spread over the run (the curve), plus one before training."""
    on_stall: str = "warn"
    """A blank plateau past warm-up + 10% of the steps: warn (recorded) | error (nothing written)."""
    on_long_audio: LongAudio = LongAudio.error
    """Rows longer than the model's window: error | drop (counted)."""
    seed: int = 0
    """Seed of the held-out split, the shuffling and the blank's initialisation."""
    compress: bool = False
    """Mark the output as compressed: the LM reads only the frames the CTC head does not blank
    (repeats merged), about 5x fewer audio tokens (:mod:`speechsum_cli.families.compression`)."""
    feature_cache: bool = True
    """Read and fill the frozen-encoder feature cache."""
    feature_cache_dir: Path | None = None
    """Default: ``.feature-cache`` beside ``out``."""
    feature_cache_gb: float = 20.0
    """Disk bound of the feature cache."""
    device: str = "auto"
    split: str | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    overwrite: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        enum_fields(self, on_long_audio=LongAudio)


@dataclass
class AlignResult:
    out: Path
    counts: dict[str, Any]
    metrics: dict[str, Any]


def check_config(cfg: AlignConfig) -> None:
    problems = []
    if cfg.on_stall not in ("warn", "error"):
        problems.append(f"--on-stall must be warn or error, got '{cfg.on_stall}'")
    if cfg.epochs <= 0 and cfg.max_steps <= 0:
        problems.append("--epochs must be > 0 unless --max-steps is given")
    if cfg.on_long_audio not in LONG_AUDIO:
        problems.append("--on-long-audio must be error or drop (a row is one window)")
    if problems:
        raise InputError("; ".join(problems) + ".")
    check_output_dir(cfg.out, overwrite=cfg.overwrite)


def check_rows(ds: Any, source: Path) -> list[float]:
    return check_audio_rows(
        ds,
        source,
        stage="align",
        required=REQUIRED_COLUMNS,
        nonempty=["transcript"],
        hint="align needs audio and its transcript per row: build a transcription corpus "
        "(recipes/mini/make_hearing.py) or map your columns with --audio-column/--transcript-column.",
    )


def split_heldout(ds: Any, n: int, seed: int) -> tuple[Any, Any]:
    """(train, held-out): ``n`` rows chosen with ``seed``; an error if that leaves too little."""
    if len(ds) < n + 2:
        raise InputError(
            f"--heldout-rows {n} leaves too few of the {len(ds)} rows to train on; "
            "pass --heldout FILE or a smaller --heldout-rows."
        )
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    return ds.select(sorted(order[n:])), ds.select(sorted(order[:n]))


def heldout_wer(
    lm: Any, head: Any, clips: list[Clip], vocab: Any, device: Any, batch: int
) -> tuple[float, float, list[str]]:
    """Greedy CTC transcripts of ``clips``: corpus WER, non-blank share, and the texts."""
    import torch

    from speechsum_cli.families.ctc_head import greedy_decode
    from speechsum_cli.metrics.wer import error_rates
    from speechsum_cli.training.alignment import nonblank_share, project_batch

    texts: list[str] = []
    shares: list[float] = []
    with torch.no_grad():
        for start in range(0, len(clips), batch):
            part = clips[start : start + batch]
            hidden, lengths = project_batch(lm, part, device)
            log_probs = head(hidden)
            shares.append(nonblank_share(log_probs, lengths) * len(part))
            texts += [
                lm.tokenizer.decode(ids, skip_special_tokens=True).strip()
                for ids in greedy_decode(log_probs, lengths, vocab)
            ]
    wer = error_rates([c.transcript for c in clips], texts).wer
    return float(wer), sum(shares) / len(clips), texts


def kept_per_clip(lm: Any, head: Any, clips: list[Clip], device: Any, batch: int) -> float:
    """Mean audio tokens per clip a compressed model would read: the clip's frames the head does
    not blank, repeats merged (what :mod:`speechsum_cli.families.compression` keeps)."""
    import torch

    from speechsum_cli.families.compression import keep_mask
    from speechsum_cli.training.alignment import project_batch

    kept = 0
    with torch.no_grad():
        for start in range(0, len(clips), batch):
            part = clips[start : start + batch]
            hidden, lengths = project_batch(lm, part, device)
            keep = keep_mask(head(hidden))
            kept += sum(int(row[:n].sum()) for row, n in zip(keep, lengths.tolist()))
    return kept / max(1, len(clips))


def stall_message(kind: str, step: int, total: int, loss: float) -> str:
    what = (
        "the projector still emits only blanks"
        if kind == "blank"
        else "the projector emits tokens on far more frames than the transcripts have tokens: it has "
        "collapsed to repeating frequent words"
    )
    return (
        f"the alignment has stalled ({kind}): after {step} of {total} steps {what} (CTC loss "
        f"{loss:.2f}). Try another --lr or --warmup, smaller --batch-size (more updates), or "
        "more varied speech."
    )


# --- run ------------------------------------------------------------------------------------


def load_inputs(cfg: AlignConfig) -> tuple[Any, Any, list[float], list[float]]:
    """Training and held-out rows (checked before any model loads) and their durations."""
    rows = load_rows(cfg.data, columns=cfg.columns, split=cfg.split)
    seconds = check_rows(rows, cfg.data)
    if cfg.heldout is not None:
        heldout = load_rows(cfg.heldout, columns=cfg.columns)
        return rows, heldout, seconds, check_rows(heldout, cfg.heldout)
    train, heldout = split_heldout(rows.add_column("_seconds", seconds), cfg.heldout_rows, cfg.seed)
    return (
        train.remove_columns("_seconds"),
        heldout.remove_columns("_seconds"),
        list(train["_seconds"]),
        list(heldout["_seconds"]),
    )


def load_alignable(cfg: AlignConfig) -> tuple[Any, str, Any]:
    """The checkpoint in float32 on its device, checked to be alignable; its base source; the device."""
    from speechsum_cli.families import resolve_device
    from speechsum_cli.training.model import load_for_training

    lm, base_source = load_for_training(cfg.model, "float32")
    if cfg.compress and not lm.family.compressible:
        raise ModelError(
            f"--compress: '{cfg.model}' is a {lm.family.model_type} checkpoint, whose clips do "
            "not all give the projector the same number of rows; compression supports "
            "voxtral (and composed voxtral-layout students). Run align without --compress."
        )
    if not lm.family.alignable:
        raise ModelError(
            f"'{cfg.model}' is a {lm.family.model_type} checkpoint; align supports the "
            "families that expose their encoder and projector (voxtral, qwen2_audio). "
            "Train its projector with sft instead."
        )
    if lm.compressor is not None:  # aligning again: the projector's every frame, a new head
        lm.compressor.remove()
        lm.compressor = None
    device = resolve_device(cfg.device)
    lm.model.to(device).eval()
    return lm, base_source, device


def plan_rows(
    cfg: AlignConfig, lm: Any, inputs: tuple[Any, Any, list[float], list[float]]
) -> tuple[Any, Any, dict[str, Any]]:
    """The training and held-out rows that fit one window (``--on-long-audio``), with the counts."""
    train_rows, heldout_rows, train_seconds, heldout_seconds = inputs
    window = lm.window_seconds
    counts: dict[str, Any] = {"rows_in": len(train_rows), "heldout_rows_in": len(heldout_rows)}
    plan = long_audio_plan(train_rows["id"], train_seconds, window, cfg.on_long_audio, cfg.data)
    counts.update(plan.counts)
    held_plan = long_audio_plan(heldout_rows["id"], heldout_seconds, window, cfg.on_long_audio, cfg.heldout or cfg.data)
    counts["train_audio_hours"] = round(sum(train_seconds[i] for i in plan.keep) / 3600, 4)
    return train_rows.select(plan.keep), heldout_rows.select(held_plan.keep), counts


def alignable_clips(cfg: AlignConfig, clips: list[Clip]) -> tuple[list[Clip], Any, int]:
    """The clips CTC can align, the corpus vocabulary, and how many were left out (warned)."""
    from speechsum_cli.families.ctc_head import CorpusVocab
    from speechsum_cli.training.alignment import ctc_feasible

    vocab = CorpusVocab.of([c.target for c in clips])
    infeasible = [c.row_id for c in clips if not ctc_feasible(len(vocab.classes(c.target)), c.tokens)]
    if infeasible:
        warn(
            f"{len(infeasible)} training row(s) have more transcript tokens than audio embeddings "
            "and cannot be aligned by CTC; they are left out (counted in speechsum.json)."
        )
    clips = [c for c in clips if c.row_id not in set(infeasible)]
    if not clips:
        raise InputError(f"data '{cfg.data}': no row has fewer transcript tokens than audio embeddings.")
    return clips, vocab, len(infeasible)


@dataclass
class Schedule:
    """How many steps, their warm-up, when the held-out WER is measured, and when a stall counts."""

    total: int
    warmup: int
    steps_per_epoch: int
    eval_at: list[int]

    @classmethod
    def of(cls, cfg: AlignConfig, rows: int) -> Schedule:
        steps_per_epoch = math.ceil(rows / cfg.batch_size)
        total = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.epochs * steps_per_epoch))
        warmup = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)
        eval_at = sorted({min(total, round(total * (k + 1) / max(1, cfg.evals))) for k in range(cfg.evals)})
        return cls(total, warmup, steps_per_epoch, eval_at)

    def stall_watch(self) -> Any:
        from speechsum_cli.training.alignment import StallWatch

        return StallWatch(
            check_from=self.warmup + max(STALL_MIN_STEPS, self.total // 10),
            repeats_from=self.warmup + max(STALL_MIN_STEPS, self.total * 3 // 10),
        )


@dataclass
class Training:
    """What the training loop leaves: the loss per step, the WER curve, the stall watch."""

    losses: list[float]
    curve: list[dict[str, Any]]
    watch: Any
    minutes: float


def train_projector(
    cfg: AlignConfig,
    lm: Any,
    head: Any,
    params: list[Any],
    clips: list[Clip],
    held: list[Clip],
    vocab: Any,
    device: Any,
    schedule: Schedule,
    curve: list[dict[str, Any]],
    encode_minutes: float,
) -> Training:
    """AdamW on the projector and the head (the head ``HEAD_LR_FACTOR`` faster), CTC + norm penalty,
    the held-out WER at ``schedule.eval_at``; a stall is warned or raised (``--on-stall``)."""
    import torch

    from speechsum_cli.training.alignment import (
        HEAD_LR_FACTOR,
        NORM_WEIGHT,
        ctc_loss,
        lr_factor,
        nonblank_share,
        project_batch,
    )

    rates = (cfg.lr, cfg.lr * HEAD_LR_FACTOR)
    optimizer = torch.optim.AdamW(
        [{"params": params}, {"params": list(head.parameters()), "weight_decay": 0.0, "lr": rates[1]}],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    total, watch = schedule.total, schedule.stall_watch()
    rng = random.Random(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    t_train = time.perf_counter()
    lm.model.train()
    with progress_bar("aligning the projector", total, enabled=cfg.show_progress) as advance:
        for step in range(total):
            if not order:
                order = list(range(len(clips)))
                rng.shuffle(order)
            batch = [clips[i] for i in order[: cfg.batch_size]]
            order = order[cfg.batch_size :]
            for group, rate in zip(optimizer.param_groups, rates):
                group["lr"] = rate * lr_factor(step, total, schedule.warmup)
            hidden, lengths = project_batch(lm, batch, device)
            log_probs = head(hidden)
            loss = ctc_loss(log_probs, lengths, [vocab.classes(c.target) for c in batch])
            loss = loss + NORM_WEIGHT * head.norm_penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params + list(head.parameters()), 1.0)
            optimizer.step()
            losses.append(loss.item())
            targets = sum(len(vocab.classes(c.target)) for c in batch)
            kind = watch.update(step + 1, nonblank_share(log_probs.detach(), lengths), targets / int(lengths.sum()))
            if kind is not None:
                message = stall_message(kind, step + 1, total, losses[-1])
                if cfg.on_stall == "error":
                    raise AlignmentStalled(message + " Nothing was written.")
                warn(message)
            advance(1)
            if step + 1 in schedule.eval_at:
                lm.model.eval()
                wer, share, _ = heldout_wer(lm, head, held, vocab, device, cfg.batch_size)
                lm.model.train()
                minutes = encode_minutes + (time.perf_counter() - t_train) / 60
                curve.append(
                    {
                        "step": step + 1,
                        "epoch": round((step + 1) / schedule.steps_per_epoch, 2),
                        "minutes": round(minutes, 2),
                        "loss": round(sum(losses[-10:]) / len(losses[-10:]), 4),
                        "wer": round(wer, 4),
                        "nonblank_share": round(share, 4),
                    }
                )
                info(
                    f"align step {step + 1}/{total}: loss {curve[-1]['loss']:.3f}, held-out WER {wer:.3f}, "
                    f"non-blank frames {share:.2f} ({minutes:.1f} min)"
                )
    lm.model.eval()
    return Training(losses, curve, watch, round((time.perf_counter() - t_train) / 60, 2))


def final_metrics(
    lm: Any, head: Any, held: list[Clip], vocab: Any, device: Any, batch: int, training: Training, encode_minutes: float
) -> dict[str, Any]:
    """speechsum.json's metrics: the losses, the WER curve, the stall, the head, a few examples."""
    import torch

    from speechsum_cli.training.alignment import project_batch

    _, _, examples = heldout_wer(lm, head, held[:3], vocab, device, batch)
    with torch.no_grad():
        norm = float(project_batch(lm, held[:8], device)[0].norm(dim=-1).mean())
    kept = kept_per_clip(lm, head, held, device, batch)
    losses, curve, watch = training.losses, training.curve, training.watch
    return {
        "steps": len(losses),
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "wer_before": curve[0]["wer"],
        "wer_after": curve[-1]["wer"],
        "curve": curve,
        "stalled": watch.stalled,
        "stalled_at_step": watch.stalled_at,
        "stall_kind": watch.kind,
        "logit_scale": head.log_scale.exp().item(),
        "audio_embedding_norm": norm,
        "token_embedding_norm": head.embedding_norm,
        "encode_minutes": round(encode_minutes, 2),
        "kept_tokens_per_clip": round(kept, 2),
        "train_minutes": training.minutes,
        "examples": [{"id": c.row_id, "reference": c.transcript, "ctc": text} for c, text in zip(held, examples)],
    }


def run(cfg: AlignConfig) -> AlignResult:
    """Encode once, align the projector by CTC, write the checkpoint + WER curve."""
    import torch

    from speechsum_cli.families.ctc_head import HEAD_FILE, CtcHead, save_head
    from speechsum_cli.inference.feature_cache import cache_for_training, report
    from speechsum_cli.training.alignment import encode_clips, projector_parameters

    started = time.perf_counter()
    check_config(cfg)
    inputs = load_inputs(cfg)

    torch.manual_seed(cfg.seed)
    lm, base_source, device = load_alignable(cfg)
    train_rows, heldout_rows, counts = plan_rows(cfg, lm, inputs)

    params = projector_parameters(lm)  # the encoder is frozen before the cache looks at it
    cache = cache_for_training(
        lm.model,
        lm.family,
        cfg.out,
        enabled=cfg.feature_cache,
        directory=cfg.feature_cache_dir,
        max_gb=cfg.feature_cache_gb,
    )
    t0 = time.perf_counter()
    window = lm.window_seconds
    clips = encode_clips(lm, train_rows, window, label="training rows", show_progress=cfg.show_progress)
    held = encode_clips(lm, heldout_rows, window, label="held-out rows", show_progress=cfg.show_progress)
    encode_minutes = (time.perf_counter() - t0) / 60
    clips, vocab, infeasible = alignable_clips(cfg, clips)
    counts.update(train_rows=len(clips), heldout_rows=len(held), infeasible_rows=infeasible, vocabulary=len(vocab.ids))

    head = CtcHead(lm.model.get_input_embeddings().weight, vocab).to(device)
    schedule = Schedule.of(cfg, len(clips))
    wer, share, _ = heldout_wer(lm, head, held, vocab, device, cfg.batch_size)
    curve = [
        {
            "step": 0,
            "epoch": 0.0,
            "minutes": round(encode_minutes, 2),
            "wer": round(wer, 4),
            "nonblank_share": round(share, 4),
        }
    ]
    info(
        f"align: {len(clips)} rows ({counts['train_audio_hours']:.2f} h), vocabulary {len(vocab.ids)} "
        f"tokens, {schedule.total} steps of {cfg.batch_size}; held-out WER before: {wer:.3f}"
    )
    training = train_projector(cfg, lm, head, params, clips, held, vocab, device, schedule, curve, encode_minutes)
    metrics = final_metrics(lm, head, held, vocab, device, cfg.batch_size, training, encode_minutes)

    for param in lm.model.parameters():
        param.requires_grad = False
    with atomic_output_dir(cfg.out, overwrite=cfg.overwrite) as tmp:
        lm.model.save_pretrained(tmp)
        lm.processor.save_pretrained(tmp)
        save_head(head, vocab, tmp)
        if cfg.compress:
            compression.write(tmp, lm.family, lm.model, kept_per_clip=metrics["kept_tokens_per_clip"])
        write_manifest(
            tmp,
            stage="align",
            config=cfg,
            inputs=[cfg.data, *([cfg.heldout] if cfg.heldout else []), lm.source],
            counts=counts,
            metrics=metrics,
            wall_time=round(time.perf_counter() - started, 2),
            extra={
                "base_model": base_source,
                "window_seconds": window,
                "ctc_head": HEAD_FILE,
                "compressed": cfg.compress,
                **({"feature_cache": report(cache)} if cache is not None else {}),
            },
        )
    return AlignResult(cfg.out, counts, metrics)
