"""recipes/quickstart.sh end to end (test-sized), and the rule-based stand-in LLM it serves."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_server():
    spec = importlib.util.spec_from_file_location(
        "extractive_llm_server", ROOT / "examples" / "extractive_llm_server.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRANSCRIPT = (
    "Priya Nair opened the budget review. Marketing spent forty two thousand dollars. "
    "Tom will send the revised budget to finance by Thursday."
)


def test_stand_in_llm_answers_synth_with_valid_rows():
    from speechsum_cli.prompts.synth import synth_data

    server = load_server()
    spec = synth_data()
    for description, length in (
        ("a bulleted list of the main points", "at most 3 bullets"),
        ("a one-sentence TL;DR", "at most 20 words"),
        ("one concise paragraph", "at most 40 words"),
    ):
        user = spec["user"].format(
            transcript=TRANSCRIPT,
            style_description=description,
            style_instruction="x",
            length=length,
            focus="the whole recording",
            audience="a general reader",
            tone="neutral",
        )
        reply = server.answer([{"role": "system", "content": spec["system"]}, {"role": "user", "content": user}])
        assert set(reply) == {"query", "summary", "importance"} and 1 <= reply["importance"] <= 5
        assert reply["summary"] and len(reply["query"]) >= 3
        assert all(w.strip(".,-:") in TRANSCRIPT for w in reply["summary"].split() if w.strip(".,-:"))


def test_stand_in_llm_pairwise_verdicts_are_consistent_and_prefer_the_faithful_summary():
    from speechsum_cli.metrics.judge import judge_messages, pairwise_messages

    server = load_server()
    good = "Tom will send the revised budget to finance by Thursday."
    bad = "Zoe will send 99 budgets to Acme by Sunday."
    assert server.answer(pairwise_messages(TRANSCRIPT, "Summarize.", good, bad))["better"] == "A"
    assert server.answer(pairwise_messages(TRANSCRIPT, "Summarize.", bad, good))["better"] == "B"
    scores_good = server.answer(judge_messages(TRANSCRIPT, "Summarize.", good))
    scores_bad = server.answer(judge_messages(TRANSCRIPT, "Summarize.", bad))
    assert scores_good["hallucination"] > scores_bad["hallucination"] and scores_bad["invented_facts"]


def foreign_warnings(stderr: str) -> list[str]:
    """Lines that mention a Warning and are not ours (ours start with 'Warning: ', from console.warn)."""
    return [line for line in stderr.splitlines() if "Warning" in line and not line.startswith("Warning: ")]


def test_foreign_warnings_are_told_from_ours():
    stderr = (
        "Warning: no price known for model 'x'\n"
        "/site-packages/transformers/modeling_utils.py:3312: FutureWarning: `is_gradient_checkpointing` ...\n"
        "/site-packages/peft/utils/save_and_load.py:313: UserWarning: Could not find a config file\n"
    )
    assert len(foreign_warnings(stderr)) == 2


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")  # a zombie is not running
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_cleans_up(tmp_path):
    work = tmp_path / "qs"
    env = {**os.environ, "WORK": str(work), "QUICKSTART_SIZE": "test", "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", str(ROOT / "recipes" / "quickstart.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    report = json.loads((work / "eval" / "report.json").read_text())
    assert "judge" in json.dumps(report)
    assert (work / "eval" / "report.md").read_text().count("| judge overall") == 1
    assert (work / "summary.txt").read_text().strip()
    for stage in ("synth", "sft", "kd", "pairs", "dpo"):
        assert (work / stage / "speechsum.json").is_file(), stage
    assert "rule-based" in run.stderr and "nonsense" in run.stderr
    assert foreign_warnings(run.stderr) == [], "library warnings leak into the quickstart's stderr"
    for stage in run.stderr.split("\n== ")[1:]:  # each stage's section of the log
        steps = [line.split(":")[0] for line in stage.splitlines() if line.startswith("step ")]
        assert all(a != b for a, b in itertools.pairwise(steps)), f"a step line is printed twice: {stage[:40]}"
    assert "1 steps" not in run.stderr and "1 rows" not in run.stdout + run.stderr
    server_pid = int((work / "llm-server.pid").read_text())
    assert not pid_alive(server_pid), "the stand-in LLM server was left running"

    again = subprocess.run(
        ["bash", str(ROOT / "recipes" / "quickstart.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-5000:]
    assert again.stderr.count("exists: skipped") >= 7  # resume: no stage is redone
    assert not pid_alive(int((work / "llm-server.pid").read_text()))


def test_paper_recipe_prints_the_papers_chain_in_print_only_mode(tmp_path):
    """paper.sh needs GPUs and the hub; PRINT_ONLY=1 checks its commands and settings here."""
    env = {**os.environ, "PRINT_ONLY": "1", "WORK": str(tmp_path / "paper"), "PATH": os.environ["PATH"]}
    run = subprocess.run(
        ["bash", str(ROOT / "recipes" / "paper.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    lines = {
        line.split(" -m speechsum_cli ")[1].split()[0]: line
        for line in run.stdout.splitlines()
        if " -m speechsum_cli " in line
    }
    assert list(lines) == ["synth", "sft", "distill", "pairs", "dpo", "eval"]
    assert "--per-audio 1" in lines["synth"] and "--min-importance" in lines["synth"]
    assert "microsoft/Phi-4-multimodal-instruct@refs/pr/70" in lines["sft"]
    for stage in ("sft", "distill", "dpo"):
        assert "--lora-r 16 --lora-alpha 32" in lines[stage]
    assert "--loss reverse-kl --lmbda 1.0" in lines["distill"]
    assert "--k 2 --judge pairwise" in lines["pairs"]
    assert f"--model {tmp_path / 'paper'}/kd" in lines["dpo"]
    assert not (tmp_path / "paper").exists()  # nothing ran


def test_quickstart_stops_its_server_when_a_stage_fails(tmp_path):
    """A failing stage ends the script with its error and takes the stand-in LLM server down too."""
    work = tmp_path / "qs"
    (work / "corpus").mkdir(parents=True)
    (work / "corpus" / "test.jsonl").write_text("")
    (work / "models" / "text-lm").mkdir(parents=True)
    (work / "models" / "student").mkdir()
    env = {
        **os.environ,
        "WORK": str(work),
        "QUICKSTART_SIZE": "test",
        "PYTHON": sys.executable,
        "SPEECHSUM": "false",
    }  # every speechsum command fails: synth is the first after the server starts
    run = subprocess.run(
        ["bash", str(ROOT / "recipes" / "quickstart.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "2/8 synth" in run.stderr
    assert not pid_alive(int((work / "llm-server.pid").read_text())), "the server outlived a failed run"
