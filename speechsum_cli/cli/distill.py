"""``speechsum distill``: flags -> DistillConfig -> stages.distill.run -> output path on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli import dtypes, generation
from speechsum_cli.cli.options import (
    TEACHER_PANEL,
    Json,
    Split,
    data_option,
    generation_option,
    model_option,
    out_option,
    teacher_endpoint_options,
    train_options,
)
from speechsum_cli.cli.output import echo_result
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.dtypes import Dtype
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.stages.distill.config import Estimator, Loss, TeacherLogprobs
from speechsum_cli.training.settings import TrainSettings

EPILOG = (
    "Examples:\n\n"
    "  speechsum distill --data runs/synth --model runs/sft --teacher Qwen/Qwen2-7B-Instruct --out runs/kd\n\n"
    "  speechsum distill -d runs/synth -m runs/sft --teacher T -o runs/kd --loss jsd --beta 0.5 --lmbda 0.5\n\n"
    "  accelerate launch -m speechsum_cli distill --data runs/synth --model runs/sft --teacher T --out runs/kd\n\n"
    "  speechsum distill -d runs/synth -m runs/sft --teacher Qwen/Qwen2-72B-Instruct --teacher-base-url "
    "http://gpu7:8000/v1 --estimator sampled -o runs/kd\n\n"
    "Each step the student (--model; --student is a synonym) samples summaries from the audio; the "
    "teacher reads the transcript + query in its own chat template and scores the student's tokens; "
    "the loss (reverse KL by default, as in the paper) is on the completion tokens only. Teacher and "
    "student must share a vocabulary (checked first): build the student with 'speechsum compose "
    "--llm TEACHER' if not. Interrupted? Run the same command again: it resumes."
)


def remote_teacher(endpoint: LLMConfig, teacher: str) -> LLMConfig | None:
    """The teacher's server as the LLM client's config (model: --teacher unless --teacher-model), or
    None without --teacher-base-url. Priced at $0: a self-hosted server; requests and tokens are
    counted. No response cache: the student's samples are new every step."""
    if endpoint.base_url is None:
        return None
    from dataclasses import replace

    model = endpoint.model or teacher
    return replace(endpoint, cache_dir=None, temperature=0.0, model=model, prices={model: (0.0, 0.0)})


@teacher_endpoint_options()
@train_options("distill", columns=("id", "audio", "transcript", "query", "summary"))
def distill(
    data: Annotated[Path, data_option("Rows with audio, transcript, query (summary optional).")],
    model: Annotated[str, model_option("Student audio LLM (an sft adapter dir is merged first).", "--student")],
    teacher: Annotated[
        str,
        typer.Option(
            help="Text chat LM reading the transcript: local dir or hub id (with --teacher-base-url: its tokenizer and "
            "chat template).",
            show_default=False,
        ),
    ],
    out: Annotated[Path, out_option("Output directory (adapter + processor + speechsum.json).")],
    train: TrainSettings,
    columns: ColumnMap,
    teacher_llm: LLMConfig,
    loss: Annotated[Loss, typer.Option(help="reverse-kl (paper), forward-kl or jsd.")] = Loss.reverse_kl,
    beta: Annotated[float, typer.Option(help="jsd: teacher weight of the mixture (0 < beta < 1).")] = 0.5,
    estimator: Annotated[
        Estimator,
        typer.Option(
            help="full: divergence over the vocabulary; sampled: policy gradient on the sampled tokens (reverse-kl)."
        ),
    ] = Estimator.full,
    lmbda: Annotated[
        float,
        typer.Option(
            help="Share of rows on the student's samples; the rest use the reference summary.", min=0.0, max=1.0
        ),
    ] = 1.0,
    sft_alpha: Annotated[
        float, typer.Option(help="Weight of cross-entropy on reference summaries (0 = off).", min=0.0)
    ] = 0.0,
    samples_per_prompt: Annotated[int, typer.Option(help="Completions sampled per prompt each step.", min=1)] = 1,
    temperature: Annotated[float, generation_option("distill", "temperature")] = generation.default(
        "distill", "temperature"
    ),
    top_p: Annotated[float, generation_option("distill", "top_p")] = generation.default("distill", "top_p"),
    max_new_tokens: Annotated[
        int, generation_option("distill", "max_new_tokens", "per sampled completion")
    ] = generation.default("distill", "max_new_tokens"),
    chunk_size: Annotated[
        int, typer.Option(help="Positions per chunk of the divergence (0 = all at once).", min=0)
    ] = 512,
    teacher_device: Annotated[str, typer.Option(help="Teacher device: auto, cpu, cuda, cuda:1...")] = "auto",
    teacher_dtype: Annotated[Dtype, typer.Option(help=f"Teacher dtype: {dtypes.HELP}")] = Dtype.auto,
    teacher_system: Annotated[
        Optional[str],
        typer.Option(help="System message for the teacher  \\[default: its template's].", show_default=False),
    ] = None,
    eval_data: Annotated[
        Optional[Path], typer.Option(help="Held-out rows: reverse KL on fixed samples before and after.")
    ] = None,
    teacher_logprobs: Annotated[
        TeacherLogprobs,
        typer.Option(
            help="How the teacher's server returns the prompt's log-probs: prompt_logprobs (vLLM), echo (echo + "
            "logprobs), or auto (asked once).",
            rich_help_panel=TEACHER_PANEL,
        ),
    ] = TeacherLogprobs.auto,
    teacher_top_k: Annotated[
        int,
        typer.Option(
            help="--estimator full with a remote teacher: log-probs per position the server returns; the rest of the "
            "mass is one tail bucket.",
            min=1,
            rich_help_panel=TEACHER_PANEL,
        ),
    ] = 20,
    split: Split = None,
    as_json: Json = False,
) -> None:
    """On-policy distillation from a text LLM reading the transcript into the audio student (stage 2)."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.distill import DistillConfig, run

    quiet_libraries()
    config = DistillConfig(
        data=data,
        model=model,
        teacher=teacher,
        out=out,
        train=train,
        loss=loss,
        beta=beta,
        estimator=estimator,
        lmbda=lmbda,
        sft_alpha=sft_alpha,
        samples_per_prompt=samples_per_prompt,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        chunk_size=chunk_size,
        teacher_device=teacher_device,
        teacher_dtype=teacher_dtype,
        teacher_system=teacher_system,
        eval_data=eval_data,
        split=split,
        columns=columns,
        teacher_llm=remote_teacher(teacher_llm, teacher),
        teacher_logprobs=teacher_logprobs,
        teacher_top_k=teacher_top_k,
    )
    echo_result(run(config), as_json)
