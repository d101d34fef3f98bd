"""``speechsum convert``: SRC DST --from/--to -> ConvertConfig -> stages.convert.run -> DST on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speechsum_cli.cli.options import json_option, overwrite_option, split_option
from speechsum_cli.cli.output import emit, emit_json
from speechsum_cli.data.chat_format import DataFormat

EPILOG = (
    "Examples:\n\n"
    "  speechsum convert train_swift.jsonl runs/train            # ms-swift -> speechsum dataset\n\n"
    "  speechsum convert runs/synth data/sft.jsonl --to llamafactory\n\n"
    "  speechsum convert runs/pairs data/dpo.jsonl --to swift     # rejected_response rows\n\n"
    "Formats: speechsum (a dataset dir, or .jsonl/.parquet with id, audio, query, summary or chosen + "
    "rejected), swift (ms-swift: messages with <audio> tags + audios; DPO rows add rejected_response), "
    "llamafactory (LLaMA-Factory sharegpt/alpaca with audios; preference rows: chosen + rejected). "
    "SRC's format is detected from its first row; DST's is the other side (speechsum for a chat file, "
    "swift for a speechsum dataset) unless --to says. A row whose <audio> tags and audios differ in "
    "number is refused with its line, and nothing is written. sft and dpo also read swift and "
    "llamafactory .jsonl directly."
)


def convert(
    src: Annotated[
        Path,
        typer.Argument(
            help="Input: speechsum dataset dir/.jsonl/.parquet, or an ms-swift/LLaMA-Factory .jsonl.",
            show_default=False,
        ),
    ],
    dst: Annotated[
        Path,
        typer.Argument(
            help="Output: a directory (speechsum) or a .jsonl file (swift, llamafactory).", show_default=False
        ),
    ],
    src_format: Annotated[
        DataFormat | None,
        typer.Option("--from", help="SRC's format  \\[default: detected from its content].", show_default=False),
    ] = None,
    dst_format: Annotated[
        DataFormat | None,
        typer.Option(
            "--to",
            help="DST's format  \\[default: speechsum for a chat SRC, swift for a speechsum SRC].",
            show_default=False,
        ),
    ] = None,
    split: Annotated[str | None, split_option("SRC")] = None,
    overwrite: Annotated[bool, overwrite_option("DST")] = False,
    as_json: Annotated[
        bool, json_option("the result (DST, formats, rows, LLaMA-Factory's dataset_info entry)")
    ] = False,
) -> None:
    """Convert ms-swift / LLaMA-Factory audio jsonl to and from speechsum datasets."""
    import json

    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.console import info, plural
    from speechsum_cli.stages.convert import ConvertConfig, run

    quiet_libraries()
    result = run(
        ConvertConfig(src=src, dst=dst, src_format=src_format, dst_format=dst_format, split=split, overwrite=overwrite)
    )
    info(
        f"{plural(result.rows, 'row')} ({result.kind}) converted from {result.src_format.value} to "
        f"{result.dst_format.value}."
    )
    if result.dataset_info is not None:
        info(
            "LLaMA-Factory reads it with this entry in the dataset_info.json of its folder: "
            + json.dumps(result.dataset_info)
        )
    if as_json:
        emit_json(
            {
                "out": str(result.out),
                "from": result.src_format.value,
                "to": result.dst_format.value,
                "rows": result.rows,
                "kind": result.kind,
                "dataset_info": result.dataset_info,
            }
        )
    else:
        emit(str(result.out))
