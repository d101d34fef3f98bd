"""``speechsum distill``: flags -> DistillConfig -> stages.distill.run -> output path on stdout."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from speechsum_cli.cli.sft import LongAudio, Precision, ReportTo

EPILOG = (
    "Examples:\n\n"
    "  speechsum distill --data runs/synth --student runs/sft --teacher Qwen/Qwen2-7B-Instruct --out runs/kd\n\n"
    "  speechsum distill --data runs/synth --student runs/sft --teacher T --out runs/kd --loss jsd --beta 0.5 --lmbda 0.5\n\n"
    "  accelerate launch -m speechsum_cli distill --data runs/synth --student runs/sft --teacher T --out runs/kd\n\n"
    "Each step the student samples summaries from the audio; the teacher reads the transcript + "
    "query in its own chat template and scores the student's tokens; the loss (reverse KL by "
    "default, as in the paper) is on the completion tokens only. Teacher and student must share a "
    "vocabulary (checked first): build the student with 'speechsum compose --llm TEACHER' if not."
)


class Loss(str, Enum):
    reverse_kl = "reverse-kl"
    forward_kl = "forward-kl"
    jsd = "jsd"


class Estimator(str, Enum):
    full = "full"
    sampled = "sampled"


def distill(
    data: Annotated[Path, typer.Option(help="Rows with audio, transcript, query (summary optional).", show_default=False)],
    student: Annotated[str, typer.Option(help="Student audio LLM (an sft adapter dir is merged first).", show_default=False)],
    teacher: Annotated[str, typer.Option(help="Text chat LM reading the transcript: local dir or hub id.", show_default=False)],
    out: Annotated[Path, typer.Option(help="Output directory (adapter + processor + speechsum.json).", show_default=False)],
    loss: Annotated[Loss, typer.Option(help="reverse-kl (paper), forward-kl or jsd.")] = Loss.reverse_kl,
    beta: Annotated[float, typer.Option(help="jsd: teacher weight of the mixture (0 < beta < 1).")] = 0.5,
    estimator: Annotated[Estimator, typer.Option(help="full: divergence over the vocabulary; sampled: policy gradient on the sampled tokens (reverse-kl).")] = Estimator.full,
    lmbda: Annotated[float, typer.Option(help="Share of rows on the student's samples; the rest use the reference summary.", min=0.0, max=1.0)] = 1.0,
    sft_alpha: Annotated[float, typer.Option(help="Weight of cross-entropy on reference summaries (0 = off).", min=0.0)] = 0.0,
    samples_per_prompt: Annotated[int, typer.Option(help="Completions sampled per prompt each step.", min=1)] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (1 = on-policy; 0 = greedy).", min=0.0)] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.", min=0.0, max=1.0)] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Longest sampled completion.", min=1)] = 128,
    chunk_size: Annotated[int, typer.Option(help="Positions per chunk of the divergence (0 = all at once).", min=0)] = 512,
    teacher_device: Annotated[str, typer.Option(help="Teacher device: auto, cpu, cuda, cuda:1...")] = "auto",
    teacher_dtype: Annotated[str, typer.Option(help="Teacher dtype: auto, fp32, bf16, fp16.")] = "auto",
    teacher_system: Annotated[str | None, typer.Option(help="System message for the teacher  \\[default: its template's].", show_default=False)] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Held-out rows: reverse KL on fixed samples before and after.")] = None,
    split: Annotated[str | None, typer.Option(help="Split of a DatasetDict in --data.")] = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.", min=1)] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.", min=1)] = 32,
    lora_targets: Annotated[str | None, typer.Option(help="Comma-separated module names inside the language model  \\[default: the family's].", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning of the LM + projector.")] = False,
    epochs: Annotated[float, typer.Option(help="Passes over the rows (ignored with --max-steps).", min=0.0)] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Optimizer steps; > 0 overrides --epochs.")] = -1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.", min=0.0)] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Rows per device per step.", min=1)] = 2,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.", min=1)] = 1,
    warmup: Annotated[float, typer.Option(help="Warmup: fraction of steps if < 1, else steps.", min=0.0)] = 0.0,
    on_long_audio: Annotated[LongAudio, typer.Option(help="Rows with audio over the model's window: error, chunk (all windows in one prompt), truncate or drop.")] = LongAudio.error,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for memory.")] = False,
    precision: Annotated[Precision, typer.Option(help="auto = bf16/fp16 on GPU, fp32 on CPU.")] = Precision.auto,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Write a merged full checkpoint instead of the adapter.")] = False,
    report_to: Annotated[ReportTo, typer.Option(help="Experiment tracker.")] = ReportTo.none,
    logging_steps: Annotated[int, typer.Option(help="Log loss, KL, log-probs, lengths every N steps.", min=1)] = 10,
    save_steps: Annotated[int, typer.Option(help="Resumable checkpoint every N steps.", min=1)] = 500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result (path, counts, metrics) as JSON.")] = False,
) -> None:
    """On-policy distillation from a text LLM reading the transcript into the audio student (stage 2)."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.distill import DistillConfig, run

    quiet_libraries()
    targets = tuple(t.strip() for t in lora_targets.split(",") if t.strip()) if lora_targets else None
    config = DistillConfig(
        data=data, student=student, teacher=teacher, out=out, loss=loss.value, beta=beta,
        estimator=estimator.value, lmbda=lmbda, sft_alpha=sft_alpha, samples_per_prompt=samples_per_prompt,
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, chunk_size=chunk_size,
        teacher_device=teacher_device, teacher_dtype=teacher_dtype, teacher_system=teacher_system,
        eval_data=eval_data, split=split, lora_r=lora_r, lora_alpha=lora_alpha, lora_targets=targets,
        full=full, epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
        warmup=warmup, on_long_audio=on_long_audio.value, gradient_checkpointing=gradient_checkpointing,
        precision=precision.value, resume=resume, merge=merge, report_to=report_to.value,
        logging_steps=logging_steps, save_steps=save_steps, seed=seed, overwrite=overwrite,
    )
    result = run(config)
    if as_json:
        typer.echo(json.dumps({"out": str(result.out), "counts": result.counts, "metrics": result.metrics}))
    else:
        typer.echo(str(result.out))
