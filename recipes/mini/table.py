"""The mini table, one row per system like the paper's, from an eval's report.json.

    python recipes/mini/table.py runs/mini/eval/report.json [--times runs/mini/times.tsv]
        [--json results.json --systems untrained,sft,kd,dpo,teacher,teacher-sft,cascade]

Columns: ROUGE-1/2/L, the offline hallucination measures, style compliance, repetition, length,
WER of the transcription prompt (where the system has one) and the judge (when it ran). Cells
are means over the same held-out rows; report.md has the bootstrap 95% intervals.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

COLUMNS = [
    ("rouge1", "R-1"),
    ("rouge2", "R-2"),
    ("rougeL", "R-L"),
    ("has_unsupported", "halluc. (share)"),
    ("unsupported_items", "unsupp. items"),
    ("style_ok", "style ok"),
    ("repetition", "rep. 4-grams"),
    ("scaffold_echo", "echoes scaffold"),
    ("words", "words"),
    ("wer", "WER"),
    ("judge_overall", "judge (1-7)"),
]


def cell(summary: dict[str, Any], metric: str, system: str) -> str:
    estimate = summary.get(metric, {}).get(system)
    if estimate is None:
        return "–"
    text = f"{estimate['mean']:.3f}" if metric != "words" else f"{estimate['mean']:.1f}"
    return f"**{text}**" if estimate.get("best") else text


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    columns = [(m, name) for m, name in COLUMNS if m in summary]
    lines = [
        "| system | " + " | ".join(name for _, name in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    for system in (s["name"] for s in report["systems"]):
        lines.append(f"| {system} | " + " | ".join(cell(summary, m, system) for m, _ in columns) + " |")
    return "\n".join(lines)


JSON_METRICS = {
    "rouge1": "rouge1",
    "rouge2": "rouge2",
    "rougeL": "rougeL",
    "hallucinated_share": "has_unsupported",
    "unsupported_items": "unsupported_items",
    "style_ok": "style_ok",
    "wer": "wer",
    "scaffold_echo": "scaffold_echo",
    "words": "words",
}
"""results.json's field -> the eval summary's metric."""


def results(report: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """``{"rows": [{"system": key, metric: mean or None}]}``, one row per eval system, in order."""
    names = [s["name"] for s in report["systems"]]
    if len(keys) != len(names):
        raise SystemExit(f"--systems names {len(keys)} systems but the report has {len(names)}: {names}")
    summary = report["summary"]
    rows = []
    for key, name in zip(keys, names):
        row: dict[str, Any] = {"system": key}
        for field, metric in JSON_METRICS.items():
            estimate = summary.get(metric, {}).get(name)
            row[field] = None if estimate is None else round(float(estimate["mean"]), 4)
        rows.append(row)
    return {"rows": rows}


def render_times(path: Path) -> str:
    """Stage wall times, their sum, and the wall time of the last ``run.sh`` sitting.

    ``run.sh`` appends one line per stage it runs and a ``total`` line per sitting; a resumed run
    skips finished stages, so its ``total`` covers only the last sitting. A stage listed twice
    (its output deleted and rerun) counts once, in its first place, with its last time.
    """
    stages: dict[str, int] = {}
    sittings: list[int] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, seconds = line.split("\t")
        if name == "total":
            sittings.append(int(seconds))
        else:
            stages[name] = int(seconds)
    rows = [*stages.items(), ("total (sum of the stages)", sum(stages.values()))]
    if sittings:
        rows.append(("last sitting of run.sh (wall)", sittings[-1]))
    return "\n".join(
        ["| stage | wall time |", "| --- | --- |"] + [f"| {name} | {s // 60} min {s % 60} s |" for name, s in rows]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.json written by speechsum eval")
    parser.add_argument("--times", type=Path, help="times.tsv written by recipes/mini/run.sh")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument("--systems", default="", help="comma-separated keys of the report's systems, in order")
    args = parser.parse_args()
    report = json.loads(args.report.read_text())
    if args.json:
        keys = [k.strip() for k in args.systems.split(",") if k.strip()]
        args.json.write_text(json.dumps(results(report, keys), indent=2) + "\n")
    print(f"{report['rows_compared']} held-out rows; bold = best.\n")
    print(render(report))
    if args.times and args.times.is_file():
        print()
        print(render_times(args.times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
