"""``speechsum eval``: flags -> EvalConfig -> stages.evaluate.run -> rich table on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli import generation
from speechsum_cli.cli.options import (
    Device,
    DtypeOption,
    Overwrite,
    Progress,
    Split,
    WindowsPerPrompt,
    column_options,
    data_option,
    generation_option,
    json_option,
    judge_options,
    model_option,
    out_option,
    server_config,
    server_endpoint_options,
)
from speechsum_cli.cli.output import emit, emit_json, emit_rich, estimate_json
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.dtypes import Dtype
from speechsum_cli.llm.config import LLMConfig

EPILOG = (
    "Examples:\n\n"
    "  speechsum eval --model runs/dpo --model runs/kd --data test/ --out reports/dpo-vs-kd\n\n"
    "  speechsum eval -p cascade.jsonl -p api.jsonl -d test/ -o reports/x --plot "
    "--judge-base-url http://127.0.0.1:8000/v1 --judge-model MODEL\n\n"
    "Systems are compared on the test rows every one of them has; rows that do not join are "
    "listed in report.md and report.json. The judge flags are the same as pairs'. With "
    "--server-base-url the checkpoints generate on a vLLM-compatible server (audio in chat messages)."
)


def judge_settings(judge: Optional[bool], endpoint: LLMConfig, dry_run: bool) -> tuple[LLMConfig | None, str]:
    """The judge's LLMConfig (None when the judge is off) and, when off, why (for the report)."""
    from speechsum_cli.console import warn
    from speechsum_cli.errors import InputError

    if judge is False:
        return None, "turned off with --no-judge"
    if judge is None and not endpoint.configured:
        if dry_run:
            raise InputError(
                f"--dry-run estimates the judge, but no judge is configured: pass "
                f"{endpoint.flag('base_url')} or set ${endpoint.api_key_env}."
            )
        warn(
            f"the LLM judge is off: no {endpoint.flag('base_url')} and ${endpoint.api_key_env} is unset. "
            f"Pass {endpoint.flag('base_url')} or set ${endpoint.api_key_env} to judge, or --no-judge "
            "to silence this warning."
        )
        return None, (
            f"no judge configured: pass {endpoint.flag('base_url')} or set "
            f"${endpoint.api_key_env} (the variable --judge-api-key-env names)"
        )
    from dataclasses import replace

    config = replace(endpoint, temperature=0.0, dry_run=dry_run)
    config.check_key()
    return config, ""


@judge_options("eval")
@server_endpoint_options()
@column_options(("id", "audio", "transcript", "query", "summary"))
def evaluate(
    data: Annotated[
        Path,
        data_option("Test set: dataset dir, .parquet or .jsonl with id, transcript, query (+ audio, summary, style)."),
    ],
    out: Annotated[Path, out_option("Report directory (report.json, report.md, plots, speechsum.json).")],
    judge_llm: LLMConfig,
    server_llm: LLMConfig,
    columns: ColumnMap,
    model: Annotated[Optional[list[str]], model_option("Checkpoint to generate predictions with (repeatable).")] = None,
    predictions: Annotated[
        Optional[list[Path]],
        typer.Option("--predictions", "-p", help="Predictions file with id, prediction (repeatable)."),
    ] = None,
    name: Annotated[
        Optional[list[str]],
        typer.Option("--name", help="Display name per system, in --model..., --predictions... order (repeatable)."),
    ] = None,
    split: Split = None,
    wer_rows: Annotated[
        int,
        typer.Option(
            help="Rows (any length) given the transcription prompt per checkpoint for WER/CER (0 = skip).", min=0
        ),
    ] = 20,
    max_new_tokens: Annotated[
        int,
        generation_option(
            "eval", "max_new_tokens", "per prompt and per combine step (a transcription's grows with its audio)"
        ),
    ] = generation.default("eval", "max_new_tokens"),
    windows_per_prompt: WindowsPerPrompt = None,
    batch_size: Annotated[int, generation_option("eval", "batch_size")] = generation.default("eval", "batch_size"),
    device: Device = "auto",
    dtype: DtypeOption = Dtype.auto,
    chunk_seconds: Annotated[
        Optional[float],
        typer.Option(help="Window length for long audio  \\[default: the model's window].", show_default=False),
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.", min=1)] = 1000,
    plot: Annotated[
        bool, typer.Option("--plot", help="Write a PNG bar chart per metric (pip install 'speechsum\\[plot]').")
    ] = False,
    judge: Annotated[
        Optional[bool],
        typer.Option(
            "--judge/--no-judge",
            help="LLM judge scores 1-7  \\[default: on when --judge-base-url is given or the key variable is set].",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Estimate judge requests, tokens and cost; call nothing, write nothing.")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail when a system lacks a test id or has ids the test set does not (default: warn, and compare the "
            "rows every system has).",
        ),
    ] = False,
    overwrite: Overwrite = False,
    json_out: Annotated[bool, json_option("report.json's summary (instead of the table)")] = False,
    progress: Progress = True,
) -> None:
    """Score summaries side by side: ROUGE, hallucination, style, repetition, length, speed, WER."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.console import plural, warn
    from speechsum_cli.metrics.report import rich_table
    from speechsum_cli.stages.evaluate import EvalConfig, run

    judge_config, judge_off = judge_settings(judge, judge_llm, dry_run)
    quiet_libraries()
    config = EvalConfig(
        data=data,
        out=out,
        models=tuple(model or ()),
        predictions=tuple(predictions or ()),
        names=tuple(name or ()),
        split=split,
        columns=columns,
        overwrite=overwrite,
        wer_rows=wer_rows,
        max_new_tokens=max_new_tokens,
        windows_per_prompt=windows_per_prompt,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        chunk_seconds=chunk_seconds,
        resamples=resamples,
        plot=plot,
        show_progress=progress,
        judge=judge_config,
        judge_concurrency=judge_llm.concurrency,
        judge_off=judge_off,
        strict=strict,
        server=server_config(server_llm),
    )
    result = run(config)
    if dry_run:
        judged = result.judge
        if json_out:
            estimate_json(judged.batch, rows=result.rows_compared, systems=len(result.systems))
            return
        emit(
            f"Dry run: the judge would score {plural(result.rows_compared, 'row')} x "
            f"{plural(len(result.systems), 'system')}; estimated cost ${judged.estimated_cost_usd:.4f} (nothing was "
            f"sent)."
        )
        return
    if json_out:
        emit_json(result.report["summary"], indent=2)
    else:
        emit_rich(rich_table(result.report, result.summary))
        emit(f"Report written to {result.out}/report.md")
        if result.plots:
            emit(f"Plots ({len(result.plots)}): " + ", ".join(str(p) for p in result.plots))
    if result.warning:
        warn(result.warning)
