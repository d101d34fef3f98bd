"""``speechsum eval``: flags -> EvalConfig -> stages.evaluate.run -> rich table on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  speechsum eval --model runs/dpo --model runs/kd --data test/ --out reports/dpo-vs-kd\n\n"
    "  speechsum eval --predictions cascade.jsonl --predictions api.jsonl --data test/ --out reports/x --plot\n\n"
    "Systems are compared on the test rows every one of them has; rows that do not join are "
    "listed in report.md and report.json."
)


def judge_settings(judge: Optional[bool], base_url: Optional[str], model: str, key_env: str,
                   cache: Optional[Path], max_cost: Optional[float], dry_run: bool, max_tokens: int = 512):
    """The judge's LLMConfig, or None when the judge is off (explicitly, or nothing configured)."""
    import os

    from speechsum_cli.console import warn
    from speechsum_cli.errors import InputError
    from speechsum_cli.llm import LLMConfig

    configured = base_url is not None or bool(os.environ.get(key_env))
    if judge is False:
        return None
    if judge is None and not configured:
        if dry_run:
            raise InputError("--dry-run estimates the judge, but no judge is configured: pass --judge-base-url or set the key variable.")
        warn(f"the LLM judge is off: no --judge-base-url and ${key_env} is unset. "
             "Pass --no-judge to silence this.")
        return None
    return LLMConfig(
        base_url=base_url, model=model, api_key_env=key_env, temperature=0.0, max_tokens=max_tokens,
        max_cost=max_cost, dry_run=dry_run,
        cache_dir=cache or Path.home() / ".cache" / "speechsum" / "llm",
    )


def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Test set: dataset dir, .parquet or .jsonl with id, transcript, query (+ audio, summary, style).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory (report.json, report.md, plots, speechsum.json).")],
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Checkpoint to generate predictions with (repeatable).")] = None,
    predictions: Annotated[Optional[list[Path]], typer.Option("--predictions", "-p", help="Predictions file with id, prediction (repeatable).")] = None,
    name: Annotated[Optional[list[str]], typer.Option("--name", help="Display name per system, in --model..., --predictions... order (repeatable).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of a saved DatasetDict test set.")] = None,
    wer_rows: Annotated[int, typer.Option(help="Rows given the transcription prompt per checkpoint for WER/CER (0 = skip).", min=0)] = 20,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per window / combine step.", min=1)] = 512,
    batch_size: Annotated[int, typer.Option(help="Windows generated together.", min=1)] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    chunk_seconds: Annotated[Optional[float], typer.Option(help="Window length for long audio  \\[default: the model's window].", show_default=False)] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.", min=1)] = 1000,
    plot: Annotated[bool, typer.Option("--plot", help="Write a PNG bar chart per metric (pip install 'speechsum[plot]').")] = False,
    judge: Annotated[Optional[bool], typer.Option("--judge/--no-judge", help="LLM judge scores 1-7 (default: on when --judge-base-url is given or the key variable is set).", show_default=False)] = None,
    judge_base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint of the judge, e.g. http://127.0.0.1:8000/v1.")] = None,
    judge_model: Annotated[str, typer.Option(help="Judge model (the paper: gpt-4.1).")] = "gpt-4.1",
    judge_api_key_env: Annotated[str, typer.Option(help="Environment variable holding the judge's API key.")] = "OPENAI_API_KEY",
    judge_concurrency: Annotated[int, typer.Option(help="Judge requests in flight.", min=1)] = 8,
    judge_max_tokens: Annotated[int, typer.Option(help="Reply budget per judge request.", min=16)] = 512,
    judge_cache: Annotated[Optional[Path], typer.Option(help="Judge response cache  \\[default: ~/.cache/speechsum/llm].", show_default=False)] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop judging before spending more than this many USD.", min=0.0)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate judge requests, tokens and cost; call nothing, write nothing.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out directory.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print report.json's summary on stdout instead of the table.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
) -> None:
    """Score summaries side by side: ROUGE, hallucination, style, repetition, length, speed, WER."""
    import json

    from rich.console import Console

    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.metrics.report import rich_table
    from speechsum_cli.stages.evaluate import EvalConfig, run

    quiet_libraries()
    judge_config = judge_settings(judge, judge_base_url, judge_model, judge_api_key_env, judge_cache, max_cost, dry_run,
                                  judge_max_tokens)
    config = EvalConfig(
        data=data, out=out, models=tuple(model or ()), predictions=tuple(predictions or ()),
        names=tuple(name or ()), split=split, overwrite=overwrite, wer_rows=wer_rows,
        max_new_tokens=max_new_tokens, batch_size=batch_size, device=device, dtype=dtype,
        chunk_seconds=chunk_seconds, resamples=resamples, plot=plot, show_progress=progress,
        judge=judge_config, judge_concurrency=judge_concurrency,
    )
    result = run(config)
    if dry_run:
        judged = result.judge
        typer.echo(f"Dry run: the judge would score {result.rows_compared} rows x {len(result.systems)} "
                   f"system(s); estimated cost ${judged.estimated_cost_usd:.4f} (nothing was sent).")
        return
    if json_out:
        typer.echo(json.dumps(result.report["summary"], indent=2))
    else:
        Console().print(rich_table(result.report, result.summary))
        typer.echo(f"Report written to {result.out}/report.md")
