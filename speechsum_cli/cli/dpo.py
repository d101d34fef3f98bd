"""``speechsum dpo``: flags -> DpoConfig -> stages.dpo.run -> output path on stdout."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli.cli.sft import LongAudio, Precision, ReportTo

EPILOG = (
    "Examples:\n\n"
    "  speechsum dpo --ckpt runs/kd --pairs runs/pairs --out runs/dpo\n\n"
    "  accelerate launch --num_processes 4 -m speechsum_cli dpo --ckpt runs/kd --pairs runs/pairs --out runs/dpo\n\n"
    "The reference policy is --ckpt itself: a new LoRA trains on its (merged) weights and the "
    "reference is the same network with that LoRA disabled (--full: a frozen copy). 1 epoch, "
    "beta 0.1 by default, as in the paper."
)


class Loss(str, Enum):
    sigmoid = "sigmoid"
    ipo = "ipo"
    hinge = "hinge"


def dpo(
    ckpt: Annotated[str, typer.Option(help="Starting checkpoint and DPO reference (the KD model; adapter dirs are merged).", show_default=False)],
    pairs: Annotated[Path, typer.Option(help="Preference pairs: 'speechsum pairs' output (id, audio, query, chosen, rejected).", show_default=False)],
    out: Annotated[Path, typer.Option(help="Output directory (adapter + processor + speechsum.json).", show_default=False)],
    beta: Annotated[float, typer.Option(help="KL strength towards the reference.", min=0.0)] = 0.1,
    loss: Annotated[Loss, typer.Option(help="sigmoid (DPO), ipo or hinge.")] = Loss.sigmoid,
    rpo_alpha: Annotated[float, typer.Option(help="Weight of an NLL term on the chosen answers (0 = off).", min=0.0)] = 0.0,
    split: Annotated[Optional[str], typer.Option(help="Split of a DatasetDict in --pairs.")] = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.", min=1)] = 32,
    lora_targets: Annotated[Optional[str], typer.Option(help="Comma-separated module names inside the language model  \\[default: the family's].", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning; the reference is a frozen copy.")] = False,
    epochs: Annotated[float, typer.Option(help="Passes over the pairs (ignored with --max-steps).", min=0.0)] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps; > 0 overrides --epochs.")] = -1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.", min=0.0)] = 5e-6,
    batch_size: Annotated[int, typer.Option(help="Pairs per device per step.", min=1)] = 2,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.", min=1)] = 1,
    warmup: Annotated[float, typer.Option(help="Warmup: fraction of steps if < 1, else steps.", min=0.0)] = 0.1,
    on_long_audio: Annotated[LongAudio, typer.Option(help="Pairs with audio over the model's window: error, truncate or drop.")] = LongAudio.error,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")] = False,
    precision: Annotated[Precision, typer.Option(help="auto = bf16/fp16 on GPU, fp32 on CPU.")] = Precision.auto,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Write a merged full checkpoint instead of the adapter.")] = False,
    report_to: Annotated[ReportTo, typer.Option(help="Experiment tracker.")] = ReportTo.none,
    logging_steps: Annotated[int, typer.Option(help="Log loss and rewards every N steps.", min=1)] = 10,
    save_steps: Annotated[int, typer.Option(help="Resumable checkpoint every N steps.", min=1)] = 500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result (path, counts, metrics) as JSON.")] = False,
) -> None:
    """Direct preference optimization on judge-built pairs, reference = --ckpt (stage 3)."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.dpo import DpoConfig, run

    quiet_libraries()
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    config = DpoConfig(
        ckpt=ckpt, pairs=pairs, out=out, beta=beta, loss=loss.value, rpo_alpha=rpo_alpha, split=split,
        lora_r=lora_r, lora_alpha=lora_alpha, lora_targets=targets, full=full, epochs=epochs,
        max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum, warmup=warmup,
        on_long_audio=on_long_audio.value, gradient_checkpointing=gradient_checkpointing,
        precision=precision.value, resume=resume, merge=merge, report_to=report_to.value,
        logging_steps=logging_steps, save_steps=save_steps, seed=seed, overwrite=overwrite,
    )
    result = run(config)
    if as_json:
        typer.echo(json.dumps({"out": str(result.out), "counts": result.counts, "metrics": result.metrics}))
    else:
        typer.echo(str(result.out))
