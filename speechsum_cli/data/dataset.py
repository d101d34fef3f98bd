"""Loading stage inputs into a ``datasets.Dataset`` with the toolkit's column names.

Accepted inputs (the contract in DESIGN.md):

* a dataset directory written by ``save_to_disk`` (``--split`` picks one of a DatasetDict);
* a ``.parquet``, ``.jsonl`` or ``.json`` file;
* a folder of audio files with ``.txt`` sidecar transcripts (``talk.wav`` + ``talk.txt``);
* an ms-swift or LLaMA-Factory chat jsonl (``messages`` with ``<audio>`` tags + ``audios``),
  detected from its first row and read as speechsum rows (:mod:`speechsum_cli.data.chat_format`).

Other column names are mapped with :class:`ColumnMap` (the ``--audio-column`` style flags).
Audio stays undecoded: a path string or a ``{"path", "bytes"}`` dict; relative paths are resolved
against the input's directory. Missing ids get stable ones from the row position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechsum_cli.data.audio import SUPPORTED_EXTENSIONS
from speechsum_cli.data.chat_format import chat_rows_to_speechsum, detect_file_format
from speechsum_cli.errors import InputError

COLUMNS = (
    "id",
    "audio",
    "transcript",
    "query",
    "style",
    "summary",
    "chosen",
    "rejected",
    "chosen_score",
    "rejected_score",
    "judge_rationale",
    "prediction",
)
"""The column names shared by every stage (DESIGN.md, Contracts)."""


@dataclass(frozen=True)
class ColumnMap:
    """Names of the user's columns for our contract columns (``--audio-column`` etc.)."""

    id: str = "id"
    audio: str = "audio"
    transcript: str = "transcript"
    query: str = "query"
    summary: str = "summary"

    def renames(self) -> dict[str, str]:
        return {theirs: ours for ours, theirs in vars(self).items() if theirs != ours}


def load_rows(
    source: str | Path,
    *,
    columns: ColumnMap = ColumnMap(),
    split: str | None = None,
) -> Any:
    """Load ``source`` as a Dataset with contract column names and an ``id`` column.

    Never writes into ``source`` (see ``_replace_column``).
    """
    from datasets import Dataset

    path = Path(source)
    if not path.exists():
        raise InputError(
            f"data '{path}' does not exist. Pass a dataset directory, a .parquet/.jsonl file, "
            "or a folder of audio files with .txt transcripts."
        )
    base_dir = path if path.is_dir() else path.parent
    if path.is_dir() and _is_saved_dataset(path):
        ds = _load_saved(path, split)
    elif path.is_dir():
        ds = Dataset.from_list(_sidecar_rows(path))
    elif (empty := _empty_file(path)) is not None:
        raise no_rows(path, empty)
    elif detect_file_format(path) is not None:
        ds = _rows_dataset(chat_rows_to_speechsum(path))
        _note_system_messages(ds, path)
    elif path.suffix.lower() in (".parquet", ".jsonl", ".json"):
        ds = _load_file(path)
    else:
        raise InputError(
            f"data '{path}' is not a dataset directory, .parquet, .jsonl or .json file, or folder of audio."
        )
    ds = _apply_column_map(ds, columns, path)
    if len(ds) == 0:
        raise no_rows(path, "0 rows")
    if "id" not in ds.column_names:
        ds = ds.add_column("id", [f"{i:07d}" for i in range(len(ds))])
    elif ds.features["id"].dtype != "string":
        ds = _replace_column(ds, "id", [str(i) for i in ds["id"]])
    _check_unique_ids(ds, path)
    if "audio" in ds.column_names:
        ds = resolve_audio_paths(ds, base_dir)
    return ds


def no_rows(path: Path, found: str) -> InputError:
    """The error for data that holds no rows: what was found there, and what to do."""
    return InputError(
        f"data '{path}' has no rows (found {found}); a stage needs at least one. "
        "Check the command that wrote it, or pass other data."
    )


def _empty_file(path: Path) -> str | None:
    """What an empty .parquet/.jsonl/.json file holds instead of rows (None: it has rows, or is
    not one of those; reading it tells). datasets refuses such files with an error that names
    neither the file nor the cause."""
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".jsonl", ".json") or not path.is_file():
        return None
    if path.stat().st_size == 0:  # its own message (_load_file)
        return None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - not parquet: _load_file reports what it is
            return None
        return "a parquet file of 0 rows" if rows == 0 else None
    with open(path, encoding="utf-8", errors="replace") as fh:
        if suffix == ".jsonl":
            return None if any(line.strip() for line in fh) else "only blank lines"
        head = fh.read(1 << 16)
    if not head.strip():
        return "only blank lines"
    try:
        return "an empty JSON list" if json.loads(head) == [] else None
    except ValueError:
        return None  # longer than the head, or not JSON: _load_file reports it


def _load_file(path: Path) -> Any:
    from datasets import Dataset

    if path.stat().st_size == 0:
        raise InputError(f"data '{path}' is empty (0 bytes).")
    try:
        if path.suffix.lower() == ".parquet":
            return Dataset.from_parquet(str(path))
        return Dataset.from_json(str(path))
    except Exception as exc:  # arrow/json parse errors: report the file, not a library traceback
        raise InputError(f"cannot read data '{path}': {type(exc).__name__}: {exc}") from None


def _note_system_messages(ds: Any, path: Path) -> None:
    """Say so when chat rows carry system messages: kept as a column, which no audio stage reads."""
    if "system" not in ds.column_names:
        return
    from speechsum_cli.console import warn

    count = sum(1 for value in ds["system"] if value)
    warn(
        f"data '{path}': {count} row(s) carry a system message; it is kept in the 'system' column, which "
        "the training stages do not read (sft's text mode takes one --system for every row)."
    )


def _rows_dataset(rows: list[dict[str, Any]]) -> Any:
    """A Dataset of dict rows whose keys differ (every key a column; None where a row lacks it)."""
    from datasets import Dataset

    names = list(dict.fromkeys(key for row in rows for key in row))
    return Dataset.from_dict({name: [row.get(name) for row in rows] for name in names})


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def _load_saved(path: Path, split: str | None) -> Any:
    """The dataset (or the chosen split of a DatasetDict) saved at ``path``; only that split is
    read, and one saved without rows is refused by name (datasets fails on it with IndexError)."""
    from datasets import Dataset

    if (path / "dataset_dict.json").is_file():
        splits = _saved_splits(path)
        if split is None:
            if len(splits) != 1:
                raise InputError(f"data '{path}' has splits {', '.join(splits)}; pick one with --split.")
            split = splits[0]
        if split not in splits:
            raise InputError(f"data '{path}' has no split '{split}' (found: {', '.join(splits)}).")
        where = path / split
    else:
        where = path
    if _saved_without_rows(where):
        raise no_rows(path if where == path else where, "a saved dataset with no data files")
    return Dataset.load_from_disk(str(where))


def _saved_splits(path: Path) -> list[str]:
    try:
        return [str(s) for s in json.loads((path / "dataset_dict.json").read_text())["splits"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"cannot read '{path / 'dataset_dict.json'}' ({exc}); is it a dataset written by save_to_disk?"
        ) from None


def _saved_without_rows(path: Path) -> bool:
    """Whether ``save_to_disk`` wrote ``path`` with no arrow file (it does so for 0 rows)."""
    try:
        return json.loads((path / "state.json").read_text()).get("_data_files") == []
    except (OSError, ValueError, AttributeError):
        return False  # load_from_disk says what is wrong with it


def _sidecar_rows(folder: Path) -> list[dict[str, Any]]:
    """Rows for a folder of audio files; ``transcript`` is the sidecar .txt or None."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)
    if not files:
        raise InputError(
            f"folder '{folder}' has no audio files ({', '.join(SUPPORTED_EXTENSIONS)}) and is not a "
            "saved dataset (no dataset_info.json)."
        )
    rows = []
    for audio in files:
        sidecar = audio.with_suffix(".txt")
        transcript = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
        rows.append(
            {
                "id": audio.relative_to(folder).with_suffix("").as_posix(),
                "audio": str(audio),
                "transcript": transcript or None,
            }
        )
    return rows


def _apply_column_map(ds: Any, columns: ColumnMap, path: Path) -> Any:
    renames = {theirs: ours for theirs, ours in columns.renames().items()}
    missing = [theirs for theirs in renames if theirs not in ds.column_names]
    if missing:
        flags = {v: k for k, v in vars(columns).items()}
        detail = ", ".join(f"'{m}' (--{flags[m]}-column)" for m in missing)
        raise InputError(f"data '{path}' has no column {detail} (found: {', '.join(ds.column_names)}).")
    clashes = [ours for ours in renames.values() if ours in ds.column_names]
    if clashes:
        ds = ds.remove_columns(clashes)
    return ds.rename_columns(renames) if renames else ds


SHOWN_IDS = 5
"""Row ids quoted in one error message."""


def shown_ids(ids: Sequence[Any]) -> str:
    """``'a', 'b', 'c' and 4 more``: the first ids of a list, for messages."""
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return ", ".join(repr(i) for i in ids[:SHOWN_IDS]) + more


def _check_unique_ids(ds: Any, path: Path) -> None:
    ids = ds["id"]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise InputError(f"data '{path}' has {len(dupes)} duplicate id(s): {shown_ids(dupes)}. Ids must be unique.")


def _replace_column(ds: Any, name: str, values: list[Any]) -> Any:
    """``ds`` with column ``name`` swapped for ``values``, at the same position.

    Unlike ``map``/``cast``, this writes no ``cache-*.arrow`` file into a saved dataset's own
    directory (a stage must not modify its input), and only the new column is held in memory.
    """
    order = ds.column_names
    return ds.remove_columns(name).add_column(name, values).select_columns(order)


def resolve_audio_paths(ds: Any, base_dir: Path) -> Any:
    """Make relative audio paths absolute (relative to the input's directory)."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((base_dir / value).resolve())
        if isinstance(value, dict) and not value.get("bytes") and value.get("path"):
            p = value["path"]
            if not Path(p).is_absolute():
                return {**value, "path": str((base_dir / p).resolve())}
        return value

    sample = ds[0]["audio"]
    if isinstance(sample, str):
        return _replace_column(ds, "audio", [fix(value) for value in ds["audio"]])
    return ds


def require_columns(ds: Any, required: list[str], source: str | Path, hint: str) -> None:
    """Raise one error listing every missing contract column and the next step."""
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise InputError(
            f"data '{source}' has no column {', '.join(repr(m) for m in missing)} "
            f"(found: {', '.join(ds.column_names)}). {hint}"
        )


def rows_with_empty(ds: Any, column: str) -> list[str]:
    """Ids of rows whose ``column`` is missing or blank."""
    return [
        row_id
        for row_id, value in zip(ds["id"], ds[column])
        if value is None or (isinstance(value, str) and not value.strip())
    ]
