"""A system's answers in an eval report.json, as a predictions file another eval can score.

    python recipes/mini/experiments/report_predictions.py EVAL_DIR SYSTEM OUT.jsonl

Writes one row per report row: ``id, prediction`` and, where the report has it, ``transcription``.
Scoring a checkpoint's answers beside other systems' files costs no generation this way (RESULTS.md,
"Long natural recordings": the sft student's long-set answers scored beside the baselines, WER on
the rows both transcribed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def predictions(report: dict, system: str) -> list[dict]:
    names = [s["name"] for s in report["systems"]]
    if system not in names:
        raise SystemExit(f"Error: no system '{system}' in the report; it has {names}")
    rows = []
    for row in report["rows"]:
        entry = row["systems"][system]
        rows.append(
            {
                "id": row["id"],
                "prediction": entry["prediction"],
                **({"transcription": entry["transcription"]} if "transcription" in entry else {}),
            }
        )
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        raise SystemExit(__doc__)
    report = json.loads((Path(argv[0]) / "report.json").read_text())
    rows = predictions(report, argv[1])
    Path(argv[2]).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(
        f"{argv[2]}: {len(rows)} rows, {sum('transcription' in r for r in rows)} with a transcription", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
