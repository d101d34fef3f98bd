"""`speechsum eval`: joins by id, offline metrics, report forms, checkpoints and files side by side."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import FAMILIES
from speechsum_cli.metrics.aggregate import Estimate, best_systems, bootstrap
from tests.conftest import espeak

runner = CliRunner()

ROWS = [
    {
        "id": "m1",
        "transcript": "Alice Chen opened the budget review at nine. The budget is four point two million dollars.",
        "query": "Summarize as bullets.",
        "style": "bullets",
        "summary": "- Alice Chen opened the budget review at nine.\n- The budget is 4.2 million dollars.",
    },
    {
        "id": "m2",
        "transcript": "Bob will send the vendor contract to Northwind by Friday.",
        "query": "One sentence.",
        "style": "tldr",
        "summary": "Bob sends the Northwind contract by Friday.",
    },
    {
        "id": "m3",
        "transcript": "The team agreed to hire three engineers.",
        "query": "List the decisions.",
        "style": "decisions",
        "summary": "- Hire three engineers.",
    },
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

    result = run_eval(
        "--data", str(test_set), "--predictions", str(good), "--predictions", str(bad), "--out", str(out), "--plot"
    )

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
    pngs = {p.name for p in out.glob("*.png")}
    assert "## Plots" in md and "![ROUGE-1 F1](rouge1.png)" in md
    assert {line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")} == pngs
    assert set(json.loads((out / "report.json").read_text())["plots"]) == pngs
    assert f"Plots ({len(pngs)}): " in result.stdout and str(out / "rouge1.png") in result.stdout
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["counts"]["rows_compared"] == 2
    assert manifest["counts"]["missing[bad]"] == 1
    assert "style compliance" in result.stdout


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_checkpoint_and_predictions_file_with_wer_and_speed(model_type, test_set, tmp_path, tiny_models):
    model = str(tiny_models(model_type))
    out = tmp_path / "report"
    result = run_eval(
        "--data",
        str(test_set),
        "--model",
        model,
        "--predictions",
        str(predictions(tmp_path / "good.jsonl", FAITHFUL)),
        "--name",
        "tiny",
        "--name",
        "cascade",
        "--out",
        str(out),
        "--max-new-tokens",
        "6",
        "--wer-rows",
        "2",
        "--resamples",
        "50",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["tiny", "cascade"]
    assert report["rows_compared"] == 3
    assert report["summary"]["real_time_factor"]["tiny"]["mean"] > 0
    assert "cascade" not in report["summary"]["real_time_factor"]
    assert report["summary"]["wer"]["tiny"]["n"] == 2
    assert report["summary"]["wer"]["tiny"]["mean"] > 0.5  # a random model does not transcribe
    # names pair with models first, then files, whatever the flag order: the report says which is which
    md = (out / "report.md").read_text()
    assert f"- `tiny`: model `{model}`" in md
    assert f"- `cascade`: predictions `{tmp_path / 'good.jsonl'}`" in md


def test_wer_compares_every_system_on_the_same_rows(test_set, tmp_path):
    # 'full' transcribes all three rows (the third badly), 'part' two of them, as a checkpoint asked
    # for --wer-rows 2 would: both WERs are over those two rows, where 'full' is exact.
    def transcribed(path, ids, wrong=()):
        return write_jsonl(
            path,
            [
                {
                    "id": r["id"],
                    "prediction": FAITHFUL[r["id"]],
                    "transcription": ("nothing like it at all" if r["id"] in wrong else r["transcript"])
                    if r["id"] in ids
                    else None,
                }
                for r in ROWS
            ],
        )

    full = transcribed(tmp_path / "full.jsonl", {"m1", "m2", "m3"}, wrong={"m3"})
    part = transcribed(tmp_path / "part.jsonl", {"m1", "m2"}, wrong={"m2"})
    out = tmp_path / "report"
    result = run_eval(
        "--data",
        str(test_set),
        "--predictions",
        str(full),
        "--predictions",
        str(part),
        "--name",
        "full",
        "--name",
        "part",
        "--out",
        str(out),
        "--resamples",
        "20",
        "--no-judge",
    )
    assert result.exit_code == 0, result.output
    wer = json.loads((out / "report.json").read_text())["summary"]["wer"]
    assert wer["full"]["n"] == wer["part"]["n"] == 2
    assert wer["full"]["mean"] == 0.0 and wer["part"]["mean"] > 0.3
    md = (out / "report.md").read_text()
    assert "WER/CER: on the 2 rows every system with transcriptions has transcribed" in md
    assert "transcribed but not compared: `full` 3 rows in all" in md
    counts = json.loads((out / "speechsum.json").read_text())["counts"]
    assert counts["wer_rows_compared"] == 2 and counts["transcribed[full]"] == 3 and counts["transcribed[part]"] == 2


def test_no_common_rows_is_an_error_naming_expected_and_found_ids(test_set, tmp_path):
    other = predictions(tmp_path / "other.jsonl", {"x1": "a", "x2": "b"})
    result = run_eval("--data", str(test_set), "--predictions", str(other), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "no test id" in message and "has a prediction from every system" in message
    assert "the test set has ids 'm1', 'm2', 'm3'; 'other' has 'x1', 'x2'" in message
    assert not (tmp_path / "r").exists()


def test_rows_that_do_not_join_are_a_warning_per_system_and_strict_makes_them_an_error(test_set, tmp_path):
    good = predictions(tmp_path / "good.jsonl", FAITHFUL, extra=[{"id": "zz", "prediction": "stray"}])
    bad = predictions(tmp_path / "bad.jsonl", {"m1": INVENTED["m1"]})
    args = [
        "--data",
        str(test_set),
        "--predictions",
        str(good),
        "--predictions",
        str(bad),
        "--no-judge",
        "--resamples",
        "20",
    ]
    result = run_eval(*args, "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert (
        f"'bad' ({bad}): 2 test ids without a prediction ('m2', 'm3'): compared on the 1 row every system has (of 3)."
    ) in stderr
    assert f"'good' ({good}): 1 prediction id not in the test set ('zz'): compared on the 1 row" in stderr
    assert "1 row compared" in (tmp_path / "r" / "report.md").read_text()
    assert "1 row ·" in result.stdout and "1 rows" not in result.stdout

    strict = run_eval(*args, "--out", str(tmp_path / "s"), "--strict")
    assert strict.exit_code == 1
    assert "--strict: the predictions do not match the test set's ids: 'good'" in " ".join(strict.stderr.split())
    assert not (tmp_path / "s").exists()


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
    result = run_eval(
        "--data",
        str(data),
        "--predictions",
        str(predictions(tmp_path / "p.jsonl", {"a": "x"})),
        "--out",
        str(tmp_path / "r"),
    )
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


# --- the LLM judge ---------------------------------------------------------------------------


def judge_reply(messages):
    """A scripted judge: invented content scores low; a score out of range once, then repaired."""
    user = messages[1]["content"]
    summary = user.split("The summary to evaluate:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
    repairing = any("previous reply was not valid" in m["content"] for m in messages)
    if "Northwind by Friday" in summary and not repairing:
        return json.dumps(
            {
                "accuracy": 9,
                "coherence": 7,
                "style": 7,
                "hallucination": 7,
                "instruction_following": 7,
                "overall": 7,
                "invented_facts": [],
                "rationale": "x",
            }
        )
    if "They hire 5" in summary:
        return "I cannot decide."  # never valid: this row's judgement fails
    invented = ["Carol"] if "Carol" in summary or "Contoso" in summary else []
    score = 2 if invented else 6
    return json.dumps(
        {
            "accuracy": score,
            "coherence": 5,
            "style": 5,
            "hallucination": score,
            "instruction_following": 5,
            "overall": score,
            "invented_facts": invented,
            "rationale": "checked against the transcript",
        }
    )


def test_judge_scores_failures_and_cache(test_set, tmp_path, monkeypatch):
    from tests.fake_openai import FakeOpenAI

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    good = predictions(tmp_path / "good.jsonl", FAITHFUL)
    bad = predictions(tmp_path / "bad.jsonl", INVENTED)
    with FakeOpenAI(judge_reply) as server:
        args = [
            "--data",
            str(test_set),
            "--predictions",
            str(good),
            "--predictions",
            str(bad),
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "judge",
            "--judge-cache-dir",
            str(tmp_path / "cache"),
            "--resamples",
            "20",
            "--max-failed-share",
            "0.5",
        ]
        result = run_eval(*args, "--out", str(tmp_path / "r1"))
        assert result.exit_code == 0, result.output
        first = server.requests
        again = run_eval(*args, "--out", str(tmp_path / "r2"))
        assert again.exit_code == 0, again.output
        assert server.requests == first  # every reply came from the cache

    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    judge = report["judge"]
    assert judge["ran"] and judge["model"] == "judge"
    assert judge["failed"] == {"good": 0, "bad": 1}
    assert any("invalid JSON" in r for r in judge["failure_reasons"])
    summary = report["summary"]
    # m3 failed for 'bad', so judge metrics use m1, m2 for both systems: never a 0 for a failure.
    assert summary["judge_overall"]["bad"]["n"] == 2 and summary["judge_overall"]["good"]["n"] == 2
    assert summary["judge_overall"]["good"]["mean"] == 6.0  # m2's out-of-range 9 was repaired to 6
    assert summary["judge_overall"]["bad"]["mean"] == 2.0
    assert summary["judge_flags_invented_fact"]["bad"]["mean"] == 1.0
    m3 = next(r for r in report["rows"] if r["id"] == "m3")["systems"]["bad"]
    assert "judge_overall" not in m3["scores"] and "invalid JSON" in m3["judge_failed"]
    assert "failed (retries spent" in (tmp_path / "r1" / "report.md").read_text()


def test_judge_failures_fail_the_run_or_warn_and_retry_failed_resends_only_those(test_set, tmp_path, monkeypatch):
    from tests.fake_openai import FakeOpenAI

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    good = predictions(tmp_path / "good.jsonl", FAITHFUL)

    def args(out, server, *more):
        return (
            "--data",
            str(test_set),
            "--predictions",
            str(good),
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "judge",
            "--judge-cache-dir",
            str(tmp_path / f"cache-{out}"),
            "--judge-concurrency",
            "1",
            "--resamples",
            "20",
            "--out",
            str(tmp_path / out),
            *more,
        )

    with FakeOpenAI(lambda messages: "no scores today") as broken:
        every = run_eval(*args("all", broken))
    assert every.exit_code == 3, every.output
    stderr = " ".join(every.stderr.split())
    assert "every judge request failed: 3 of 3 judge requests failed (invalid JSON: 3)" in stderr
    assert "Nothing was written to" in stderr and "--retry-failed" in stderr
    assert not (tmp_path / "all").exists()

    with FakeOpenAI(judge_reply) as server:
        server.fail_next("garbage", "garbage", "garbage")  # m1's try and both repair turns
        partial = run_eval(*args("r", server, "--max-failed-share", "0.5"))
        assert partial.exit_code == 0, partial.output
        assert "1 of 3 judge requests failed (invalid JSON: 1)" in " ".join(partial.stderr.split())
        sent = server.requests
        retried = run_eval(*args("r", server, "--retry-failed"))
        assert retried.exit_code == 0, retried.output
        assert server.requests == sent + 1
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["judge"]["failed"] == {"good": 0}
    assert report["summary"]["judge_overall"]["good"]["n"] == 3


def test_judge_dry_run_sends_nothing_and_writes_nothing(test_set, tmp_path):
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(judge_reply) as server:
        result = run_eval(
            "--data",
            str(test_set),
            "--predictions",
            str(predictions(tmp_path / "g.jsonl", FAITHFUL)),
            "--judge-base-url",
            server.base_url,
            "--judge-cache-dir",
            str(tmp_path / "cache"),
            "--dry-run",
            "--out",
            str(tmp_path / "r"),
        )
        as_json = run_eval(
            "--data",
            str(test_set),
            "--predictions",
            str(tmp_path / "g.jsonl"),
            "--judge-base-url",
            server.base_url,
            "--judge-model",
            "unlisted-judge",
            "--judge-cache-dir",
            str(tmp_path / "cache"),
            "--price-in",
            "1000",
            "--price-out",
            "1000",
            "--dry-run",
            "--json",
            "--out",
            str(tmp_path / "r"),
        )
        assert server.requests == 0
    assert result.exit_code == 0, result.output
    assert "Dry run: the judge would score 3 rows x 1 system;" in result.stdout
    assert as_json.exit_code == 0, as_json.output
    estimate = json.loads(as_json.stdout)
    assert (estimate["dry_run"], estimate["rows"], estimate["systems"], estimate["requests"]) == (True, 3, 1, 3)
    assert estimate["cost_usd"] > 0  # priced by --price-in/--price-out, not "no price known"
    assert "no price known" not in as_json.stderr
    assert not (tmp_path / "r").exists()


def test_without_a_judge_the_report_says_so(test_set, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run_eval(
        "--data",
        str(test_set),
        "--predictions",
        str(predictions(tmp_path / "g.jsonl", FAITHFUL)),
        "--out",
        str(tmp_path / "r"),
    )
    assert result.exit_code == 0
    assert "the LLM judge is off" in " ".join(result.stderr.split())
    assert "Judge: not run" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.slow
def test_end_to_end_checkpoint_vs_file_with_a_judge_served_by_transformers(
    test_set, tmp_path, tiny_models, transformers_server, monkeypatch
):
    """The real server round trip: a tiny judge answers noise, so every judgement fails; that is
    nothing usable (exit 3, no report a recipe would take for finished), never a score."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    base_url, judge_model = transformers_server
    out = tmp_path / "report"
    result = run_eval(
        "--data",
        str(test_set),
        "--model",
        str(tiny_models("qwen2_audio")),
        "--predictions",
        str(predictions(tmp_path / "good.jsonl", FAITHFUL)),
        "--judge-base-url",
        base_url,
        "--judge-model",
        judge_model,
        "--judge-concurrency",
        "2",
        "--judge-max-tokens",
        "24",
        "--judge-cache-dir",
        str(tmp_path / "cache"),
        "--max-new-tokens",
        "4",
        "--wer-rows",
        "1",
        "--resamples",
        "20",
        "--out",
        str(out),
    )
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert "every judge request failed: 6 of 6 judge requests failed (invalid JSON: 6)" in message
    assert "--retry-failed" in message
    assert not out.exists()
    assert list((tmp_path / "cache").iterdir())  # the replies were received and kept for the retry


# --- the shared option vocabulary (issue 17) ---------------------------------------------------

JUDGE_FLAGS = {
    "--judge-base-url",
    "--judge-model",
    "--judge-api-key-env",
    "--judge-concurrency",
    "--judge-cache-dir",
    "--judge-max-tokens",
    "--max-cost",
    "--price-in",
    "--price-out",
    "--prices",
}


def judge_flags(command: str) -> dict[str, tuple]:
    """Visible judge and budget options of a command: flag -> (default, help)."""
    import typer

    cmd = typer.main.get_command(app).commands[command]
    return {
        opt: (param.default, param.help)
        for param in cmd.params
        if not getattr(param, "hidden", False)
        for opt in param.opts
        if opt.startswith("--judge-") or opt in JUDGE_FLAGS
    }


def test_pairs_and_eval_spell_the_judge_identically():
    pairs, evaluate = judge_flags("pairs"), judge_flags("eval")
    assert set(pairs) == set(evaluate) == JUDGE_FLAGS
    for flag in JUDGE_FLAGS - {"--judge-max-tokens"}:
        assert pairs[flag] == evaluate[flag], flag
    # the one default that differs says why
    assert pairs["--judge-max-tokens"][0] == 256 and evaluate["--judge-max-tokens"][0] == 512
    assert "Here 256" in pairs["--judge-max-tokens"][1]


def test_json_prints_the_summary(test_set, tmp_path):
    result = run_eval(
        "--data",
        str(test_set),
        "--predictions",
        str(predictions(tmp_path / "g.jsonl", FAITHFUL)),
        "--out",
        str(tmp_path / "r"),
        "--no-judge",
        "--resamples",
        "20",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["style_ok"]["g"]["mean"] == 1.0


def test_no_judge_is_what_the_report_says(test_set, tmp_path):
    result = run_eval(
        "--data",
        str(test_set),
        "--predictions",
        str(predictions(tmp_path / "g.jsonl", FAITHFUL)),
        "--out",
        str(tmp_path / "r"),
        "--no-judge",
        "--resamples",
        "20",
    )
    assert result.exit_code == 0, result.output
    assert "judge is off" not in result.stderr
    assert "Judge: not run — turned off with --no-judge." in (tmp_path / "r" / "report.md").read_text()


def test_judge_on_without_a_key_names_the_judge_flags(test_set, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run_eval(
        "--data",
        str(test_set),
        "--predictions",
        str(predictions(tmp_path / "g.jsonl", FAITHFUL)),
        "--out",
        str(tmp_path / "r"),
        "--judge",
    )
    assert result.exit_code == 1
    assert (
        "no API key: environment variable OPENAI_API_KEY is not set. Export it, pass --judge-api-key-env "
        "NAME for another variable, or --judge-base-url for a local server."
    ) in " ".join(result.stderr.split())


def test_column_flags_map_other_names(tmp_path):
    data = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {"key": r["id"], "said": r["transcript"], "ask": r["query"], "style": r["style"], "ref": r["summary"]}
            for r in ROWS
        ],
    )
    result = run_eval(
        "--data",
        str(data),
        "--predictions",
        str(predictions(tmp_path / "g.jsonl", FAITHFUL)),
        "--out",
        str(tmp_path / "r"),
        "--no-judge",
        "--resamples",
        "20",
        "--id-column",
        "key",
        "--transcript-column",
        "said",
        "--query-column",
        "ask",
        "--summary-column",
        "ref",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["rows_compared"] == 3 and "rouge1" in report["summary"]


def test_help_names_the_plot_extra():
    import re
    from pathlib import Path

    import tomllib

    result = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert "pip install 'speechsum[plot]'" in result.stdout
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extra = re.search(r"pip install '(\w+)\[(\w+)\]'", result.stdout)
    assert extra.group(1) == project["name"]
    assert any(dep.startswith("matplotlib") for dep in project["optional-dependencies"][extra.group(2)])


# --- WER on recordings of any length (issue 31) --------------------------------------------------


@pytest.fixture
def long_test_set(test_set, tmp_path):
    """The three rows plus one of 12 s: longer than the tiny models' 5 s window."""
    from tests.conftest import speech_of_duration

    rows = [json.loads(line) for line in test_set.read_text().splitlines()]
    audio = speech_of_duration(tmp_path / "long.wav", 12.0, workdir=tmp_path)
    rows.append(
        {
            "id": "long",
            "audio": audio.name,
            "transcript": "the quick brown fox " * 8,
            "query": "Summarize as bullets.",
            "style": "bullets",
            "summary": "- A fox.",
        }
    )
    return write_jsonl(tmp_path / "long.jsonl", rows)


def test_wer_covers_rows_longer_than_one_window(long_test_set, tmp_path, tiny_models):
    out = tmp_path / "report"
    result = run_eval(
        "--data",
        str(long_test_set),
        "--model",
        str(tiny_models("qwen2_audio")),
        "--name",
        "tiny",
        "--out",
        str(out),
        "--max-new-tokens",
        "3",
        "--wer-rows",
        "4",
        "--resamples",
        "10",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["wer"]["tiny"]["n"] == 4  # the 12 s row too (it used to be skipped)
    # what WER was computed on is in the report: every row's transcription, the long one's included
    assert all(isinstance(row["systems"]["tiny"]["transcription"], str) for row in report["rows"])
    assert json.loads((out / "speechsum.json").read_text())["counts"]["transcribed[tiny]"] == 4


@pytest.mark.parametrize("per_prompt", [None, 1])
def test_a_long_transcription_is_its_prompts_answers_in_order(per_prompt, long_test_set, tiny_models, tmp_path):
    """Read in one prompt (the default) or window by window, with a budget that grows with the
    audio, never --max-new-tokens' summary budget; the parts are joined in order."""
    from speechsum_cli.data.audio import iter_chunks
    from speechsum_cli.families import GenerationSettings, Prompt, load
    from speechsum_cli.stages.evaluate import ASR_QUERY, EvalConfig, asr_budget, transcribe

    lm = load(str(tiny_models("qwen2_audio")), device="cpu", dtype="float32")
    audio = tmp_path / "long.wav"
    config = EvalConfig(data=long_test_set, out=tmp_path / "r", max_new_tokens=2, windows_per_prompt=per_prompt)
    got = transcribe(lm, [{"id": "long", "audio": str(audio)}], 5.0, config)["long"]

    windows = [c.samples for c in iter_chunks(audio, lm.sampling_rate, 5.0)]
    assert len(windows) == 3
    groups = [windows] if per_prompt is None else [[w] for w in windows]  # one batch (--batch-size 4)
    longest = max(sum(len(w) for w in group) for group in groups) / lm.sampling_rate
    settings = GenerationSettings(max_new_tokens=asr_budget(longest, 2))
    expected = lm.generate([Prompt(ASR_QUERY, g if len(g) > 1 else g[0]) for g in groups], settings)
    assert settings.max_new_tokens > 20  # not the 2 tokens of --max-new-tokens
    assert got == " ".join(t for t in expected if t)


def test_a_missing_audio_file_is_named_by_row_and_data_file_before_any_model_loads(test_set, tmp_path):
    """eval probed the audio without naming the row or the test set (and, for a second --model,
    after the first had run)."""
    rows = [json.loads(line) for line in test_set.read_text().splitlines()]
    rows[0]["audio"] = "clips/gone.wav"
    data = write_jsonl(tmp_path / "broken.jsonl", rows)
    result = run_eval(
        "--data", str(data), "--model", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "report"), "--no-judge"
    )
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    first = rows[0]["id"]
    assert (f"data '{data}' has rows eval cannot use: 1 row(s) with unreadable 'audio': ids '{first}'") in message
    assert f"audio file '{tmp_path / 'clips' / 'gone.wav'}' does not exist" in message
    assert "no-such-model" not in message


def test_a_row_with_audio_too_short_for_the_encoder_is_summarized_and_counted(test_set, tmp_path, tiny_models):
    """A clip of a few samples crashed Qwen2-Audio's generate; eval summarizes it padded with
    silence, warns naming the row, and counts it in speechsum.json."""
    import numpy as np
    import soundfile as sf

    rows = [{**json.loads(line)} for line in test_set.read_text().splitlines()]
    rows = [{**row, "audio": str(test_set.parent / row["audio"])} for row in rows]
    sf.write(tmp_path / "blip.wav", np.full(40, 0.1, np.float32), 16000)
    rows[1]["audio"] = str(tmp_path / "blip.wav")
    data = write_jsonl(tmp_path / "short.jsonl", rows)
    out = tmp_path / "report"
    model = str(tiny_models("qwen2_audio"))
    result = run_eval(
        "--data",
        str(data),
        "--model",
        model,
        "--name",
        "tiny",
        "--out",
        str(out),
        "--max-new-tokens",
        "3",
        "--no-judge",
        "--batch-size",
        "1",
    )
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "1 row shorter than the 0.060 s the model's audio encoder reads" in warning
    assert "'m2' (0.003 s)" in result.stderr
    counts = json.loads((out / "speechsum.json").read_text())["counts"]
    assert counts["padded_short_audio[tiny]"] == 1 and counts["rows_compared"] == 3
