"""``speechsum synth``: flags -> SynthConfig -> stages.synth.run -> a summary on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

DEFAULT_CACHE = Path.home() / ".cache" / "speechsum" / "llm"

EPILOG = (
    "Examples:\n\n"
    "  speechsum synth --data corpus/ --out data/sft --n 100000 --per-audio 2 --max-cost 200\n\n"
    "  speechsum synth --data talks.jsonl --out data/sft --base-url http://127.0.0.1:8000/v1 --model MODEL\n\n"
    "  speechsum synth --data corpus/ --out data/sft --n 100000 --dry-run\n\n"
    "Interrupted (Ctrl-C, kill -9, --max-cost)? Run the same command again: it resumes from the "
    "rows already written, and paid responses come from the cache."
)


def synth(
    data: Annotated[Path, typer.Option("--data", "-d", help="Corpus: dataset dir, .parquet/.jsonl file, or folder of audio with .txt transcripts.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset directory (save_to_disk + speechsum.json).")],
    n: Annotated[Optional[int], typer.Option("--n", help="Rows to generate  \\[default: one pass: recordings x --per-audio]; cycles through the corpus with fresh facets.", show_default=False)] = None,
    per_audio: Annotated[int, typer.Option(help="Pairs per recording per pass, each with distinct facets.")] = 1,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1  \\[default: api.openai.com].", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Generator model name.")] = "gpt-4.1",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key (only its name is recorded).")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    rpm: Annotated[Optional[int], typer.Option(help="Requests-per-minute limit.", min=1)] = None,
    tpm: Annotated[Optional[int], typer.Option(help="Tokens-per-minute limit (estimated).", min=1)] = None,
    max_retries: Annotated[int, typer.Option(help="HTTP retries on 429/5xx/timeouts (backoff + Retry-After), then the row fails.", min=0)] = 5,
    json_retries: Annotated[int, typer.Option(help="Repair attempts when a reply is not valid JSON.", min=0)] = 2,
    timeout: Annotated[float, typer.Option(help="Seconds per request.", min=0.1)] = 120.0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.", min=0.0)] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Completion budget per request.", min=16)] = 1024,
    extra_body: Annotated[Optional[str], typer.Option(help="Extra JSON fields per request, e.g. '{\"generation_config\": \"{\\\"do_sample\\\": true}\"}' for transformers serve.")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop cleanly before spending more USD than this (resumable).")] = None,
    price_in: Annotated[Optional[float], typer.Option(help="USD per 1M input tokens for --model (overrides the table).")] = None,
    price_out: Annotated[Optional[float], typer.Option(help="USD per 1M output tokens for --model (overrides the table).")] = None,
    prices: Annotated[Optional[Path], typer.Option(help="JSON file of model -> [USD/1M in, USD/1M out].")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the estimated requests, tokens and cost; send nothing.")] = False,
    cache_dir: Annotated[Path, typer.Option(help="Response cache directory.")] = DEFAULT_CACHE,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the response cache.")] = False,
    seed: Annotated[int, typer.Option(help="Seeds the corpus order and facet draws.")] = 0,
    min_importance: Annotated[int, typer.Option(help="Leave out (and count) queries the LLM rates below this (1-5).", min=1, max=5)] = 1,
    dedup_threshold: Annotated[float, typer.Option(help="Similarity (0-100) at which two queries of one recording are duplicates.")] = 90.0,
    audio_column: Annotated[str, typer.Option(help="Corpus column holding the audio.")] = "audio",
    transcript_column: Annotated[str, typer.Option(help="Corpus column holding the transcript.")] = "transcript",
    id_column: Annotated[str, typer.Option(help="Corpus column holding the id.")] = "id",
    split: Annotated[Optional[str], typer.Option(help="Split of a saved DatasetDict corpus.")] = None,
    skip_missing: Annotated[bool, typer.Option("--skip-missing", help="Skip rows without a transcript (counted) instead of failing.")] = False,
    tts: Annotated[Optional[str], typer.Option(help="Make audio from the transcripts of a text-only corpus: 'espeak' (offline) or 'openai:MODEL' (e.g. openai:tts-1, same endpoint and key).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard unfinished work of an earlier run instead of resuming it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Write diverse (query, summary) pairs from transcripts with any OpenAI-compatible LLM."""
    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.console import info
    from speechsum_cli.data.dataset import ColumnMap
    from speechsum_cli.data.workdir import work_dir_for
    from speechsum_cli.errors import InputError
    from speechsum_cli.llm import LLMConfig, load_price_file
    from speechsum_cli.stages.synth import SynthConfig, run

    quiet_libraries()
    table = load_price_file(prices) if prices else {}
    if (price_in is None) != (price_out is None):
        raise InputError("--price-in and --price-out go together; pass both (USD per 1M tokens).")
    if price_in is not None:
        table[model] = (price_in, price_out)
    body = None
    if extra_body:
        try:
            body = json.loads(extra_body)
        except ValueError as exc:
            raise InputError(f"--extra-body is not JSON: {exc}.") from None
    llm = LLMConfig(
        base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency, rpm=rpm,
        tpm=tpm, max_retries=max_retries, json_retries=json_retries, timeout=timeout,
        temperature=temperature, max_tokens=max_tokens, extra_body=body, max_cost=max_cost,
        dry_run=dry_run, cache_dir=None if no_cache else cache_dir, prices=table,
    )
    config = SynthConfig(
        data=data, out=out, llm=llm, n=n, per_audio=per_audio, seed=seed, min_importance=min_importance,
        dedup_threshold=dedup_threshold, split=split, skip_missing=skip_missing, tts=tts,
        columns=ColumnMap(id=id_column, audio=audio_column, transcript=transcript_column),
        overwrite=overwrite, restart=restart, show_progress=progress,
    )
    try:
        result = run(config)
    except KeyboardInterrupt:
        info(f"interrupted: finished rows are kept in '{work_dir_for(out)}'; run the same command "
             "again to resume.")
        raise typer.Exit(130) from None
    if result.estimate is not None:
        e = result.estimate
        if as_json:
            typer.echo(json.dumps(e | {"requested": result.counts["requested"]}, indent=2))
            return
        price = "" if e["priced"] else f"  (no price known for {e['model']}: pass --price-in/--price-out)"
        if "tts" in e:
            price += (f"; includes ~${e['tts']['cost_usd']:.2f} to speak {e['tts']['recordings']} recordings "
                      f"({e['tts']['characters']:,} characters) with {e['tts']['model']}")
        if e["max_cost"] is not None and e["cost_usd"] > e["max_cost"]:
            price += f"  (over --max-cost ${e['max_cost']:g}: the run would stop early and be resumable)"
        typer.echo(
            f"dry run: {result.counts['requested']} rows -> {e.get('requests', 0)} requests "
            f"({e.get('cached', 0)} cached), ~{e.get('input_tokens', 0):,} input + "
            f"~{e.get('output_tokens', 0):,} output tokens, ~${e['cost_usd']:.2f} with {e['model']}{price}"
        )
        return
    if as_json:
        payload = {"out": str(result.out), "complete": result.complete, "stopped": result.stopped,
                   "counts": result.counts, "usage": result.usage}
        typer.echo(json.dumps(payload, indent=2))
        return
    c, u = result.counts, result.usage
    failed = ", ".join(f"{k}: {v}" for k, v in c["failed_by_reason"].items()) or "none"
    typer.echo(
        f"{result.out}: {c['written']} rows written of {c['requested']} requested "
        f"(failed {c['failed']} [{failed}], filtered by importance {c['filtered_importance']}, "
        f"duplicates {c['deduplicated']}); {u['requests']} requests, {u['cache_hits']} cache hits, "
        f"{u['input_tokens'] + u['output_tokens']:,} tokens, ${u['cost_usd']:.4f}"
    )
    if result.stopped == "budget":
        info(f"stopped by --max-cost after ${u['cost_usd']:.4f}: {c['remaining']} rows remain. "
             "Raise --max-cost and run the same command again to continue.")
