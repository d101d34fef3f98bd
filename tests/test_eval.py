"""`speechsum eval`: joins by id, offline metrics, report forms, checkpoints and files side by side."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.metrics.aggregate import Estimate, best_systems, bootstrap
from tests.conftest import espeak

runner = CliRunner()

ROWS = [
    {"id": "m1", "transcript": "Alice Chen opened the budget review at nine. The budget is four point two million dollars.",
     "query": "Summarize as bullets.", "style": "bullets",
     "summary": "- Alice Chen opened the budget review at nine.\n- The budget is 4.2 million dollars."},
    {"id": "m2", "transcript": "Bob will send the vendor contract to Northwind by Friday.",
     "query": "One sentence.", "style": "tldr", "summary": "Bob sends the Northwind contract by Friday."},
    {"id": "m3", "transcript": "The team agreed to hire three engineers.",
     "query": "List the decisions.", "style": "decisions", "summary": "- Hire three engineers."},
]
FAITHFUL = {
    "m1": "- Alice Chen opened the review at 9.\n- Budget: $4.2 million.",
    "m2": "Bob sends the contract to Northwind by Friday.",
    "m3": "- The team will hire three engineers.",
}
INVENTED = {
    "m1": "Carol opened the review at 10. Carol opened the review at 10.",
    "m2": "- Bob sends it.\n- The contract goes to Contoso.",
    "m3": "They hire 5 engineers in April.",
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def test_set(tmp_path):
    rows = []
    for row in ROWS:
        audio = espeak(row["transcript"], tmp_path / f"{row['id']}.wav")
        rows.append({**row, "audio": audio.name})
    return write_jsonl(tmp_path / "test.jsonl", rows)


def predictions(path, by_id, extra=None):
    rows = [{"id": k, "prediction": v} for k, v in by_id.items()] + (extra or [])
    return write_jsonl(path, rows)


def run_eval(*args):
    return runner.invoke(app, ["eval", *args, "--no-progress"])


def test_two_prediction_files_side_by_side(test_set, tmp_path):
    good = predictions(tmp_path / "good.jsonl", FAITHFUL, extra=[{"id": "zz", "prediction": "stray"}])
    bad = predictions(tmp_path / "bad.jsonl", {k: v for k, v in INVENTED.items() if k != "m3"})
    out = tmp_path / "report"

    result = run_eval("--data", str(test_set), "--predictions", str(good), "--predictions", str(bad),
                      "--out", str(out), "--plot")

    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["rows_compared"] == 2  # m3 has no prediction from 'bad': same rows only
    systems = {s["name"]: s for s in report["systems"]}
    assert systems["good"]["extra_ids"] == ["zz"]
    assert systems["bad"]["missing_ids"] == ["m3"]
    summary = report["summary"]
    assert summary["has_unsupported"]["good"]["mean"] == 0.0
    assert summary["has_unsupported"]["bad"]["mean"] == 1.0  # "10" and "Contoso" were never said
    assert summary["has_unsupported"]["good"]["best"] is True
    assert summary["style_ok"]["good"]["mean"] == 1.0 and summary["style_ok"]["bad"]["mean"] == 0.0
    assert summary["rouge1"]["good"]["mean"] > summary["rouge1"]["bad"]["mean"]
    assert summary["repetition"]["bad"]["mean"] > 0
    row = next(r for r in report["rows"] if r["id"] == "m2")
    assert row["systems"]["bad"]["prediction"] == INVENTED["m2"]
    assert row["systems"]["bad"]["scores"]["unsupported_items"] == 1.0

    md = (out / "report.md").read_text()
    assert "| style compliance (share) ↑ | **1.000 [1.000, 1.000]** | 0.000 [0.000, 0.000] |" in md
    assert "(zz)" in md and "(m3)" in md
    assert (out / "rouge1.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["counts"]["rows_compared"] == 2
    assert manifest["counts"]["missing[bad]"] == 1
    assert "style compliance" in result.stdout


def test_checkpoint_and_predictions_file_with_wer_and_speed(test_set, tmp_path, tiny_models):
    model = str(tiny_models("qwen2_audio"))
    out = tmp_path / "report"
    result = run_eval("--data", str(test_set), "--model", model, "--predictions",
                      str(predictions(tmp_path / "good.jsonl", FAITHFUL)), "--name", "tiny", "--name", "cascade",
                      "--out", str(out), "--max-new-tokens", "6", "--wer-rows", "2", "--resamples", "50")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["tiny", "cascade"]
    assert report["rows_compared"] == 3
    assert report["summary"]["real_time_factor"]["tiny"]["mean"] > 0
    assert "cascade" not in report["summary"]["real_time_factor"]
    assert report["summary"]["wer"]["tiny"]["n"] == 2
    assert report["summary"]["wer"]["tiny"]["mean"] > 0.5  # a random model does not transcribe


def test_no_common_rows_is_an_error(test_set, tmp_path):
    other = predictions(tmp_path / "other.jsonl", {"x1": "a", "x2": "b"})
    result = run_eval("--data", str(test_set), "--predictions", str(other), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "no test id" in result.stderr and "has a prediction from every system" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to evaluate"),
        (["--predictions", "P", "--name", "a", "--name", "b"], "--name was given 2 time(s) for 1 system(s)"),
    ],
)
def test_bad_flags(test_set, tmp_path, args, message):
    args = [str(predictions(tmp_path / "p.jsonl", FAITHFUL)) if a == "P" else a for a in args]
    result = run_eval("--data", str(test_set), "--out", str(tmp_path / "r"), *args)
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())


def test_test_set_without_query_names_the_column(tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "transcript": "x"}])
    result = run_eval("--data", str(data), "--predictions", str(predictions(tmp_path / "p.jsonl", {"a": "x"})),
                      "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    assert "no column 'query'" in result.stderr


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    values = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    first, second = bootstrap(values, seed=3), bootstrap(values, seed=3)
    assert first == second
    assert first.low <= first.mean <= first.high
    assert first.mean == pytest.approx(5 / 8)
    assert bootstrap([2.0]) == Estimate(2.0, 2.0, 2.0, 1)


def test_best_follows_each_metric_direction():
    est = {"a": Estimate(0.2, 0.1, 0.3, 5), "b": Estimate(0.4, 0.3, 0.5, 5)}
    assert best_systems(est, "rouge1") == {"b"}
    assert best_systems(est, "has_unsupported") == {"a"}
    assert best_systems(est, "words") == set()
