"""``speechsum sft``: flags -> SftConfig -> stages.sft.run -> output path on stdout."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  speechsum sft --data runs/synth --model Qwen/Qwen2-Audio-7B-Instruct --out runs/sft\n\n"
    "  speechsum sft --data runs/synth --model runs/composed --out runs/sft --lora-r 32 --merge\n\n"
    "  accelerate launch --num_processes 4 -m speechsum_cli sft --data runs/synth --model M --out runs/sft\n\n"
    "Defaults follow the paper: audio encoder frozen, projector trained, LoRA r=16 alpha=32 on the "
    "language model, loss on the summary tokens only, 2 epochs. Audio longer than the model's "
    "window is an error unless --on-long-audio chunk|truncate|drop (counts go to speechsum.json)."
)


class LongAudio(str, Enum):
    error = "error"
    chunk = "chunk"
    truncate = "truncate"
    drop = "drop"


class ReportTo(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def sft(
    data: Annotated[Path, typer.Option(help="Training rows: save_to_disk dir, .parquet or .jsonl with audio, query, summary.", show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", help="Base checkpoint dir or hub id (any supported family, or compose output).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Output directory (adapter + processor + speechsum.json).", show_default=False)],
    split: Annotated[Optional[str], typer.Option(help="Split of a DatasetDict in --data.")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Separate rows for eval loss.")] = None,
    eval_split: Annotated[float, typer.Option(help="Fraction of --data held out for eval loss.", min=0.0, max=0.99)] = 0.0,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.", min=1)] = 32,
    lora_dropout: Annotated[float, typer.Option(help="Dropout on the LoRA branch.", min=0.0, max=1.0)] = 0.05,
    lora_targets: Annotated[Optional[str], typer.Option(help="Comma-separated module names inside the language model  \\[default: the family's].", show_default=False)] = None,
    train_encoder: Annotated[bool, typer.Option("--train-encoder", help="Also train the audio encoder (frozen by default).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning of LM + projector instead of LoRA.")] = False,
    epochs: Annotated[float, typer.Option(help="Passes over the data (ignored with --max-steps).", min=0.0)] = 2.0,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps; > 0 overrides --epochs.")] = -1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.", min=0.0)] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Rows per device per step.", min=1)] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.", min=1)] = 1,
    warmup: Annotated[float, typer.Option(help="Warmup: fraction of steps if < 1, else steps.", min=0.0)] = 0.03,
    group_by_length: Annotated[bool, typer.Option("--group-by-length/--no-group-by-length", help="Batch rows of similar audio+text length together.")] = True,
    on_long_audio: Annotated[LongAudio, typer.Option(help="Rows with audio over the model's window: error; chunk (all windows in one prompt: nothing lost, longer sequences); truncate (to the first window); drop.")] = LongAudio.error,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")] = False,
    precision: Annotated[Precision, typer.Option(help="auto = bf16/fp16 on GPU, fp32 on CPU.")] = Precision.auto,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Write a merged full checkpoint instead of the adapter.")] = False,
    report_to: Annotated[ReportTo, typer.Option(help="Experiment tracker.")] = ReportTo.none,
    logging_steps: Annotated[int, typer.Option(help="Log the train loss every N steps.", min=1)] = 10,
    save_steps: Annotated[int, typer.Option(help="Resumable checkpoint every N steps.", min=1)] = 500,
    eval_steps: Annotated[Optional[int], typer.Option(help="Eval every N steps  \\[default: every epoch].", min=1, show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    num_workers: Annotated[int, typer.Option(help="DataLoader workers decoding audio.", min=0)] = 0,
    audio_column: Annotated[str, typer.Option(help="Column holding the audio.")] = "audio",
    query_column: Annotated[str, typer.Option(help="Column holding the query.")] = "query",
    summary_column: Annotated[str, typer.Option(help="Column holding the target summary.")] = "summary",
    id_column: Annotated[str, typer.Option(help="Column holding row ids.")] = "id",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result (path, counts, metrics) as JSON.")] = False,
) -> None:
    """Fine-tune an audio LLM on (audio, query) -> summary rows: LoRA by default."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.data.dataset import ColumnMap
    from speechsum_cli.stages.sft import SftConfig, run

    quiet_libraries()
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    config = SftConfig(
        data=data, model=model, out=out, split=split,
        columns=ColumnMap(id=id_column, audio=audio_column, query=query_column, summary=summary_column),
        eval_data=eval_data, eval_split=eval_split, lora_r=lora_r, lora_alpha=lora_alpha,
        lora_dropout=lora_dropout, lora_targets=targets, train_encoder=train_encoder, full=full,
        epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
        warmup=warmup, group_by_length=group_by_length, on_long_audio=on_long_audio.value,
        gradient_checkpointing=gradient_checkpointing, precision=precision.value, resume=resume,
        merge=merge, report_to=report_to.value, logging_steps=logging_steps, save_steps=save_steps,
        eval_steps=eval_steps, seed=seed, num_workers=num_workers, overwrite=overwrite,
    )
    result = run(config)
    if as_json:
        typer.echo(json.dumps({"out": str(result.out), "counts": result.counts, "metrics": result.metrics}))
    else:
        typer.echo(str(result.out))
