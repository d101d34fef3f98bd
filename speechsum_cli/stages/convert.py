"""``convert``: ms-swift / LLaMA-Factory jsonl to and from speechsum datasets.

Every row goes through speechsum's own row (DESIGN.md, Contracts): ``id, audio, query`` with
``summary`` (sft rows) or ``chosen, rejected`` (preference pairs, what ``pairs`` writes and ``dpo``
reads). A chat file is read by the one dataset loader (:func:`~speechsum_cli.data.dataset.load_rows`,
which is how sft and dpo read such files directly), so a row it cannot take — ``<audio>`` tags and
``audios`` that differ in number, several turns or recordings — fails here the same way, naming its
file and line, before anything is written. The formats and their sources:
:mod:`speechsum_cli.data.chat_format`.

Output: a speechsum dataset is a ``save_to_disk`` directory with ``speechsum.json``, written
atomically; a chat file is one ``.jsonl`` written by rename (a failed run leaves nothing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechsum_cli.data.chat_format import (
    CHAT_FORMATS,
    DataFormat,
    chat_lines,
    detect_file_format,
    llamafactory_entry,
)
from speechsum_cli.data.dataset import load_rows
from speechsum_cli.errors import InputError

CHAT_SUFFIX = ".jsonl"
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
SFT_COLUMNS = ("audio", "query", "summary")
PREFERENCE_COLUMNS = ("audio", "query", "chosen", "rejected")


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of one ``speechsum convert`` run."""

    src: Path
    """Input: a speechsum dataset (save_to_disk dir, .jsonl/.parquet) or an ms-swift/LLaMA-Factory .jsonl."""
    dst: Path
    """Output: a directory (speechsum) or a .jsonl file (swift, llamafactory)."""
    src_format: DataFormat | None = None
    """The input's format; None = detected from its content."""
    dst_format: DataFormat | None = None
    """The output's format; None = speechsum for a chat input, swift for a speechsum input."""
    split: str | None = None
    """Split of a saved DatasetDict in ``src``."""
    overwrite: bool = False
    """Replace an existing ``dst``."""


@dataclass
class ConvertResult:
    out: Path
    src_format: DataFormat
    dst_format: DataFormat
    rows: int
    kind: str
    """'sft' (summary) or 'preference' (chosen/rejected)."""
    dataset_info: dict[str, Any] | None = None
    """For a LLaMA-Factory output: the entry its dataset_info.json needs."""


def run(config: ConvertConfig) -> ConvertResult:
    started = time.perf_counter()
    src_format = source_format(config)
    dst_format = config.dst_format or (DataFormat.speechsum if src_format in CHAT_FORMATS else DataFormat.swift)
    check_destination(config, dst_format)
    rows = load_rows(config.src, split=config.split)
    kind = row_kind(rows, config.src)
    if dst_format is DataFormat.speechsum:
        write_speechsum(rows, config, kind, src_format, time.perf_counter() - started)
        return ConvertResult(config.dst, src_format, dst_format, len(rows), kind)
    write_chat(rows, config.dst, dst_format, kind)
    info = None
    if dst_format is DataFormat.llamafactory:
        info = llamafactory_entry(config.dst.stem, config.dst.name, kind == "preference")
    return ConvertResult(config.dst, src_format, dst_format, len(rows), kind, info)


def source_format(config: ConvertConfig) -> DataFormat:
    """The detected format of ``src``; a ``--from`` that contradicts its content is an error."""
    src = config.src
    if not src.exists():
        raise InputError(
            f"SRC '{src}' does not exist. Pass a speechsum dataset (directory, .jsonl or .parquet) "
            "or an ms-swift/LLaMA-Factory .jsonl."
        )
    found = detect_file_format(src) or DataFormat.speechsum
    named = config.src_format
    if named is None or named == found:
        return found
    if named in CHAT_FORMATS and found in CHAT_FORMATS:
        return named  # a 'messages' file is both; either reads the same
    what = "a chat file ('messages'/'conversations' rows)" if found in CHAT_FORMATS else "not a chat file"
    raise InputError(
        f"--from {named.value}: '{src}' is {what}, so it reads as {found.value}. Drop --from "
        f"to use the detected format, or check SRC."
    )


def check_destination(config: ConvertConfig, fmt: DataFormat) -> None:
    """DST's shape must fit the output format, and must not exist unless --overwrite."""
    dst = config.dst
    if fmt in CHAT_FORMATS and dst.suffix.lower() != CHAT_SUFFIX:
        raise InputError(f"DST '{dst}': {fmt.value} data is a .jsonl file; name DST something.jsonl.")
    if fmt is DataFormat.speechsum and dst.suffix.lower() in DATA_SUFFIXES:
        raise InputError(
            f"DST '{dst}': a speechsum dataset is written as a directory (save_to_disk + "
            "speechsum.json); drop the suffix, or pass --to swift or --to llamafactory for a .jsonl."
        )
    if dst.resolve() == config.src.resolve():
        raise InputError(f"DST '{dst}' is SRC; write the conversion somewhere else.")
    if dst.exists() and not config.overwrite:
        raise InputError(f"output '{dst}' already exists. Choose another DST, or pass --overwrite to replace it.")
    if fmt in CHAT_FORMATS and dst.is_dir():
        raise InputError(f"output '{dst}' is a directory; {fmt.value} data is a .jsonl file.")


def row_kind(rows: Any, src: Path) -> str:
    """'preference' when the rows have chosen and rejected, else 'sft'; missing columns named once."""
    columns = set(rows.column_names)
    kind = "preference" if {"chosen", "rejected"} <= columns else "sft"
    needed = PREFERENCE_COLUMNS if kind == "preference" else SFT_COLUMNS
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InputError(
            f"data '{src}' has no column {', '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(rows.column_names)}). "
            "convert reads sft rows (audio, query, summary: 'speechsum synth' output) or preference pairs "
            "(audio, query, chosen, rejected: 'speechsum pairs' output)."
        )
    return kind


def write_speechsum(rows: Any, config: ConvertConfig, kind: str, src_format: DataFormat, seconds: float) -> None:
    from speechsum_cli.manifest import atomic_output_dir, write_manifest

    with atomic_output_dir(config.dst, overwrite=config.overwrite) as tmp:
        rows.save_to_disk(str(tmp))
        write_manifest(
            tmp,
            stage="convert",
            config=config,
            inputs=[config.src],
            counts={"rows_in": len(rows), "rows_out": len(rows), "kind": kind, "from": src_format.value},
            wall_time=seconds,
        )


def write_chat(rows: Any, dst: Path, fmt: DataFormat, kind: str) -> None:
    from speechsum_cli.fs import atomic_write_text

    atomic_write_text(dst, chat_lines(rows.to_list(), fmt, dst.parent, preference=kind == "preference"))


__all__ = ["ConvertConfig", "ConvertResult", "run"]
