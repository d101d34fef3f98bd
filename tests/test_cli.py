"""The command itself: help, version, lazy imports, ``python -m``."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from speechsum_cli import __version__
from speechsum_cli.app import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"speechsum {__version__}"


def test_no_arguments_shows_help_with_the_registered_commands():
    result = runner.invoke(app, [])
    assert "summarize" in result.output
    assert "Usage" in result.output


def test_summarize_help_lists_presets_and_an_example():
    result = runner.invoke(app, ["summarize", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for preset in ("bullets", "tldr", "action-items", "chapters"):
        assert preset in text
    assert "speechsum summarize meeting.wav --style bullets" in text


def test_help_does_not_import_heavy_libraries():
    """``speechsum --help`` renders without torch, transformers or openai (1.4 s of imports): the
    CLI reads LLMConfig from llm.config, and llm/__init__ imports no client."""
    import os
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[1]  # this checkout, not an installed copy
    code = (
        "import sys; import speechsum_cli.app; "
        "heavy = ('torch', 'transformers', 'trl', 'peft', 'datasets', 'openai'); "
        "print(','.join(m for m in heavy if m in sys.modules)); print(speechsum_cli.app.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=checkout, env=env
    )
    heavy, imported_from = out.stdout.splitlines()
    assert heavy == ""
    assert Path(imported_from).resolve().is_relative_to(checkout)


def test_python_dash_m_runs_the_app():
    out = subprocess.run([sys.executable, "-m", "speechsum_cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"speechsum {__version__}"


def _flags_in(text: str) -> set[str]:
    import re

    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text))


def test_every_flag_an_llm_hint_names_exists_on_each_command_that_calls_an_llm(tmp_path):
    """The price warning, the failure messages and the retry hint name only flags the command has."""
    import contextlib
    import io

    from speechsum_cli.llm.client import LLMClient
    from speechsum_cli.llm.config import LLMConfig
    from speechsum_cli.llm.failures import Failures, check_failures

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", model="no-such-price")).close()
    hints = stderr.getvalue()
    for share in (0.0, 1.0):
        try:
            hints += (
                check_failures(
                    Failures.tally(4, ["HTTP 500: boom"]),
                    max_share=share,
                    unit="request",
                    left="",
                    retry="Run it with --retry-failed.",
                )
                or ""
            )
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            hints += str(exc)
    named = _flags_in(hints)
    assert {"--price-in", "--price-out", "--prices", "--retry-failed", "--max-failed-share"} <= named
    for command in ("synth", "pairs", "eval"):
        help_text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}).stdout
        assert named | {"--max-cost"} <= _flags_in(help_text), command


def test_the_report_of_an_unconfigured_judge_does_not_offer_no_judge_as_a_fix():
    from types import SimpleNamespace

    from speechsum_cli.metrics.report import judge_section

    why = judge_section(SimpleNamespace(judge=None), [], None)["why"]
    assert "--no-judge" not in why and "--judge-base-url" in why


def test_command_results_reach_stdout_through_the_one_sink():
    """Every command prints its result through cli/output.py (text, --json, eval's table); no
    command module writes to stdout its own way."""
    import ast
    from pathlib import Path

    cli = Path(__file__).resolve().parents[1] / "speechsum_cli" / "cli"
    for path in cli.glob("*.py"):
        if path.name == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                assert name not in ("typer.echo", "print", "Console"), f"{path.name}: {name}"
