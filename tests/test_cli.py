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
    code = (
        "import sys; from speechsum_cli.app import app; "
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_python_dash_m_runs_the_app():
    out = subprocess.run([sys.executable, "-m", "speechsum_cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"speechsum {__version__}"
