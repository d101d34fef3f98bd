"""The one option vocabulary: a flag that means the same thing in two commands is defined here.

Typer ``Annotated`` aliases (as the ``hf`` CLI keeps its shared options), plus
:func:`train_options`, which gives sft, distill and dpo the same training flags, built from the
fields of :class:`~speechsum_cli.training.settings.TrainSettings` (each field's metadata is its
flag's help, as TRL's are); a stage whose default differs says why in its help
(``DEFAULT_REASONS``).

The commands that are not training stages share the rest: :func:`endpoint_options` spells an
OpenAI-compatible LLM the same way everywhere (``--ROLE-base-url --ROLE-model ...`` with the role
as prefix, e.g. pairs' and eval's judge, distill's ``--teacher-*``, and the ``--server-*`` of
summarize, eval and pairs generating on a server; unprefixed, with ``--llm`` for the model, where a command
talks to one LLM and has no checkpoint, as synth) and gives the command an
:class:`~speechsum_cli.llm.config.LLMConfig`, :func:`column_options` the ``--X-column`` flags,
:func:`long_audio_option` the subset of :class:`LongAudio` a command supports. Results reach
stdout through :mod:`speechsum_cli.cli.output`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from speechsum_cli import dtypes
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.dtypes import Dtype
from speechsum_cli.llm.config import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_CACHE_DIR,
    DEFAULT_MAX_FAILED_SHARE,
    DEFAULT_MODEL,
    LLMConfig,
    endpoint_flag,
)
from speechsum_cli.training.settings import (
    DEFAULT_REASONS,
    DISTILL_DEFAULTS,
    DPO_DEFAULTS,
    SFT_DEFAULTS,
    TrainSettings,
)

TRAINING_PANEL = "Training (shared by sft, distill, dpo)"
COLUMNS_PANEL = "Column mapping"


# --- the shared options ----------------------------------------------------------------------

MODEL_HELP = "Starting checkpoint: local dir, hub id or hub_id@revision (an adapter dir is merged into its base)."


def model_option(help: str = MODEL_HELP, *extra: str, **settings: Any) -> Any:
    """``--model/-m``, the checkpoint a stage starts from; ``--ckpt`` is its synonym everywhere.

    ``settings`` go to ``typer.Option`` (e.g. ``envvar`` for summarize's ``SPEECHSUM_MODEL``).
    """
    return typer.Option("--model", "-m", "--ckpt", *extra, help=help, show_default=False, **settings)


def data_option(help: str) -> Any:
    return typer.Option("--data", "-d", help=help, show_default=False)


def out_option(help: str) -> Any:
    return typer.Option("--out", "-o", help=help, show_default=False)


def json_option(what: str = "the result (path, counts, metrics)", help: str | None = None) -> Any:
    """``--json``: the command's result as JSON on stdout (every stage has it)."""
    return typer.Option("--json", help=help or f"Print {what} as JSON on stdout.")


def overwrite_option(output: str = "--out") -> Any:
    """``--overwrite``: replace the existing ``output`` (a flag or an argument's name)."""
    return typer.Option("--overwrite", help=f"Replace an existing {output}.")


def split_option(source: str = "--data") -> Any:
    """``--split``: which split of a saved DatasetDict ``source`` names."""
    return typer.Option("--split", help=f"Split of a saved DatasetDict in {source}.")


Json = Annotated[bool, json_option()]
Overwrite = Annotated[bool, overwrite_option()]
Split = Annotated[Optional[str], split_option()]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")]
WindowsPerPrompt = Annotated[
    Optional[int],
    typer.Option(
        help="Most consecutive audio windows read in one prompt, as training reads a long row; a longer "
        "recording is answered part by part and the parts combined. 1 = every window alone  "
        "\\[default: as many as fit the model's context].",
        min=1,
        show_default=False,
    ),
]


GENERATION_HELP = {
    "max_new_tokens": "Generation budget {what}.",
    "temperature": "Sampling temperature: 0 = greedy (reproducible), > 0 samples.",
    "top_p": "Nucleus sampling mass (with --temperature > 0).",
    "batch_size": "Prompts generated together{what}.",
}
GENERATION_LIMITS: dict[str, dict[str, Any]] = {
    "max_new_tokens": {"min": 1},
    "temperature": {"min": 0.0},
    "top_p": {"min": 0.0, "max": 1.0},
    "batch_size": {"min": 1},
}


def generation_option(command: str, name: str, what: str = "") -> Any:
    """``--max-new-tokens``, ``--temperature``, ``--top-p`` or ``--batch-size``: the same help and
    limits in every command; a default that differs from the shared one says why
    (:mod:`speechsum_cli.generation`). The signature's default is ``generation.default(command, name)``."""
    from speechsum_cli import generation

    help = GENERATION_HELP[name].format(what=what)
    why = generation.reason(command, name)
    if why:
        help = f"{help} (Here {generation.default(command, name)}: {why}.)"
    return typer.Option(help=help, **GENERATION_LIMITS[name])


DtypeOption = Annotated[Dtype, typer.Option(help=dtypes.HELP)]


def column_params(names: tuple[str, ...]) -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            f"{name}_column",
            inspect.Parameter.KEYWORD_ONLY,
            default=name,
            annotation=Annotated[
                str, typer.Option(f"--{name}-column", help=f"Column holding the {name}.", rich_help_panel=COLUMNS_PANEL)
            ],
        )
        for name in names
    ]


# --- training options ------------------------------------------------------------------------

STAGE_DEFAULTS = {"sft": SFT_DEFAULTS, "distill": DISTILL_DEFAULTS, "dpo": DPO_DEFAULTS}


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainSettings)


def _is_names(kind: Any) -> bool:
    """A tuple of names (``lora_targets``): one comma-separated string on the command line."""
    return tuple[str, ...] in (kind, *typing.get_args(kind))


def _train_params(stage: str) -> list[inspect.Parameter]:
    """One flag per :class:`TrainSettings` field: its type, its help (the field's metadata), its
    flag (``--field-name`` unless the metadata names one), this stage's default."""
    defaults, reasons = STAGE_DEFAULTS[stage], DEFAULT_REASONS.get(stage, {})
    params = []
    for spec in dataclasses.fields(TrainSettings):
        name, kind, help = spec.name, _field_types()[spec.name], spec.metadata["help"]
        default = getattr(defaults, name)
        if name in reasons and default != getattr(SFT_DEFAULTS, name):
            help = f"{help} (Here {default!r}: {reasons[name]}.)"
        if _is_names(kind):
            kind, default = Optional[str], ",".join(default) if default else None
        flag = spec.metadata["flag"] or "--" + name.replace("_", "-")
        option = typer.Option(flag, help=help, rich_help_panel=TRAINING_PANEL, **spec.metadata["option"])
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option])
        )
    return params


def _settings_from(values: dict[str, Any]) -> TrainSettings:
    for name, value in values.items():
        if _is_names(_field_types()[name]):
            names = tuple(t.strip() for t in value.split(",") if t.strip()) if value else ()
            values[name] = names or None
    return TrainSettings(**values)


def inject(
    params: list[inspect.Parameter], build: Callable[[dict[str, Any]], dict[str, Any]], replaces: tuple[str, ...]
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared ``params`` in place of its ``replaces`` arguments.

    ``build`` takes the shared flags' values (popped from the call) and returns the command's
    ``replaces`` arguments (e.g. one ``TrainSettings`` from 27 flags). Decorators stack.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in signature.parameters.values()
            if p.name not in replaces
        ]
        names = [p.name for p in params]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            shared = {name: kwargs.pop(name) for name in names}
            return func(**kwargs, **build(shared))

        parameters = own + params
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # Typer must read the new signature, not the function's
        return wrapper

    return decorate


def _column_map(names: tuple[str, ...], values: dict[str, Any]) -> Any:
    from speechsum_cli.data.dataset import ColumnMap

    return ColumnMap(**{n: values.pop(f"{n}_column") for n in names})


def train_options(stage: str, columns: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared training flags (and ``--X-column`` flags for ``columns``).

    The command declares ``train: TrainSettings`` (and ``columns: ColumnMap`` when ``columns``
    is given) instead of the individual flags; it receives them built from the flags.
    """

    def build(values: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {"columns": _column_map(columns, values)} if columns else {}
        return {"train": _settings_from(values), **extra}

    return inject(_train_params(stage) + column_params(columns), build, ("train", "columns"))


def column_options(columns: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--X-column`` flags for the contract ``columns`` a command reads; it receives ``columns: ColumnMap``."""
    return inject(column_params(columns), lambda values: {"columns": _column_map(columns, values)}, ("columns",))


# --- long audio --------------------------------------------------------------------------------


def long_audio_option(allowed: tuple[LongAudio, ...], help: str) -> Any:
    """``--on-long-audio`` limited to the policies a command supports; the command gets a :class:`LongAudio`.

    ``--help`` lists only ``allowed``; another value is a usage error naming them. The command
    declares the flag ``str`` so that this check, not Typer's of all four policies, reads it.
    """
    values = [a.value for a in allowed]

    def check(ctx: typer.Context, value: str) -> LongAudio:
        if value not in values:
            raise typer.BadParameter(f"'{value}' is not a policy {ctx.info_name} supports; use {' or '.join(values)}.")
        return LongAudio(value)

    return typer.Option("--on-long-audio", help=help, metavar="[" + "|".join(values) + "]", callback=check)


# --- LLM endpoints -----------------------------------------------------------------------------


def price_table(
    model: str, price_in: float | None, price_out: float | None, prices: Path | None
) -> dict[str, tuple[float, float]]:
    """``--prices FILE`` plus ``--price-in/--price-out`` for ``model`` (both or neither)."""
    from speechsum_cli.errors import InputError
    from speechsum_cli.llm.prices import load_price_file

    table = load_price_file(prices) if prices else {}
    if (price_in is None) != (price_out is None):
        raise InputError("--price-in and --price-out go together; pass both (USD per 1M tokens).")
    if price_in is not None:
        table[model] = (price_in, price_out)
    return table


def _endpoint_specs(
    role: str | None, who: str, model_help: str, max_tokens: int, max_tokens_help: str
) -> dict[str, tuple[Any, Any, str, dict[str, Any]]]:
    """field -> (CLI type, default, help, extra typer.Option arguments)."""
    model = endpoint_flag(role, "model")
    return {
        "base_url": (
            Optional[str],
            None,
            f"OpenAI-compatible endpoint of the {who}, e.g. http://127.0.0.1:8000/v1  \\[default: api.openai.com].",
            {"show_default": False},
        ),
        "model": (str, DEFAULT_MODEL, model_help, {}),
        "api_key_env": (
            str,
            DEFAULT_API_KEY_ENV,
            f"Environment variable holding the {who}'s API key (only its name is recorded).",
            {},
        ),
        "concurrency": (
            int,
            8,
            (
                f"Most {who} requests in flight at once: halved on time-outs and HTTP 429s, "
                "grown back while the server keeps up (AIMD)."
            ),
            {"min": 1},
        ),
        "cache_dir": (
            Optional[Path],
            None,
            f"Response cache of the {who}  \\[default: ~/.cache/speechsum/llm].",
            {"show_default": False},
        ),
        "max_tokens": (int, max_tokens, max_tokens_help, {"min": 16}),
        "max_cost": (
            Optional[float],
            None,
            f"Stop calling the {who} before spending more than this many USD.",
            {"min": 0.0},
        ),
        "price_in": (
            Optional[float],
            None,
            f"USD per 1M input tokens for {model} (overrides the price table).",
            {"min": 0.0},
        ),
        "price_out": (
            Optional[float],
            None,
            f"USD per 1M output tokens for {model} (overrides the price table).",
            {"min": 0.0},
        ),
        "prices": (
            Optional[Path],
            None,
            "JSON file of model -> [USD/1M in, USD/1M out] (overrides the price table).",
            {},
        ),
        "max_failed_share": (
            float,
            DEFAULT_MAX_FAILED_SHARE,
            (
                f"Fail the run (exit 3, no output) when more than this share of {who} requests "
                "fail after their retries; every request failing always fails it."
            ),
            {"min": 0.0, "max": 1.0},
        ),
        "retry_failed": (
            bool,
            False,
            (
                f"Re-send only the {who} requests that failed in the previous run of "
                "this command (answers already received come from the response cache)."
            ),
            {},
        ),
    }


def endpoint_options(
    role: str | None,
    *,
    into: str,
    who: str,
    panel: str,
    model_help: str,
    max_tokens: int,
    max_tokens_help: str,
    only: tuple[str, ...] | None = None,
    defaults: dict[str, Any] | None = None,
    helps: dict[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The flags of one OpenAI-compatible LLM, spelled the same in every command.

    With a ``role`` every endpoint flag has it as prefix (``--judge-base-url --judge-model
    --judge-api-key-env --judge-concurrency --judge-cache-dir --judge-max-tokens``); without one
    they are ``--base-url --llm --api-key-env --concurrency --cache-dir --max-tokens``. The budget
    flags ``--max-cost --price-in --price-out --prices`` and the failure policy ``--max-failed-share
    --retry-failed`` come with them. The command declares ``into: LLMConfig`` and receives it built
    from the flags (its response cache ``--cache-dir``, else the default one; the rest of the
    client's settings at their defaults, for the command to ``dataclasses.replace``). ``only``
    offers a subset of the flags (the others keep their defaults); ``defaults`` and ``helps``
    override a field's default and help (distill's teacher: its model defaults to --teacher).
    """
    specs = _endpoint_specs(role, who, model_help, max_tokens, max_tokens_help)
    for name, value in (defaults or {}).items():
        kind, _, help, extra = specs[name]
        specs[name] = (kind, value, help, extra)
    for name, help in (helps or {}).items():  # a help of its own says its default
        kind, default, _, extra = specs[name]
        specs[name] = (kind, default, help, {**extra, "show_default": False})
    fixed = {name: spec[1] for name, spec in specs.items() if only is not None and name not in only}
    specs = {name: spec for name, spec in specs.items() if name not in fixed}
    prefix = f"{role or 'llm'}_"
    params = []
    for name, (kind, default, help, extra) in specs.items():
        option = typer.Option(endpoint_flag(role, name), help=help, rich_help_panel=panel, **extra)
        params.append(
            inspect.Parameter(
                prefix + name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
            )
        )

    def build(values: dict[str, Any]) -> dict[str, Any]:
        fields = {**fixed, **{name: values[prefix + name] for name in specs}}
        prices = price_table(fields["model"], fields.pop("price_in"), fields.pop("price_out"), fields.pop("prices"))
        cache_dir = fields.pop("cache_dir") or DEFAULT_CACHE_DIR
        return {into: LLMConfig(role=role, prices=prices, cache_dir=cache_dir, **fields)}

    return inject(params, build, (into,))


JUDGE_PANEL = "LLM judge (the same flags in pairs and eval)"
JUDGE_MAX_TOKENS = {
    "eval": (512, "Reply budget per judge request (rubric scores, invented facts and a rationale)."),
    "pairs": (
        256,
        "Reply budget per judge request. (Here 256: a pairwise verdict is a letter and a "
        "rationale; eval's rubric replies, which list invented facts, get 512: raise it for "
        "--judge rubric.)",
    ),
}


def judge_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The LLM judge's flags (``--judge-base-url`` ... ``--prices``), defined once for pairs and eval.

    The command declares ``judge_llm: LLMConfig``.
    """
    max_tokens, max_tokens_help = JUDGE_MAX_TOKENS[command]
    return endpoint_options(
        "judge",
        into="judge_llm",
        who="judge",
        panel=JUDGE_PANEL,
        model_help=f"Judge model (the paper: {DEFAULT_MODEL}).",
        max_tokens=max_tokens,
        max_tokens_help=max_tokens_help,
    )


TEACHER_PANEL = "Remote teacher (a vLLM-compatible server)"
TEACHER_ENDPOINT_FIELDS = ("base_url", "model", "api_key_env", "concurrency")


def teacher_endpoint_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """distill's teacher on a server: ``--teacher-base-url --teacher-model --teacher-api-key-env
    --teacher-concurrency``, the endpoint vocabulary with the role 'teacher'. The command declares
    ``teacher_llm: LLMConfig``; without --teacher-base-url the teacher runs in-process."""
    return endpoint_options(
        "teacher",
        into="teacher_llm",
        who="teacher",
        panel=TEACHER_PANEL,
        model_help="",
        max_tokens=16,
        max_tokens_help="",
        only=TEACHER_ENDPOINT_FIELDS,
        defaults={"model": ""},
        helps={
            "model": (
                "Model name the teacher's server serves  \\[default: --teacher, as 'vllm serve TEACHER' names it]."
            ),
            "base_url": (
                "vLLM-compatible server of the teacher, e.g. http://127.0.0.1:8000/v1: it scores the "
                "student's tokens over HTTP (/v1/completions with prompt_logprobs)  \\[default: the "
                "teacher runs in this process]."
            ),
        },
    )


SERVER_PANEL = "Generation on a server (OpenAI-compatible, audio in chat messages: vLLM)"
SERVER_ENDPOINT_FIELDS = ("base_url", "model", "api_key_env", "concurrency", "cache_dir")


def server_endpoint_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Generation on an inference server for summarize, eval and pairs: ``--server-base-url
    --server-model --server-api-key-env --server-concurrency --server-cache-dir``, the endpoint
    vocabulary with the role 'server' (as the judge's are ``--judge-*`` and distill's remote
    teacher's ``--teacher-*``). The command declares ``server_llm: LLMConfig`` and passes
    :func:`server_config` of it to its stage; without --server-base-url the model runs in-process."""
    return endpoint_options(
        "server",
        into="server_llm",
        who="server",
        panel=SERVER_PANEL,
        model_help="",
        max_tokens=16,
        max_tokens_help="",
        only=SERVER_ENDPOINT_FIELDS,
        defaults={"model": ""},
        helps={
            "base_url": (
                "OpenAI-compatible server that takes audio in chat messages (input_audio parts), e.g. "
                "vLLM at http://127.0.0.1:8000/v1: the model generates there, with the same windows, "
                "combine steps and styles; --model still names its processor and config (read here, "
                "no weights)  \\[default: generate in this process]."
            ),
            "model": "Model name the server serves  \\[default: --model, as 'vllm serve MODEL' names it].",
            "concurrency": (
                "Most generation requests in flight at once: halved on time-outs and HTTP 429s, "
                "grown back while the server keeps up (AIMD); vLLM batches them  \\[default: 8]."
            ),
            "cache_dir": (
                "Response cache of the server's answers: a re-run of the same command sends only the "
                "requests not answered yet  \\[default: ~/.cache/speechsum/llm]."
            ),
        },
    )


def server_config(endpoint: LLMConfig) -> LLMConfig | None:
    """The generating server as the LLM client's config, or None without --server-base-url (the model
    then runs in this process). Its model name is --server-model, else the checkpoint's (filled in
    when the stage loads it)."""
    if endpoint.base_url is None:
        return None
    return dataclasses.replace(endpoint, temperature=0.0)
