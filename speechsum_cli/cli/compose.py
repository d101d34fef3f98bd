"""``speechsum compose``: flags -> ComposeConfig -> stages.compose.run -> the path on stdout (a summary on stderr)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechsum_cli.cli.options import Overwrite, json_option, out_option
from speechsum_cli.cli.output import emit, emit_json

EPILOG = (
    "Examples:\n\n"
    "  speechsum compose --encoder openai/whisper-small --llm HuggingFaceTB/SmolLM2-360M-Instruct "
    "--family qwen2_audio --out runs/student\n\n"
    "  speechsum compose --encoder whisper-base/ --llm models/llm.Q8_0.gguf --family voxtral "
    "--window-seconds 20 --out runs/student\n\n"
    "The projector is random: train it with 'speechsum sft --model runs/student'. Pick an LLM "
    "that shares the tokenizer of your teacher, so distillation can match token distributions."
)


def compose(
    encoder: Annotated[
        str,
        typer.Option(
            "--encoder",
            help="Whisper checkpoint: local dir or hub id (WhisperForConditionalGeneration or WhisperModel).",
            show_default=False,
        ),
    ],
    llm: Annotated[
        str,
        typer.Option(
            "--llm", help="Causal LM: local dir, hub id, .gguf file, or OWNER/REPO/FILE.gguf.", show_default=False
        ),
    ],
    family: Annotated[
        str,
        typer.Option(
            "--family",
            help="Family of the checkpoint to build: qwen2_audio, audioflamingo3 or voxtral.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, out_option("Output checkpoint directory.")],
    window_seconds: Annotated[
        int | None,
        typer.Option(
            help="Audio window in seconds  \\[default: all the encoder's positions cover: 30 for Whisper].",
            min=1,
            show_default=False,
        ),
    ] = None,
    overwrite: Overwrite = False,
    seed: Annotated[int, typer.Option(help="Seed of the projector's random initialisation.")] = 0,
    as_json: Annotated[bool, json_option("the result (path, family, parameter counts, tokens added, window)")] = False,
) -> None:
    """Build a native audio-LLM checkpoint from a Whisper encoder + any causal LM (fresh projector)."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.console import info
    from speechsum_cli.stages.compose import ComposeConfig, run

    quiet_libraries()
    result = run(
        ComposeConfig(
            encoder=encoder,
            llm=llm,
            family=family,
            out=out,
            window_seconds=window_seconds,
            overwrite=overwrite,
            seed=seed,
        )
    )
    p = result.parameters
    info(f"composed {result.family} -> {result.out}")
    info(
        f"parameters: encoder {p['encoder']:,} · projector {p['projector']:,} (random) · "
        f"language model {p['language_model']:,}"
    )
    added = ", ".join(result.added_tokens) if result.added_tokens else "none"
    info(
        f"vocab: {result.vocab_size[0]:,} -> {result.vocab_size[1]:,} rows; added tokens: {added}; "
        f"audio_token_id {result.audio_token_id}"
    )
    info(f"window: {result.window_seconds} s; chat template: {result.chat_template}")
    for note in result.notes:
        info(note)
    if as_json:
        from dataclasses import asdict

        emit_json(asdict(result))
    else:
        emit(str(result.out))
