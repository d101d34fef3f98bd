"""The ``speechsum`` command: registers one subcommand per working stage; one error funnel.

Heavy libraries (torch, transformers) are imported inside commands, so ``--help`` stays instant.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer

from speechsum_cli import __version__
from speechsum_cli.cli import align as align_cli
from speechsum_cli.cli import compose as compose_cli
from speechsum_cli.cli import convert as convert_cli
from speechsum_cli.cli import distill as distill_cli
from speechsum_cli.cli import dpo as dpo_cli
from speechsum_cli.cli import evaluate as evaluate_cli
from speechsum_cli.cli import pairs as pairs_cli
from speechsum_cli.cli import sft as sft_cli
from speechsum_cli.cli import summarize as summarize_cli
from speechsum_cli.cli import synth as synth_cli
from speechsum_cli.console import error
from speechsum_cli.errors import EXIT_INTERRUPTED, SpeechsumError

app = typer.Typer(
    name="speechsum",
    help="Make open audio LLMs into faithful speech summarizers, and run them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals in tracebacks would print API keys
    add_completion=False,
    rich_markup_mode="rich",
)


def funnel(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`SpeechsumError` into a red ``Error:`` line and its exit code (SPEECHSUM_DEBUG=1: raise)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SpeechsumError as exc:
            if os.environ.get("SPEECHSUM_DEBUG") == "1":
                raise
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted; no output was written.")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"speechsum {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Make open audio LLMs into faithful speech summarizers, and run them."""


app.command("summarize", epilog=summarize_cli.EPILOG, no_args_is_help=True)(funnel(summarize_cli.summarize))
app.command("eval", epilog=evaluate_cli.EPILOG, no_args_is_help=True)(funnel(evaluate_cli.evaluate))
app.command("pairs", epilog=pairs_cli.EPILOG, no_args_is_help=True)(funnel(pairs_cli.pairs))
app.command("dpo", epilog=dpo_cli.EPILOG, no_args_is_help=True)(funnel(dpo_cli.dpo))
app.command("compose", epilog=compose_cli.EPILOG, no_args_is_help=True)(funnel(compose_cli.compose))
app.command("convert", epilog=convert_cli.EPILOG, no_args_is_help=True)(funnel(convert_cli.convert))
app.command("distill", epilog=distill_cli.EPILOG, no_args_is_help=True)(funnel(distill_cli.distill))
app.command("align", epilog=align_cli.EPILOG, no_args_is_help=True)(funnel(align_cli.align))
app.command("sft", epilog=sft_cli.EPILOG, no_args_is_help=True)(funnel(sft_cli.sft))
app.command("synth", epilog=synth_cli.EPILOG, no_args_is_help=True)(funnel(synth_cli.synth))


def main() -> None:
    app()
