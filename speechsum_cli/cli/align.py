"""``speechsum align``: flags -> AlignConfig -> stages.align.run -> output path on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechsum_cli.cli.options import (
    Device,
    Json,
    Overwrite,
    Progress,
    Split,
    column_options,
    data_option,
    long_audio_option,
    model_option,
    out_option,
)
from speechsum_cli.cli.output import echo_result
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.data.long_audio import LongAudio

EPILOG = (
    "Examples:\n\n"
    "  speechsum align --data hearing/train.jsonl --heldout hearing/heldout.jsonl --model runs/student --out "
    "runs/aligned\n\n"
    "  speechsum sft --data corpus/asr.jsonl --model runs/aligned --out runs/warmup   # then the LM learns to read "
    "it\n\n"
    "Trains only the projector of a composed (or any voxtral / qwen2_audio) checkpoint, by CTC "
    "over the language model's own input embeddings: no LM forward or backward, the frozen "
    "encoder's output computed once (feature cache). Prints the held-out WER of the projector's "
    "own transcript as it goes; speechsum.json keeps the curve (WER against minutes). A run "
    "stuck at the blank plateau past its warm-up is reported (--on-stall error: fail). With "
    "--compress every later stage (sft, distill, pairs, dpo, eval, summarize) feeds the LM only "
    "the frames the head does not blank, repeats merged (about 40 instead of 200 per 16 s)."
)


@column_options(("id", "audio", "transcript"))
def align(
    data: Annotated[
        Path,
        data_option("Transcription rows: audio + transcript, one window each (.jsonl, .parquet or save_to_disk dir)."),
    ],
    model: Annotated[
        str,
        model_option("Checkpoint whose projector learns (compose output, or any voxtral / qwen2_audio checkpoint)."),
    ],
    out: Annotated[
        Path, out_option("Output checkpoint (the whole model with the aligned projector + speechsum.json).")
    ],
    columns: ColumnMap,
    heldout: Annotated[
        Path | None,
        typer.Option(
            help="Rows for the held-out WER curve  \\[default: --heldout-rows rows of --data].", show_default=False
        ),
    ] = None,
    heldout_rows: Annotated[
        int, typer.Option(help="Rows split off --data for the WER curve when --heldout is not given.", min=1)
    ] = 100,
    epochs: Annotated[float, typer.Option(help="Passes over the rows (ignored with --max-steps).", min=0.0)] = 4.0,
    max_steps: Annotated[int, typer.Option(help="Steps; > 0 overrides --epochs.")] = -1,
    lr: Annotated[float, typer.Option(help="Peak learning rate of the projector.", min=0.0)] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Rows per step.", min=1)] = 8,
    warmup: Annotated[
        float, typer.Option(help="Warm-up: a fraction of the steps if < 1, else steps (then cosine decay).", min=0.0)
    ] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.", min=0.0)] = 0.0,
    evals: Annotated[int, typer.Option(help="Held-out WER measurements over the run (the curve).", min=1)] = 8,
    on_stall: Annotated[
        str,
        typer.Option(
            help="A blank plateau past warm-up: warn (recorded in speechsum.json) or error (nothing written)."
        ),
    ] = "warn",
    on_long_audio: Annotated[
        str,
        long_audio_option(
            (LongAudio.error, LongAudio.drop), "Rows longer than the model's window: error or drop (counted)."
        ),
    ] = LongAudio.error.value,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split, shuffling and the blank's start.")] = 0,
    compress: Annotated[
        bool,
        typer.Option(
            "--compress/--no-compress",
            help="The output reads only the frames the CTC head does not blank (repeats merged): ~5x fewer audio "
            "tokens, a faster and better-hearing warm-up. Runs through speechsum only (stock transformers/vLLM "
            "would read every frame).",
        ),
    ] = False,
    feature_cache: Annotated[
        bool, typer.Option("--feature-cache/--no-feature-cache", help="Read and fill the frozen-encoder feature cache.")
    ] = True,
    feature_cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of the feature cache  \\[default: .feature-cache beside --out].", show_default=False
        ),
    ] = None,
    feature_cache_gb: Annotated[float, typer.Option(help="Disk bound of the feature cache.", min=0.001)] = 20.0,
    device: Device = "auto",
    split: Split = None,
    overwrite: Overwrite = False,
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Align a fresh projector to the LM's embeddings by CTC: cheap hearing before sft."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.stages.align import AlignConfig, run

    quiet_libraries()
    config = AlignConfig(
        data=data,
        model=model,
        out=out,
        heldout=heldout,
        heldout_rows=heldout_rows,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        batch_size=batch_size,
        warmup=warmup,
        weight_decay=weight_decay,
        evals=evals,
        on_stall=on_stall,
        on_long_audio=on_long_audio,
        seed=seed,
        compress=compress,
        feature_cache=feature_cache,
        feature_cache_dir=feature_cache_dir,
        feature_cache_gb=feature_cache_gb,
        device=device,
        split=split,
        columns=columns,
        overwrite=overwrite,
        show_progress=progress,
    )
    echo_result(run(config), as_json)
