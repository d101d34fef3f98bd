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
    config = EvalConfig(
        data=data, out=out, models=tuple(model or ()), predictions=tuple(predictions or ()),
        names=tuple(name or ()), split=split, overwrite=overwrite, wer_rows=wer_rows,
        max_new_tokens=max_new_tokens, batch_size=batch_size, device=device, dtype=dtype,
        chunk_seconds=chunk_seconds, resamples=resamples, plot=plot, show_progress=progress,
    )
    result = run(config)
    if json_out:
        typer.echo(json.dumps(result.report["summary"], indent=2))
    else:
        Console().print(rich_table(result.report, result.summary))
        typer.echo(f"Report written to {result.out}/report.md")
