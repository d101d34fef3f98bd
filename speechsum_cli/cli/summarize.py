"""``speechsum summarize``: flags -> SummarizeConfig -> stages.summarize.run -> stdout/file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli import generation
from speechsum_cli.cli.options import (
    Device,
    DtypeOption,
    Progress,
    WindowsPerPrompt,
    generation_option,
    json_option,
    long_audio_option,
    model_option,
    server_config,
    server_endpoint_options,
)
from speechsum_cli.cli.output import emit
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.dtypes import Dtype
from speechsum_cli.llm.config import LLMConfig

DEFAULT_MODEL = "microsoft/Phi-4-multimodal-instruct@refs/pr/70"
"""The paper's base student in transformers format (the hub's main branch is remote code);
used when neither --model nor SPEECHSUM_MODEL is set."""

EPILOG = (
    "Examples:\n\n"
    "  speechsum summarize meeting.wav --style bullets --model runs/dpo\n\n"
    "  speechsum summarize recordings/ --query 'What did Alice promise?' --json -o out.json\n\n"
    "  speechsum summarize meeting.wav -m Qwen/Qwen2-Audio-7B-Instruct --server-base-url http://127.0.0.1:8000/v1\n\n"
    "Audio longer than the model's window is split at pauses and its windows read in one prompt, as "
    "far as the model's context allows; a longer recording is summarized part by part and the parts "
    "combined: nothing is truncated. With --server-base-url the model generates on a vLLM-compatible "
    "server (audio in chat messages, one part per window), the same way."
)


class OutputFormat(str, Enum):
    text = "text"
    md = "md"
    json = "json"


@server_endpoint_options()
def summarize(
    audio: Annotated[
        list[Path], typer.Argument(help="Audio files or directories (wav, flac, ogg, mp3).", show_default=False)
    ],
    model: Annotated[
        Optional[str],
        model_option(
            f"Checkpoint dir or hub id  \\[default: $SPEECHSUM_MODEL, else {DEFAULT_MODEL}].", envvar="SPEECHSUM_MODEL"
        ),
    ] = None,
    style: Annotated[
        Optional[str],
        typer.Option(
            "--style",
            "-s",
            help="Style preset: bullets, paragraph, tldr, action-items, decisions, key-points, chapters  \\[default: "
            "paragraph].",
            show_default=False,
        ),
    ] = None,
    query: Annotated[
        Optional[str], typer.Option("--query", "-q", help="Free-text instruction instead of a --style preset.")
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the result to this file instead of stdout.")
    ] = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="text, md, or json (with per-window summaries, timings).")
    ] = OutputFormat.text,
    as_json: Annotated[
        bool,
        json_option(
            help="Same as --format json: the result with per-window summaries and timings as JSON (on stdout, or in "
            "--output)."
        ),
    ] = False,
    max_new_tokens: Annotated[
        int, generation_option("summarize", "max_new_tokens", "per prompt and per combine step")
    ] = generation.default("summarize", "max_new_tokens"),
    temperature: Annotated[float, generation_option("summarize", "temperature")] = generation.default(
        "summarize", "temperature"
    ),
    device: Device = "auto",
    dtype: DtypeOption = Dtype.auto,
    chunk_seconds: Annotated[
        Optional[float],
        typer.Option(help="Window length in seconds  \\[default: the model's audio window].", show_default=False),
    ] = None,
    on_long_audio: Annotated[
        str,
        long_audio_option(
            (LongAudio.chunk, LongAudio.error),
            "chunk: consecutive windows in one prompt (map-reduce beyond the context); error: refuse audio "
            "longer than one window. A summary "
            "covers the whole recording, so truncate and drop are not offered.",
        ),
    ] = LongAudio.chunk.value,
    windows_per_prompt: WindowsPerPrompt = None,
    batch_size: Annotated[int, generation_option("summarize", "batch_size", " (across files)")] = generation.default(
        "summarize", "batch_size"
    ),
    progress: Progress = True,
    server_llm: LLMConfig = None,
) -> None:
    """Summarize recordings of any length with an audio LLM."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.fs import atomic_write_text
    from speechsum_cli.stages.summarize import SummarizeConfig, format_result, run

    if as_json and fmt is OutputFormat.md:
        raise typer.BadParameter("--json is --format json; drop one of --json and --format md.", param_hint="--json")
    if as_json:
        fmt = OutputFormat.json
    quiet_libraries()
    config = SummarizeConfig(
        audio=tuple(audio),
        model=model or DEFAULT_MODEL,
        style=style,
        query=query,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        device=device,
        dtype=dtype,
        chunk_seconds=chunk_seconds,
        on_long_audio=on_long_audio,
        windows_per_prompt=windows_per_prompt,
        batch_size=batch_size,
        show_progress=progress,
        server=server_config(server_llm),
    )
    text = format_result(run(config), fmt.value)
    if output is None:
        emit(text)
    else:
        atomic_write_text(output, text + "\n")
