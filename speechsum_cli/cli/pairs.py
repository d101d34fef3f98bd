"""``speechsum pairs``: flags -> PairsConfig -> stages.pairs.run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from speechsum_cli import generation
from speechsum_cli.cli.options import (
    Device,
    DtypeOption,
    Overwrite,
    Progress,
    Split,
    column_options,
    data_option,
    generation_option,
    json_option,
    judge_options,
    long_audio_option,
    model_option,
    out_option,
    server_config,
    server_endpoint_options,
)
from speechsum_cli.cli.output import emit, emit_json, estimate_json
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.dtypes import Dtype
from speechsum_cli.llm.config import LLMConfig

EPILOG = (
    "Examples:\n\n"
    "  speechsum pairs --model runs/kd --data prompts/ --out runs/pairs --judge-base-url http://127.0.0.1:8000/v1 "
    "--judge-model MODEL\n\n"
    "  speechsum pairs -m runs/kd -d prompts/ -o runs/pairs --judge offline\n\n"
    "  speechsum pairs -m runs/kd -d prompts/ -o runs/pairs --judge offline --teacher Qwen/Qwen2-7B-Instruct\n\n"
    "The pairwise judge sees both orders of every pair and keeps only consistent verdicts. The "
    "judge flags are the same as eval's. --teacher adds the text teacher's own greedy answer (it "
    "reads the transcript, as in distill) to each prompt's k candidates; the judge does not know "
    "which candidate is whose, and each pair records chosen_source / rejected_source. With "
    "--server-base-url the student samples on a vLLM-compatible server (one request per prompt with n = k, "
    "temperature, top_p and a seed per prompt)."
)


class Judge(str, Enum):
    pairwise = "pairwise"
    rubric = "rubric"
    offline = "offline"


@judge_options("pairs")
@server_endpoint_options()
@column_options(("id", "audio", "transcript", "query"))
def pairs(
    model: Annotated[str, model_option("Checkpoint that samples candidates (the KD student).")],
    data: Annotated[Path, data_option("Prompts: dataset dir/.parquet/.jsonl with id, audio, transcript, query.")],
    out: Annotated[Path, out_option("Output dataset directory of preference pairs.")],
    judge_llm: LLMConfig,
    server_llm: LLMConfig,
    columns: ColumnMap,
    k: Annotated[int, typer.Option("--k", help="Candidates sampled per prompt.", min=2)] = 2,
    temperature: Annotated[float, generation_option("pairs", "temperature")] = generation.default(
        "pairs", "temperature"
    ),
    top_p: Annotated[float, generation_option("pairs", "top_p")] = generation.default("pairs", "top_p"),
    max_new_tokens: Annotated[int, generation_option("pairs", "max_new_tokens", "per candidate")] = generation.default(
        "pairs", "max_new_tokens"
    ),
    batch_size: Annotated[int, generation_option("pairs", "batch_size")] = generation.default("pairs", "batch_size"),
    judge: Annotated[
        Judge, typer.Option(help="pairwise (the paper's), rubric (1-7 scores), or offline (no LLM).")
    ] = Judge.pairwise,
    min_margin: Annotated[float, typer.Option(help="rubric: keep pairs whose best - worst score >= this.")] = 1.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Sample, then estimate judge requests and cost; send and write nothing.")
    ] = False,
    on_long_audio: Annotated[
        str,
        long_audio_option(
            (LongAudio.error, LongAudio.chunk, LongAudio.drop),
            "Audio longer than the model's window: error, chunk (its windows in one prompt, as sft/distill/dpo "
            "read it), or drop (counted). A candidate answers the whole recording, so truncate is not "
            "offered.",
        ),
    ] = LongAudio.error.value,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="Text chat LM (local dir or hub id) reading transcript + query, as distill's teacher: its "
            "greedy answer joins each prompt's candidates.",
            show_default=False,
        ),
    ] = None,
    teacher_system: Annotated[
        str | None,
        typer.Option(help="System message for the teacher  \\[default: its template's].", show_default=False),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Sampling seed (also places the teacher's answer among the candidates).")
    ] = 0,
    device: Device = "auto",
    dtype: DtypeOption = Dtype.auto,
    split: Split = None,
    overwrite: Overwrite = False,
    as_json: Annotated[bool, json_option("the output path and counts")] = False,
    progress: Progress = True,
) -> None:
    """Sample k candidates per prompt and let a judge build chosen/rejected pairs (stage 3)."""
    from dataclasses import replace

    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.console import plural, warn
    from speechsum_cli.errors import InputError
    from speechsum_cli.stages.pairs import PairsConfig, run

    llm = None
    if judge is not Judge.offline:
        llm = replace(judge_llm, temperature=0.0, dry_run=dry_run)
        llm.check_key()
    elif dry_run:
        raise InputError("--dry-run estimates LLM judge costs; the offline judge costs nothing. Drop --dry-run.")
    quiet_libraries()
    config = PairsConfig(
        model=model,
        data=data,
        out=out,
        k=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        judge=judge.value,
        min_margin=min_margin,
        llm=llm,
        concurrency=judge_llm.concurrency,
        on_long_audio=on_long_audio,
        seed=seed,
        device=device,
        dtype=dtype,
        teacher=teacher,
        teacher_system=teacher_system,
        split=split,
        columns=columns,
        overwrite=overwrite,
        show_progress=progress,
        server=server_config(server_llm),
    )
    result = run(config)
    if dry_run:
        batch = result.llm
        if as_json:
            estimate_json(batch, counts=result.counts)
            return
        emit(
            f"Dry run: {batch.estimated_requests} judge requests "
            f"(~{batch.estimated_input_tokens} input, ~{batch.estimated_output_tokens} output "
            f"tokens), estimated ${batch.estimated_cost_usd:.4f}; nothing was sent or written."
        )
        return
    c = result.counts
    if as_json:
        emit_json({"out": str(result.out), "counts": c})
        if result.warning:
            warn(result.warning)
        return
    lost = {
        key: c.get(key, 0)
        for key in (
            "ties",
            "inconsistent",
            "below_margin",
            "judge_failed",
            "not_judged_budget",
            "prompts_without_two_distinct_candidates",
            "long_audio_dropped",
        )
    }
    detail = ", ".join(f"{key.replace('_', ' ')} {n}" for key, n in lost.items() if n)
    teacher_part = (
        ""
        if "chosen_teacher" not in c
        else (
            f"; the teacher's answer was chosen in {c['chosen_teacher']} and rejected in {c['rejected_teacher']} "
            f"of them ({c['teacher_candidates']} of {c['teacher_answers']} answers were candidates)"
        )
    )
    emit(
        f"{result.out}: {plural(c['pairs_kept'], 'pair')} kept of {plural(c['prompts'], 'prompt')}"
        + (f" ({detail})" if detail else "")
        + teacher_part
    )
    if result.warning:
        warn(result.warning)
