"""``speechsum summarize``: flags -> SummarizeConfig -> stages.summarize.run -> stdout/file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

DEFAULT_MODEL = "microsoft/Phi-4-multimodal-instruct@refs/pr/70"
"""The paper's base student in transformers format (the hub's main branch is remote code);
used when neither --model nor SPEECHSUM_MODEL is set."""

EPILOG = (
    "Examples:\n\n"
    "  speechsum summarize meeting.wav --style bullets --model runs/dpo\n\n"
    "  speechsum summarize recordings/ --query 'What did Alice promise?' --format json -o out.json\n\n"
    "Audio longer than the model's window is split at pauses, each window summarized, and the "
    "parts combined: nothing is truncated."
)


class OutputFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"


class LongAudio(str, Enum):
    chunk = "chunk"
    error = "error"


def summarize(
    audio: Annotated[list[Path], typer.Argument(help="Audio files or directories (wav, flac, ogg, mp3).", show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", "-m", envvar="SPEECHSUM_MODEL", help=f"Checkpoint dir or hub id  \\[default: $SPEECHSUM_MODEL, else {DEFAULT_MODEL}].", show_default=False)] = None,
    style: Annotated[Optional[str], typer.Option("--style", "-s", help="Style preset: bullets, paragraph, tldr, action-items, decisions, key-points, chapters  \\[default: paragraph].", show_default=False)] = None,
    query: Annotated[Optional[str], typer.Option("--query", "-q", help="Free-text instruction instead of a --style preset.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the result to this file instead of stdout.")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="text, md, or json (with per-window summaries, timings).")] = OutputFormat.text,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per window and per combine step.", min=1)] = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy (reproducible); > 0 samples.", min=0.0)] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    chunk_seconds: Annotated[Optional[float], typer.Option(help="Window length in seconds  \\[default: the model's audio window].", show_default=False)] = None,
    on_long_audio: Annotated[LongAudio, typer.Option(help="chunk: map-reduce over windows; error: refuse audio longer than one window.")] = LongAudio.chunk,
    batch_size: Annotated[int, typer.Option(help="Windows generated together.", min=1)] = 4,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Summarize recordings of any length with an audio LLM."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.fs import atomic_write_text
    from speechsum_cli.stages.summarize import SummarizeConfig, format_result, run

    quiet_libraries()
    config = SummarizeConfig(
        audio=tuple(audio), model=model or DEFAULT_MODEL, style=style, query=query,
        max_new_tokens=max_new_tokens, temperature=temperature, device=device, dtype=dtype,
        chunk_seconds=chunk_seconds, on_long_audio=on_long_audio.value, batch_size=batch_size,
        show_progress=progress,
    )
    text = format_result(run(config), fmt.value)
    if output is None:
        typer.echo(text)
    else:
        atomic_write_text(output, text + "\n")
