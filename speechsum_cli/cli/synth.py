"""``speechsum synth``: flags -> SynthConfig -> stages.synth.run -> a summary on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speechsum_cli.cli.options import (
    Overwrite,
    Progress,
    Split,
    column_options,
    data_option,
    endpoint_options,
    json_option,
    out_option,
)
from speechsum_cli.cli.output import emit, emit_json
from speechsum_cli.data.dataset import ColumnMap
from speechsum_cli.llm.config import DEFAULT_MODEL, LLMConfig

EPILOG = (
    "Examples:\n\n"
    "  speechsum synth --data corpus/ --out data/sft --n 100000 --per-audio 2 --max-cost 200\n\n"
    "  speechsum synth -d talks.jsonl -o data/sft --base-url http://127.0.0.1:8000/v1 --llm MODEL\n\n"
    "  speechsum synth --data corpus/ --out data/sft --n 100000 --dry-run\n\n"
    "Interrupted (Ctrl-C, kill -9, --max-cost)? Run the same command again: it resumes from the "
    "rows already written, and paid responses come from the cache. Some requests failed? "
    "--retry-failed re-sends only those."
)


@endpoint_options(
    None,
    into="llm",
    who="LLM",
    panel="LLM (any OpenAI-compatible endpoint)",
    model_help=(f"Model that writes the queries and summaries (the paper: {DEFAULT_MODEL})."),
    max_tokens=1024,
    max_tokens_help="Completion budget per request (a query and its summary).",
)
@column_options(("id", "audio", "transcript"))
def synth(
    data: Annotated[
        Path, data_option("Corpus: dataset dir, .parquet/.jsonl file, or folder of audio with .txt transcripts.")
    ],
    out: Annotated[Path, out_option("Output dataset directory (save_to_disk + speechsum.json).")],
    llm: LLMConfig,
    columns: ColumnMap,
    n: Annotated[
        Optional[int],
        typer.Option(
            "--n",
            help="Rows to generate  \\[default: one pass: recordings x --per-audio]; cycles through the corpus with "
            "fresh facets.",
            show_default=False,
        ),
    ] = None,
    per_audio: Annotated[int, typer.Option(help="Pairs per recording per pass, each with distinct facets.")] = 1,
    rpm: Annotated[Optional[int], typer.Option(help="Requests-per-minute limit.", min=1)] = None,
    tpm: Annotated[Optional[int], typer.Option(help="Tokens-per-minute limit (estimated).", min=1)] = None,
    max_retries: Annotated[
        int,
        typer.Option(
            help="HTTP retries on 429/5xx/connection errors (backoff + Retry-After), then the row fails.", min=0
        ),
    ] = 5,
    timeout_retries: Annotated[
        int,
        typer.Option(
            help="Retries after a time-out (a budget of their own: the requests in flight halve first), then the row "
            "fails.",
            min=0,
        ),
    ] = 3,
    json_retries: Annotated[int, typer.Option(help="Repair attempts when a reply is not valid JSON.", min=0)] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds per request.", min=0.1)] = 120.0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.", min=0.0)] = 0.7,
    extra_body: Annotated[
        Optional[str],
        typer.Option(
            help='Extra JSON fields per request, e.g. \'{"generation_config": "{\\"do_sample\\": true}"}\' for '
            "transformers serve."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the estimated requests, tokens and cost; send nothing.")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the response cache.")] = False,
    seed: Annotated[int, typer.Option(help="Seeds the corpus order and facet draws.")] = 0,
    min_importance: Annotated[
        int, typer.Option(help="Leave out (and count) queries the LLM rates below this (1-5).", min=1, max=5)
    ] = 1,
    dedup_threshold: Annotated[
        float, typer.Option(help="Similarity (0-100) at which two queries of one recording are duplicates.")
    ] = 90.0,
    split: Split = None,
    skip_missing: Annotated[
        bool, typer.Option("--skip-missing", help="Skip rows without a transcript (counted) instead of failing.")
    ] = False,
    tts: Annotated[
        Optional[str],
        typer.Option(
            help="Make audio from the transcripts of a text-only corpus: 'espeak' (offline) or 'openai:MODEL' (e.g. "
            "openai:tts-1, same endpoint and key)."
        ),
    ] = None,
    overwrite: Overwrite = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard unfinished work of an earlier run instead of resuming it.")
    ] = False,
    as_json: Annotated[bool, json_option("the result (path, counts, usage; with --dry-run the estimate)")] = False,
    progress: Progress = True,
) -> None:
    """Write diverse (query, summary) pairs from transcripts with any OpenAI-compatible LLM."""
    import json
    from dataclasses import replace

    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.console import info, plural, warn
    from speechsum_cli.data.workdir import work_dir_for
    from speechsum_cli.errors import InputError
    from speechsum_cli.stages.synth import SynthConfig, run

    quiet_libraries()
    body = None
    if extra_body:
        try:
            body = json.loads(extra_body)
        except ValueError as exc:
            raise InputError(f"--extra-body is not JSON: {exc}.") from None
    config = SynthConfig(
        data=data,
        out=out,
        n=n,
        per_audio=per_audio,
        seed=seed,
        min_importance=min_importance,
        llm=replace(
            llm,
            cache_dir=None if no_cache else llm.cache_dir,
            rpm=rpm,
            tpm=tpm,
            max_retries=max_retries,
            timeout_retries=timeout_retries,
            json_retries=json_retries,
            timeout=timeout,
            temperature=temperature,
            extra_body=body,
            dry_run=dry_run,
        ),
        dedup_threshold=dedup_threshold,
        split=split,
        skip_missing=skip_missing,
        tts=tts,
        columns=columns,
        overwrite=overwrite,
        restart=restart,
        show_progress=progress,
    )
    try:
        result = run(config)
    except KeyboardInterrupt:
        info(f"interrupted: finished rows are kept in '{work_dir_for(out)}'; run the same command again to resume.")
        raise typer.Exit(130) from None
    if result.estimate is not None:
        e = result.estimate
        if as_json:
            emit_json(e | {"requested": result.counts["requested"]}, indent=2)
            return
        price = "" if e["priced"] else f"  (no price known for {e['model']}: pass --price-in/--price-out)"
        if "tts" in e:
            price += (
                f"; includes ~${e['tts']['cost_usd']:.2f} to speak {e['tts']['recordings']} recordings "
                f"({e['tts']['characters']:,} characters) with {e['tts']['model']}"
            )
        if e["max_cost"] is not None and e["cost_usd"] > e["max_cost"]:
            price += f"  (over --max-cost ${e['max_cost']:g}: the run would stop early and be resumable)"
        emit(
            f"dry run: {result.counts['requested']} rows -> {e.get('requests', 0)} requests "
            f"({e.get('cached', 0)} cached), ~{e.get('input_tokens', 0):,} input + "
            f"~{e.get('output_tokens', 0):,} output tokens, ~${e['cost_usd']:.2f} with {e['model']}{price}"
        )
        return
    if as_json:
        payload = {
            "out": str(result.out),
            "complete": result.complete,
            "stopped": result.stopped,
            "counts": result.counts,
            "usage": result.usage,
        }
        emit_json(payload, indent=2)
        if result.warning:
            warn(result.warning)
        return
    c, u = result.counts, result.usage
    failed = ", ".join(f"{k}: {v}" for k, v in c["failed_by_reason"].items()) or "none"
    emit(
        f"{result.out}: {plural(c['written'], 'row')} written of {c['requested']} requested "
        f"(failed {c['failed']} [{failed}], filtered by importance {c['filtered_importance']}, "
        f"duplicates {c['deduplicated']}); {plural(u['requests'], 'request')}, "
        f"{plural(u['cache_hits'], 'cache hit')}, {u['input_tokens'] + u['output_tokens']:,} tokens, "
        f"${u['cost_usd']:.4f}"
    )
    if result.warning:
        warn(result.warning)
    if result.stopped == "budget":
        info(
            f"stopped by --max-cost after ${u['cost_usd']:.4f}: {c['remaining']} rows remain. "
            "Raise --max-cost and run the same command again to continue."
        )
