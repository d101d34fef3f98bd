"""The committed results of the mini recipe: ``results.json`` follows the issue's schema and says
the same as the table in ``RESULTS.md`` (the two are copied from one run; a hand edit of either
would make them disagree)."""

from __future__ import annotations

import json
import re
from pathlib import Path

MINI = Path(__file__).resolve().parents[1] / "recipes" / "mini"
SYSTEMS = ["untrained", "sft", "kd", "dpo", "teacher", "teacher-sft", "cascade"]
TABLE_NAMES = {
    "untrained": "student, untrained", "sft": "+ sft", "kd": "+ sft + kd", "dpo": "+ sft + kd + dpo",
    "teacher": "teacher (text, transcript)", "teacher-sft": "teacher fine-tuned (text, transcript)",
    "cascade": "cascade (whisper-base -> smollm2)",
}
# columns of the table in RESULTS.md that results.json carries
COLUMNS = {"rouge1": 1, "rouge2": 2, "rougeL": 3, "hallucinated_share": 4, "unsupported_items": 5,
           "style_ok": 6, "wer": 9}


def table_rows() -> dict[str, list[str]]:
    """The first table under '## The table' in RESULTS.md, by system name."""
    text = (MINI / "RESULTS.md").read_text()
    section = text[text.index("## The table"):]
    section = section[:section.index("\n## ")]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] in TABLE_NAMES.values():
            rows[cells[0]] = cells
    return rows


def test_results_json_has_every_system_with_numbers():
    rows = json.loads((MINI / "results.json").read_text())["rows"]
    assert [row["system"] for row in rows] == SYSTEMS
    for row in rows:
        for key in COLUMNS:
            value = row[key]
            if key == "wer" and row["system"] in ("teacher", "teacher-sft"):
                assert value is None
            else:
                assert isinstance(value, (int, float)) and value >= 0, (row["system"], key)


def test_results_json_agrees_with_the_table_in_results_md():
    table = table_rows()
    assert set(table) == set(TABLE_NAMES.values())
    for row in json.loads((MINI / "results.json").read_text())["rows"]:
        cells = table[TABLE_NAMES[row["system"]]]
        for key, column in COLUMNS.items():
            shown = re.sub(r"[*]", "", cells[column])
            if row[key] is None:
                assert shown == "–", (row["system"], key)
            else:
                assert abs(float(shown) - row[key]) <= 0.0005 + 1e-9, (row["system"], key, shown, row[key])
