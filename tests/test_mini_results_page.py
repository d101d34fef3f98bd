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
    "untrained": "student, untrained",
    "sft": "+ sft",
    "kd": "+ sft + kd",
    "dpo": "+ sft + kd + dpo",
    "teacher": "teacher (text, transcript)",
    "teacher-sft": "teacher fine-tuned (text, transcript)",
    "cascade": "cascade (whisper-base -> smollm2)",
}
# columns of the table in RESULTS.md that results.json carries
COLUMNS = {
    "rouge1": 1,
    "rouge2": 2,
    "rougeL": 3,
    "hallucinated_share": 4,
    "unsupported_items": 5,
    "style_ok": 6,
    "wer": 9,
}


def table_rows() -> dict[str, list[str]]:
    """The first table under '## The table' in RESULTS.md, by system name."""
    text = (MINI / "RESULTS.md").read_text()
    section = text[text.index("## The table") :]
    section = section[: section.index("\n## ")]
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


def test_the_times_table_sums_the_stages_of_a_resumed_run(tmp_path):
    # run.sh appends a 'total' per sitting; a resumed run's last sitting covers only the stages it ran
    import importlib.util

    spec = importlib.util.spec_from_file_location("mini_table", MINI / "table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    times = tmp_path / "times.tsv"
    times.write_text("align\t600\nsft\t300\ntotal\t900\ndpo\t100\ndpo\t120\ntotal\t125\n")
    text = table.render_times(times)
    assert "| total (sum of the stages) | 17 min 0 s |" in text  # 600 + 300 + 120
    assert "| last sitting of run.sh (wall) | 2 min 5 s |" in text
    assert text.count("| dpo |") == 1 and "| dpo | 2 min 0 s |" in text
