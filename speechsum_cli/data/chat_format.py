"""ms-swift and LLaMA-Factory jsonl: audio chat rows to and from speechsum's columns.

The formats, as their projects document them:

* **ms-swift** (``docs/source_en/Customization/Custom-dataset.md``, "Standard Dataset Format" and
  "Multimodal"): ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}], "audios":
  [path, ...]}`` where each ``<audio>`` tag in the content marks where one audio of ``audios`` goes;
  DPO rows add ``"rejected_response": "..."`` (the last assistant turn is the chosen answer).
  ms-swift resolves a relative media path against the working directory (ms-swift#7887), so its
  docs ask for absolute paths: that is what ``--to swift`` writes.
* **LLaMA-Factory** (``data/README.md``): sharegpt rows ``{"conversations": [{"from": "human"|"gpt"
  |"system", "value": ...}]}`` or their OpenAI variant ``{"messages": [{"role", "content"}]}`` (what
  its ``mllm_audio_demo.json`` uses), and alpaca rows ``{"instruction", "input", "output"}``, each
  with ``"audios": [path, ...]`` whose number "must strictly match the number of <audio> tags";
  preference rows carry ``"chosen"`` and ``"rejected"`` (messages in sharegpt, strings in alpaca)
  after a conversation that ends with the user's turn. Relative paths are resolved against its
  ``media_dir`` (the dataset dir by default): ``--to llamafactory`` writes paths relative to the
  output's folder when the audio lies under it, else absolute.

speechsum's rows (DESIGN.md, Contracts) are single-turn: ``id, audio, query`` plus ``summary`` (sft)
or ``chosen, rejected`` (dpo/pairs). A chat row maps to one: its one user turn (``<audio>`` tags
removed) is the query, its one ``audios`` entry the audio, the answer the summary. Reading is
lenient about which of these shapes a file uses; a row that cannot be one speechsum row (audio tags
and ``audios`` differ in number, several audios or turns, no answer) is an error naming its line.
Keys a chat row has beyond its format's (``id``, ``transcript``, ``style``...) are kept as columns,
and written back, so conversions round-trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from speechsum_cli.errors import InputError

AUDIO_TAG = "<audio>"
SHOWN_PROBLEMS = 5
"""Bad lines quoted in one error message."""


class DataFormat(str, Enum):
    """The dataset formats ``speechsum convert`` reads and writes."""

    speechsum = "speechsum"
    swift = "swift"
    llamafactory = "llamafactory"


CHAT_FORMATS = (DataFormat.swift, DataFormat.llamafactory)
FORMAT_KEYS = {
    "messages",
    "conversations",
    "audios",
    "rejected_response",
    "chosen",
    "rejected",
    "instruction",
    "input",
    "output",
    "system",
}
"""Keys the chat formats give meaning to; any other key of a row is a passed-through column."""
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


class BadRow(Exception):
    """A chat row that cannot be one speechsum row; the message says why (the caller adds where)."""


@dataclass(frozen=True)
class Turn:
    role: str
    """system | user | assistant."""
    content: str


# --- detection -------------------------------------------------------------------------------


def chat_format_of(row: dict[str, Any]) -> DataFormat | None:
    """The chat format one parsed row is in, or None when it is not a chat row.

    ``messages`` rows are ms-swift's standard format and also LLaMA-Factory's OpenAI variant; both
    read the same way, so only a LLaMA-Factory preference shape (``chosen``/``rejected`` beside
    ``messages``) or sharegpt/alpaca keys make it ``llamafactory``.
    """
    if not isinstance(row, dict):
        return None
    if "conversations" in row or ("instruction" in row and ("output" in row or "chosen" in row)):
        return DataFormat.llamafactory
    if isinstance(row.get("messages"), list):
        if "chosen" in row or "rejected" in row:
            return DataFormat.llamafactory
        return DataFormat.swift
    return None


def first_row(path: Path) -> dict[str, Any] | None:
    """The first row of a .jsonl file (read no further) or of a .json array; None if unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            if path.suffix.lower() == ".json":
                head = fh.read(1 << 16).lstrip()
                if not head.startswith("["):
                    return None
                data = json.loads(path.read_text(encoding="utf-8"))
                return data[0] if data and isinstance(data[0], dict) else None
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None
    return None


def detect_file_format(path: Path) -> DataFormat | None:
    """The chat format of a .jsonl/.json file from its first row (None: not a chat file)."""
    if path.is_dir() or path.suffix.lower() not in (".jsonl", ".json"):
        return None
    row = first_row(path)
    return chat_format_of(row) if row is not None else None


# --- reading -------------------------------------------------------------------------------


def read_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) of every row: ``FILE:LINE`` in a .jsonl file, ``FILE row N`` in a .json array."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"cannot read data '{path}': not JSON ({exc}).") from None
        if not isinstance(data, list):
            raise InputError(f"data '{path}' is a JSON object, not a list of rows.")
        yield from ((f"{path} row {i + 1}", row) for i, row in enumerate(data))
        return
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}:{number}: not a JSON object ({exc}). Fix or remove that line.") from None


def chat_rows_to_speechsum(path: Path) -> list[dict[str, Any]]:
    """Every row of a chat-format file as a speechsum row; one error naming every bad line.

    Audio paths come back absolute: relative ones are resolved against the file's folder.
    """
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for where, raw in read_lines(path):
        try:
            rows.append(chat_row_to_speechsum(raw, path.parent))
        except BadRow as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise InputError(
            f"data '{path}' has rows that are not one speechsum row each: "
            + "; ".join(problems[:SHOWN_PROBLEMS])
            + more
            + ". A speechsum row is one user turn with one <audio> tag, one entry in 'audios', and "
            "an answer (or chosen + rejected). Fix or remove those lines."
        )
    if not rows:
        raise InputError(f"data '{path}' has no rows.")
    return rows


def chat_row_to_speechsum(row: Any, base_dir: Path) -> dict[str, Any]:
    """One chat row -> ``id?, audio, query, summary | chosen + rejected, system?`` + its extra keys.

    Raises :class:`BadRow` saying what is wrong with the row (the caller adds file and line).
    """
    if not isinstance(row, dict):
        raise BadRow(f"expected a JSON object, found {type(row).__name__}")
    turns = row_turns(row)
    system = [t.content for t in turns if t.role == "system"]
    dialogue = [t for t in turns if t.role != "system"]
    users = [t for t in dialogue if t.role == "user"]
    if len(users) != 1:
        raise BadRow(f"{len(users)} user turns (speechsum rows are single-turn: exactly one)")
    audios = row.get("audios") or []
    if isinstance(audios, str):
        audios = [audios]
    tags = sum(t.content.count(AUDIO_TAG) for t in turns)
    if tags != len(audios):
        raise BadRow(
            f"{tags} <audio> tag(s) but {len(audios)} entr{'y' if len(audios) == 1 else 'ies'} "
            "in 'audios' (they must match one to one)"
        )
    if len(audios) != 1:
        raise BadRow(f"{len(audios)} audios (a speechsum row has exactly one recording)")
    out: dict[str, Any] = {k: v for k, v in row.items() if k not in FORMAT_KEYS}
    out["audio"] = absolute_audio(str(audios[0]), base_dir)
    out["query"] = " ".join(users[0].content.replace(AUDIO_TAG, " ").split())
    out.update(answers(row, dialogue))
    if system:
        out["system"] = "\n".join(system)
    return out


def row_turns(row: dict[str, Any]) -> list[Turn]:
    """The conversation of a row in any of the shapes (messages, conversations, alpaca)."""
    if "instruction" in row and "messages" not in row and "conversations" not in row:
        query = "\n".join(str(x) for x in (row.get("instruction"), row.get("input")) if x)
        turns = [Turn("user", query)]
        if row.get("output"):
            turns.append(Turn("assistant", str(row["output"])))
        return ([Turn("system", str(row["system"]))] if row.get("system") else []) + turns
    messages = row.get("messages", row.get("conversations"))
    if not isinstance(messages, list) or not messages:
        raise BadRow("no 'messages' (or 'conversations') list")
    turns = [message_turn(m) for m in messages]
    if row.get("system") and not any(t.role == "system" for t in turns):
        turns.insert(0, Turn("system", str(row["system"])))
    return turns


def message_turn(message: Any) -> Turn:
    """``{"role", "content"}`` or sharegpt's ``{"from", "value"}`` as a Turn."""
    if not isinstance(message, dict):
        raise BadRow(f"a message is {type(message).__name__}, not an object")
    role = message.get("role", message.get("from"))
    content = message.get("content", message.get("value"))
    if role not in SHAREGPT_ROLES or not isinstance(content, str):
        raise BadRow(
            f"a message with role {role!r} and content of type {type(content).__name__} "
            "(expected user/assistant/system and text)"
        )
    return Turn(SHAREGPT_ROLES[role], content)


def answers(row: dict[str, Any], dialogue: list[Turn]) -> dict[str, str]:
    """``summary`` (sft) or ``chosen`` + ``rejected`` (preference) of one chat row."""
    replies = [t.content for t in dialogue if t.role == "assistant"]
    if len(replies) > 1:
        raise BadRow(f"{len(replies)} assistant turns (speechsum rows are single-turn: at most one)")
    if "rejected_response" in row:  # ms-swift DPO: the assistant turn is the chosen answer
        if not replies:
            raise BadRow("'rejected_response' without an assistant turn (the chosen answer)")
        return {"chosen": replies[0], "rejected": answer_text(row["rejected_response"], "rejected_response")}
    if "chosen" in row or "rejected" in row:  # LLaMA-Factory preference rows
        if replies:
            raise BadRow(
                "an assistant turn beside 'chosen'/'rejected' (the conversation must end with the user's turn)"
            )
        return {
            "chosen": answer_text(row.get("chosen"), "chosen"),
            "rejected": answer_text(row.get("rejected"), "rejected"),
        }
    if not replies:
        raise BadRow("no assistant turn (the summary)")
    return {"summary": replies[0]}


def answer_text(value: Any, key: str) -> str:
    """A preference answer: a string, or a message object (LLaMA-Factory sharegpt)."""
    if isinstance(value, dict):
        value = message_turn(value).content
    if not isinstance(value, str):
        raise BadRow(f"'{key}' is {type(value).__name__}, not text or a message")
    return value


def absolute_audio(path: str, base_dir: Path) -> str:
    """A chat row's audio path as speechsum reads every data file's: relative to the file's folder."""
    if "://" in path or Path(path).is_absolute():
        return path
    return str((base_dir / path).resolve())


# --- writing -------------------------------------------------------------------------------


def speechsum_row_to_chat(row: dict[str, Any], fmt: DataFormat, out_dir: Path, *, preference: bool) -> dict[str, Any]:
    """One speechsum row (sft, or with ``preference`` a pair) as a chat row of ``fmt``, extra columns kept.

    Raises :class:`BadRow` when the row's audio has no file path (the caller names the row).
    """
    user = {"role": "user", "content": AUDIO_TAG + row["query"]}
    head = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    chat: dict[str, Any] = {}
    if preference:
        if fmt is DataFormat.swift:
            chat["messages"] = [*head, user, {"role": "assistant", "content": row["chosen"]}]
            chat["rejected_response"] = row["rejected"]
        else:
            chat["messages"] = [*head, user]
            chat["chosen"] = {"role": "assistant", "content": row["chosen"]}
            chat["rejected"] = {"role": "assistant", "content": row["rejected"]}
    else:
        chat["messages"] = [*head, user, {"role": "assistant", "content": row["summary"]}]
    chat["audios"] = [written_audio(row["audio"], fmt, out_dir)]
    skip = {"audio", "query", "system"} | ({"chosen", "rejected"} if preference else {"summary"})
    chat.update({k: v for k, v in row.items() if k not in skip and v is not None})
    return chat


def audio_path(audio: Any) -> str | None:
    """The file path of a row's undecoded audio (a path string or a ``{"path", "bytes"}`` dict)."""
    if isinstance(audio, str):
        return audio or None
    if isinstance(audio, dict):
        return audio.get("path") or None
    return None


def written_audio(audio: Any, fmt: DataFormat, out_dir: Path) -> str:
    """Absolute for ms-swift (it resolves against the working directory); for LLaMA-Factory,
    relative to the output's folder when the file lies under it."""
    path = audio_path(audio)
    if path is None:
        raise BadRow("audio without a file path (bytes only)")
    if "://" in path or fmt is DataFormat.swift:
        return path
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return str(absolute)


def chat_lines(rows: Iterable[dict[str, Any]], fmt: DataFormat, out_dir: Path, *, preference: bool) -> str:
    """The jsonl text of ``rows`` in ``fmt``; one error naming every row whose audio has no path."""
    lines, pathless = [], []
    for row in rows:
        try:
            lines.append(
                json.dumps(speechsum_row_to_chat(row, fmt, out_dir, preference=preference), ensure_ascii=False) + "\n"
            )
        except BadRow:
            pathless.append(row.get("id"))
    if pathless:
        shown = ", ".join(repr(i) for i in pathless[:SHOWN_PROBLEMS])
        raise InputError(
            f"{len(pathless)} row(s) hold their audio as bytes without a file path (ids {shown}); "
            f"{fmt.value} jsonl names audio files. Write the audio to files first."
        )
    return "".join(lines)


def llamafactory_entry(name: str, file_name: str, preference: bool) -> dict[str, Any]:
    """The ``dataset_info.json`` entry LLaMA-Factory needs to read a file written here."""
    columns = {"messages": "messages", "audios": "audios"}
    if preference:
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    entry: dict[str, Any] = {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": columns,
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }
    if preference:
        entry["ranking"] = True
    return {name: entry}


__all__ = [
    "AUDIO_TAG",
    "CHAT_FORMATS",
    "DataFormat",
    "chat_format_of",
    "chat_lines",
    "chat_row_to_speechsum",
    "chat_rows_to_speechsum",
    "detect_file_format",
    "llamafactory_entry",
    "speechsum_row_to_chat",
]
