"""``speechsum sft``: flags -> SftConfig -> stages.sft.run -> output path on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli.cli.options import (
    Json,
    Split,
    data_option,
    model_option,
    out_option,
    train_options,
)
from speechsum_cli.cli.output import echo_result
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.training.settings import TrainSettings

EPILOG = (
    "Examples:\n\n"
    "  speechsum sft --data runs/synth --model Qwen/Qwen2-Audio-7B-Instruct --out runs/sft\n\n"
    "  speechsum sft -d runs/synth -m runs/composed -o runs/sft --lora-r 32 --merge\n\n"
    "  accelerate launch --num_processes 4 -m speechsum_cli sft --data runs/synth --model M --out runs/sft\n\n"
    '  speechsum sft --data corpus/train.jsonl --model weights/smollm2-135m-instruct --system "Only state what '
    'was said." --out runs/teacher-sft\n\n'
    "Defaults follow the paper: audio encoder frozen, projector trained, LoRA r=16 alpha=32 on the "
    "language model, loss on the summary tokens only, 2 epochs. Audio longer than the model's "
    "window is an error unless --on-long-audio chunk|truncate|drop (counts go to speechsum.json). "
    "Interrupted? Run the same command again: it resumes from the last checkpoint.\n\n"
    "Text mode: a plain causal LM as --model (no audio family, e.g. SmolLM2) trains on transcript, "
    "query, summary rows in the text teacher's conversation, exactly what 'speechsum distill "
    "--teacher' asks it (pass the same --system there as --teacher-system); LoRA on its attention "
    "and MLP projections, loss on the summary and end-of-turn."
)


@train_options("sft", columns=("id", "audio", "transcript", "query", "summary"))
def sft(
    data: Annotated[
        Path,
        data_option(
            "Training rows: save_to_disk dir, .parquet or .jsonl with audio, query, summary (text mode: transcript, "
            "query, summary)."
        ),
    ],
    model: Annotated[
        str,
        model_option(
            "Base checkpoint: dir, hub id or hub_id@revision (any supported family, compose output, an earlier "
            "adapter, or a plain chat LM for text mode)."
        ),
    ],
    out: Annotated[Path, out_option("Output directory (adapter + processor or tokenizer + speechsum.json).")],
    train: TrainSettings,
    columns: ColumnMap,
    split: Split = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Separate rows for eval loss.")] = None,
    eval_split: Annotated[
        float, typer.Option(help="Fraction of --data held out for eval loss.", min=0.0, max=0.99)
    ] = 0.0,
    system: Annotated[
        Optional[str],
        typer.Option(
            help="Text mode: system message of the teacher's conversation; give distill the same as --teacher-system  "
            "\\[default: the template's].",
            show_default=False,
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Fine-tune an audio LLM on (audio, query) -> summary rows, or a text LM on (transcript, query) -> summary.

    LoRA by default."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.sft import SftConfig, run

    quiet_libraries()
    config = SftConfig(
        data=data,
        model=model,
        out=out,
        train=train,
        split=split,
        columns=columns,
        eval_data=eval_data,
        eval_split=eval_split,
        system=system,
    )
    echo_result(run(config), as_json)
