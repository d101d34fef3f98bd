"""Names and numbers per summary, supported by the transcript or not, for every system of a mini
run's eval (RESULTS.md, "Why KD and DPO do not help yet"). Uses the faithfulness metric's own
extractors, so "unsupported" here is the table's "unsupp. items".

    python recipes/mini/experiments/specifics.py runs/mini
"""

import json
import sys
from pathlib import Path

from speechsum_cli.metrics.faithfulness import (
    _word_value,
    capitalized_terms,
    number_mentions,
    unsupported_content,
)

work = Path(sys.argv[1])
report = json.loads((work / "eval" / "report.json").read_text())
rows = [json.loads(line) for line in (work / "corpus" / "test.jsonl").read_text().splitlines()]
transcripts = {row["id"]: row["transcript"] for row in rows}
print("| system | names + numbers per summary | supported | unsupported |\n| --- | --- | --- | --- |")
for name in report["rows"][0]["systems"]:
    stated = unsupported = 0
    for row in report["rows"]:
        summary, transcript = row["systems"][name]["prediction"], transcripts[row["id"]]
        names = dict.fromkeys(t for t in capitalized_terms(summary) if _word_value(t) is None)
        stated += len(number_mentions(summary)) + len(names)
        unsupported += unsupported_content(summary, transcript).count
    n = len(report["rows"])
    print(f"| {name} | {stated / n:.2f} | {(stated - unsupported) / n:.2f} | {unsupported / n:.2f} |")
