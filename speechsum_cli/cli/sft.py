"""``speechsum sft``: flags -> SftConfig -> stages.sft.run -> output path on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli.cli.options import Json, Split, data_option, echo_result, model_option, out_option, train_options
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.training.settings import TrainSettings

EPILOG = (
    "Examples:\n\n"
    "  speechsum sft --data runs/synth --model Qwen/Qwen2-Audio-7B-Instruct --out runs/sft\n\n"
    "  speechsum sft -d runs/synth -m runs/composed -o runs/sft --lora-r 32 --merge\n\n"
    "  accelerate launch --num_processes 4 -m speechsum_cli sft --data runs/synth --model M --out runs/sft\n\n"
    "Defaults follow the paper: audio encoder frozen, projector trained, LoRA r=16 alpha=32 on the "
    "language model, loss on the summary tokens only, 2 epochs. Audio longer than the model's "
    "window is an error unless --on-long-audio chunk|truncate|drop (counts go to speechsum.json). "
    "Interrupted? Run the same command again: it resumes from the last checkpoint."
)


@train_options("sft", columns=("id", "audio", "query", "summary"))
def sft(
    data: Annotated[Path, data_option("Training rows: save_to_disk dir, .parquet or .jsonl with audio, query, summary.")],
    model: Annotated[str, model_option("Base checkpoint: dir, hub id or hub_id@revision (any supported family, compose output, or an earlier adapter).")],
    out: Annotated[Path, out_option("Output directory (adapter + processor + speechsum.json).")],
    train: TrainSettings,
    columns: ColumnMap,
    split: Split = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="Separate rows for eval loss.")] = None,
    eval_split: Annotated[float, typer.Option(help="Fraction of --data held out for eval loss.", min=0.0, max=0.99)] = 0.0,
    as_json: Json = False,
) -> None:
    """Fine-tune an audio LLM on (audio, query) -> summary rows: LoRA by default."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.sft import SftConfig, run

    quiet_libraries()
    config = SftConfig(data=data, model=model, out=out, train=train, split=split, columns=columns,
                       eval_data=eval_data, eval_split=eval_split)
    echo_result(run(config), as_json)
