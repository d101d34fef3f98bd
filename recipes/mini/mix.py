"""One training file from parts of several corpora, with absolute audio paths and unique ids.

    python recipes/mini/mix.py OUT.jsonl SPEC [SPEC ...]

SPEC is ``PATH``, optionally with a row range ``PATH@A:B`` (rows A..B-1, Python slice rules) and
a repeat count ``PATH*N`` (``PATH@0:128*2``). Rows are written in the order given; a row's
``audio`` is made absolute (relative paths are relative to its file's folder, as every stage
reads them), and the k-th repeat of a row gets the id ``ID~k`` (k >= 2), so ids stay unique.
The file is written atomically. run.sh builds sft's, distill's and pairs' data with it.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC = re.compile(r"^(?P<path>.+?)(?:@(?P<start>\d*):(?P<stop>\d*))?(?:\*(?P<times>\d+))?$")


@dataclass(frozen=True)
class Part:
    path: Path
    start: int | None
    stop: int | None
    times: int


def parse_spec(text: str) -> Part:
    match = SPEC.match(text)
    if match is None or not match["path"]:
        raise SystemExit(f"Error: '{text}' is not PATH[@A:B][*N]")

    def number(value: str | None) -> int | None:
        return int(value) if value else None

    times = int(match["times"] or 1)
    if times < 1:
        raise SystemExit(f"Error: '{text}': the repeat count must be at least 1")
    return Part(Path(match["path"]), number(match["start"]), number(match["stop"]), times)


def read_part(part: Part) -> list[dict[str, Any]]:
    """The part's rows (its range), audio paths made absolute."""
    if not part.path.is_file():
        raise SystemExit(f"Error: '{part.path}' does not exist")
    rows = [json.loads(line) for line in part.path.read_text().splitlines() if line.strip()]
    chosen = rows[part.start : part.stop]
    if not chosen:
        raise SystemExit(f"Error: '{part.path}' has no rows in {part.start}:{part.stop} (it has {len(rows)})")
    for row in chosen:
        audio = Path(row["audio"])
        row["audio"] = str(audio if audio.is_absolute() else (part.path.parent / audio).resolve())
    return chosen


def mix(parts: list[Part]) -> list[dict[str, Any]]:
    """Every part's rows, each part repeated its count; repeated ids get ``~k``."""
    seen: dict[str, int] = {}
    out = []
    for part in parts:
        rows = read_part(part)
        for _ in range(part.times):
            for row in rows:
                seen[row["id"]] = seen.get(row["id"], 0) + 1
                k = seen[row["id"]]
                out.append({**row, "id": row["id"] if k == 1 else f"{row['id']}~{k}"})
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out = Path(argv[0])
    rows = mix([parse_spec(spec) for spec in argv[1:]])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(out)
    print(f"{out}: {len(rows)} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
