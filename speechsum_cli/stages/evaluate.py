"""``eval``: score one or more systems on a test set, side by side, on the same rows.

A system is a checkpoint (predictions generated here with the summarize machinery, long audio
included) or a predictions file (``id, prediction`` jsonl/parquet/dataset). Predictions are joined
to the test rows by ``id``; missing and extra ids are reported, never silently ignored, and the
systems are compared on the rows every one of them has.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli import generation
from speechsum_cli.console import plural, warn
from speechsum_cli.data.audio import probe
from speechsum_cli.data.dataset import ColumnMap, load_rows, require_columns, rows_with_empty
from speechsum_cli.data.rows import check_audio_rows, refuse_rows, shown_ids
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError
from speechsum_cli.llm.batch import check_batch_failures
from speechsum_cli.manifest import FAILURES_KEY, retry_replaces
from speechsum_cli.metrics.aggregate import Estimate, bootstrap
from speechsum_cli.metrics.scores import offline_scores
from speechsum_cli.metrics.wer import error_rates
from speechsum_cli.typed import enum_fields

ASR_QUERY = "Transcribe the audio exactly, word for word."
"""The transcription prompt for the WER check (forgetting of basic listening)."""
ASR_TOKENS_PER_SECOND = 6
"""Transcription budget per second of audio (speech is ~3.5 tokens a second at 165 words a
minute): a long recording's transcription is never cut by ``--max-new-tokens``, a summary's budget."""


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one ``speechsum eval`` run."""

    data: Path
    """Test set: id, transcript, query (+ audio for checkpoints; + summary for ROUGE; + style)."""
    out: Path
    """Report directory (report.json, report.md, plots, speechsum.json)."""
    models: tuple[str, ...] = ()
    """Checkpoints to generate predictions with."""
    predictions: tuple[Path, ...] = ()
    """Predictions files (id, prediction[, transcription])."""
    names: tuple[str, ...] = ()
    """Display names, one per system in order models..., predictions... (default: derived)."""
    split: str | None = None
    """Split of a saved DatasetDict test set."""
    columns: ColumnMap = ColumnMap()
    """Names of the test set's id, audio, transcript, query and summary columns (--X-column)."""
    overwrite: bool = False
    """Replace an existing report directory."""
    wer_rows: int = 20
    """Rows given the transcription prompt per checkpoint (audio of any length, read as summaries
    are: consecutive windows in one prompt, the prompts' transcriptions joined); 0 = no WER."""
    max_new_tokens: int = generation.default("eval", "max_new_tokens")
    """Generation budget per prompt / combine step for checkpoints (a transcription's grows with
    its audio: ASR_TOKENS_PER_SECOND)."""
    windows_per_prompt: int | None = None
    """Most consecutive windows read in one prompt; None = as many as fit the LM's context."""
    batch_size: int = generation.default("eval", "batch_size")
    """Prompts generated together."""
    device: str = "auto"
    dtype: Dtype = Dtype.auto
    chunk_seconds: float | None = None
    """Window length for long audio (default: the family's window)."""
    resamples: int = 1000
    """Bootstrap resamples for the 95% intervals."""
    plot: bool = False
    """Write one PNG bar chart per metric (needs matplotlib: pip install 'speechsum[plot]')."""
    judge: Any = None
    """LLMConfig of the judge (None = no judge metric; the report says so)."""
    judge_concurrency: int = 8
    """Judge requests in flight at once."""
    judge_off: str = ""
    """Why the judge did not run, for the report (e.g. 'turned off with --no-judge')."""
    strict: bool = False
    """A test id without a prediction, or a prediction id not in the test set, is an error
    (default: a warning per system, and the systems are compared on the rows they all have)."""
    show_progress: bool = True
    server: Any = None
    """LLMConfig of an OpenAI-compatible server that generates the checkpoints' predictions from
    audio in chat messages (``--server-base-url``; with no ``--server-model`` each checkpoint is
    asked for by its ``--model`` name); None = generate in this process."""

    def __post_init__(self) -> None:
        enum_fields(self, dtype=Dtype)


@dataclass
class System:
    """One compared system: its predictions by id and what did not join."""

    name: str
    source: str
    kind: str
    """model | predictions."""
    predictions: dict[str, str]
    real_time_factor: dict[str, float] = field(default_factory=dict)
    transcriptions: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    """Test ids this system has no prediction for."""
    extra: list[str] = field(default_factory=list)
    """Prediction ids that are not in the test set."""
    generation: dict[str, Any] = field(default_factory=dict)
    """A checkpoint's: where its predictions were generated (this process, or a server: URL,
    model, requests sent)."""
    padded: list[str] = field(default_factory=list)
    """A checkpoint's: ids of rows whose audio was shorter than its encoder reads (summarized
    with silence after it)."""


@dataclass
class EvalResult:
    out: Path
    systems: list[System]
    rows_compared: int
    summary: dict[str, dict[str, Estimate]]
    """metric -> system name -> estimate."""
    report: dict[str, Any]
    judge: Any = None
    """The JudgeRun (requests, cost, failures), when the judge ran or was estimated."""
    warning: str | None = None
    """Some judge requests failed: how many, why, and how to retry them."""
    plots: list[Path] = field(default_factory=list)
    """The PNG charts written with --plot (listed in report.md too)."""


def load_test_rows(config: EvalConfig) -> list[dict[str, Any]]:
    """The test rows, every bad one named before any model loads: an empty transcript, and (for
    --model checkpoints, which read it) audio that is missing or does not decode."""
    ds = load_rows(config.data, columns=config.columns, split=config.split)
    required = ["transcript", "query"] + (["audio"] if config.models else [])
    hint = (
        "The test set needs the columns of synth output (other names map with "
        "--transcript-column, --query-column, --audio-column)."
    )
    require_columns(ds, required, config.data, hint)
    empty = rows_with_empty(ds, "transcript")
    need = "the judge and the hallucination check need it"
    blank = [f"{len(empty)} row(s) with an empty 'transcript' ({need}): ids {shown_ids(empty)}"] if empty else []
    if config.models:
        check_audio_rows(
            ds, config.data, stage="eval", required=["audio"], nonempty=[], hint=hint, extra_problems=blank
        )
    else:
        refuse_rows(blank, config.data, "eval")
    return list(ds)


def system_names(config: EvalConfig) -> list[str]:
    sources = [str(m) for m in config.models] + [str(p) for p in config.predictions]
    if config.names and len(config.names) != len(sources):
        raise InputError(
            f"--name was given {len(config.names)} time(s) for {len(sources)} system(s); give one per "
            "--model/--predictions, in that order, or none."
        )
    names = list(config.names) or [Path(s.rstrip("/")).stem or s for s in sources]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def load_predictions(path: Path, name: str, test_ids: list[str]) -> System:
    ds = load_rows(path)
    require_columns(ds, ["prediction"], path, "A predictions file has one row per test id: id, prediction.")
    predictions = {row["id"]: str(row["prediction"] or "") for row in ds}
    system = System(name, str(path), "predictions", predictions)
    if "transcription" in ds.column_names:
        system.transcriptions = {r["id"]: str(r["transcription"]) for r in ds if r["transcription"]}
    join(system, test_ids)
    return system


def join(system: System, test_ids: list[str]) -> None:
    known = set(test_ids)
    system.missing = [i for i in test_ids if i not in system.predictions]
    system.extra = sorted(i for i in system.predictions if i not in known)


def join_problems(systems: list[System]) -> list[str]:
    """One line per system whose ids do not match the test set's: how many and which, missing and extra."""
    lines = []
    for s in systems:
        parts = []
        if s.missing:
            parts.append(f"{plural(len(s.missing), 'test id')} without a prediction ({shown_ids(s.missing)})")
        if s.extra:
            parts.append(f"{plural(len(s.extra), 'prediction id')} not in the test set ({shown_ids(s.extra)})")
        if parts:
            lines.append(f"'{s.name}' ({s.source}): " + "; ".join(parts))
    return lines


def check_join(config: EvalConfig, systems: list[System], test_ids: list[str], common: list[str]) -> None:
    """Refuse when no row joins (naming expected and found ids) or, with --strict, when any id does
    not; otherwise warn per system that the comparison uses only the rows every system has."""
    problems = join_problems(systems)
    if not common:
        found = "; ".join(f"'{s.name}' has {shown_ids(sorted(s.predictions))}" for s in systems)
        raise InputError(
            f"no test id of '{config.data}' has a prediction from every system: the test set has ids "
            f"{shown_ids(test_ids)}; {found}. Check that the predictions files use the test "
            "set's ids (map another id column of the test set with --id-column)."
        )
    if problems and config.strict:
        raise InputError(
            "--strict: the predictions do not match the test set's ids: "
            + "; ".join(problems)
            + ". Fix the predictions, or drop --strict to compare the rows every system has."
        )
    for line in problems:
        warn(f"{line}: compared on the {plural(len(common), 'row')} every system has (of {len(test_ids)}).")


def generate_predictions(model: str, name: str, rows: list[dict[str, Any]], config: EvalConfig) -> System:
    """Summaries of every test row by a checkpoint, through the summarize machinery."""
    from speechsum_cli.families import GenerationSettings, load_generator
    from speechsum_cli.inference.feature_cache import cache_for_inference
    from speechsum_cli.inference.reading import windows_per_prompt
    from speechsum_cli.inference.recordings import (
        RecordingSummary,
        check_chunk_seconds,
        check_windows_per_prompt,
        expected_chunks,
        resolve_window,
        summarize_recordings,
    )

    check_chunk_seconds(config.chunk_seconds)
    check_windows_per_prompt(config.windows_per_prompt)
    infos = [probe(row["audio"]) for row in rows]
    lm = load_generator(model, server=config.server, device=config.device, dtype=config.dtype)
    try:
        if config.server is None:
            cache_for_inference(lm, config.out)  # the students of one runs folder share their encoder's output
        window = resolve_window(lm.window_seconds, config.chunk_seconds)
        settings = GenerationSettings(max_new_tokens=config.max_new_tokens)
        per_prompt = windows_per_prompt(
            lm, [row["query"] for row in rows], config.max_new_tokens, config.windows_per_prompt
        )
        recordings = [
            RecordingSummary(row["id"], "", str(row.get("style") or "custom"), row["query"], model, info.duration)
            for row, info in zip(rows, infos)
        ]
        total = sum(expected_chunks(info, window) for info in infos)
        summarize_recordings(
            lm,
            [row["audio"] for row in rows],
            recordings,
            window,
            per_prompt,
            settings,
            config.batch_size,
            total,
            config.show_progress,
            what="row",
        )
        system = System(
            name,
            model,
            "model",
            predictions={r.audio: r.summary for r in recordings},
            real_time_factor={r.audio: r.real_time_factor for r in recordings},
            padded=[r.audio for r in recordings if r.padded_seconds > 0],
        )
        if config.wer_rows > 0:
            system.transcriptions = transcribe(lm, rows[: config.wer_rows], window, config)
        system.generation = lm.record()
    finally:
        lm.close()
    return system


def asr_budget(seconds: float, max_new_tokens: int) -> int:
    """Tokens a transcription of ``seconds`` of audio may take: ``max_new_tokens`` or more."""
    return max(max_new_tokens, math.ceil(seconds * ASR_TOKENS_PER_SECOND))


def transcription_prompts(
    lm: Any, rows: list[dict[str, Any]], window: float, per_prompt: int
) -> list[tuple[str, Any, float]]:
    """(row id, prompt, seconds) of every transcription prompt: each row's windows, consecutive
    ``per_prompt`` at a time (one prompt for a row within one window)."""
    from speechsum_cli.data.audio import iter_chunks
    from speechsum_cli.families import Prompt
    from speechsum_cli.inference.reading import group_audio, window_groups

    prompts = []
    for row in rows:
        for group in window_groups(iter_chunks(row["audio"], lm.sampling_rate, window), per_prompt):
            seconds = sum(chunk.duration for chunk in group)
            prompts.append((row["id"], Prompt(ASR_QUERY, group_audio(group)), seconds))
    return prompts


def transcribe(lm: Any, rows: list[dict[str, Any]], window: float, config: EvalConfig) -> dict[str, str]:
    """Answers to the transcription prompt for ``rows`` (any length): a row read in several prompts
    is the prompts' transcriptions joined in order."""
    from speechsum_cli.families import GenerationSettings
    from speechsum_cli.inference.reading import windows_per_prompt

    per_prompt = windows_per_prompt(
        lm,
        [ASR_QUERY],
        config.max_new_tokens,
        config.windows_per_prompt,
        answer_tokens_per_window=math.ceil(window * ASR_TOKENS_PER_SECOND),
    )
    prompts = transcription_prompts(lm, rows, window, per_prompt)
    parts: dict[str, list[str]] = {row["id"]: [] for row in rows}
    size = lm.generation_batch(config.batch_size)
    for start in range(0, len(prompts), size):
        batch = prompts[start : start + size]
        budget = asr_budget(max(seconds for _, _, seconds in batch), config.max_new_tokens)
        texts = lm.generate([prompt for _, prompt, _ in batch], GenerationSettings(max_new_tokens=budget))
        for (row_id, _, _), text in zip(batch, texts):
            parts[row_id].append(text)
    return {row_id: " ".join(t for t in texts if t) for row_id, texts in parts.items()}


def score(
    systems: list[System], rows_by_id: dict[str, dict[str, Any]], ids: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """id -> system -> metric -> value, for the compared rows."""
    per_row: dict[str, dict[str, dict[str, float]]] = {}
    for row_id in ids:
        per_row[row_id] = {}
        for system in systems:
            scores = offline_scores(system.predictions[row_id], rows_by_id[row_id])
            if row_id in system.real_time_factor:
                scores["real_time_factor"] = system.real_time_factor[row_id]
            per_row[row_id][system.name] = scores
    return per_row


def summarize_scores(
    per_row: dict[str, dict[str, dict[str, float]]], systems: list[System], resamples: int
) -> dict[str, dict[str, Estimate]]:
    """metric -> system -> mean and 95% interval.

    A metric is averaged over the rows where every system that has it at all has it (a judge
    failure for one system removes that row from the judge metrics of all), so systems are always
    compared on the same rows.
    """
    metrics: list[str] = []
    for by_system in per_row.values():
        for scores in by_system.values():
            metrics += [m for m in scores if m not in metrics]
    summary: dict[str, dict[str, Estimate]] = {}
    for metric in metrics:
        having = [s.name for s in systems if any(metric in r[s.name] for r in per_row.values())]
        rows = [r for r in per_row.values() if all(metric in r[name] for name in having)]
        for name in having:
            values = [r[name][metric] for r in rows]
            if values:
                summary.setdefault(metric, {})[name] = bootstrap(values, resamples=resamples)
    return summary


def run_judge(
    config: EvalConfig,
    systems: list[System],
    rows_by_id: dict[str, dict[str, Any]],
    ids: list[str],
    per_row: dict[str, dict[str, dict[str, float]]],
) -> Any:
    """Judge every (row, system) summary through the shared client; merge scores into ``per_row``."""
    from speechsum_cli.console import progress_bar
    from speechsum_cli.metrics.judge import judge_all

    items = {
        (row_id, s.name): (rows_by_id[row_id]["transcript"], rows_by_id[row_id]["query"], s.predictions[row_id])
        for row_id in ids
        for s in systems
    }
    show = config.show_progress and not config.judge.dry_run
    with progress_bar("Judging summaries", len(items), enabled=show) as advance:
        judged = judge_all(config.judge, items, concurrency=config.judge_concurrency, advance=advance)
    for (row_id, name), scores in judged.scores.items():
        per_row[row_id][name].update(scores)
    return judged


def common_transcribed_ids(systems: list[System], rows_by_id: dict[str, dict[str, Any]]) -> list[str]:
    """Test ids that every system with any transcription has transcribed."""
    sets = [{i for i in s.transcriptions if i in rows_by_id} for s in systems if s.transcriptions]
    return sorted(set.intersection(*sets)) if sets else []


def wer_estimates(
    systems: list[System], rows_by_id: dict[str, dict[str, Any]], resamples: int
) -> dict[str, dict[str, Estimate]]:
    """Corpus WER/CER per system with a bootstrap over rows (resampling whole rows), on the rows
    every system with transcriptions has: a predictions file may carry a transcription of every
    test row while a checkpoint is asked for ``--wer-rows`` of them, and a WER over other rows
    would not compare."""
    import random

    out: dict[str, dict[str, Estimate]] = {}
    ids = common_transcribed_ids(systems, rows_by_id)
    for system in systems:
        if not ids or not system.transcriptions:
            continue
        refs = [rows_by_id[i]["transcript"] for i in ids]
        hyps = [system.transcriptions[i] for i in ids]
        full = error_rates(refs, hyps)
        rng = random.Random(0)
        draws = {"wer": [], "cer": []}
        for _ in range(resamples if len(ids) > 1 else 0):
            pick = [rng.randrange(len(ids)) for _ in ids]
            rates = error_rates([refs[k] for k in pick], [hyps[k] for k in pick])
            draws["wer"].append(rates.wer)
            draws["cer"].append(rates.cer)
        for metric, value in (("wer", full.wer), ("cer", full.cer)):
            values = sorted(draws[metric]) or [value]
            low = values[int(0.025 * (len(values) - 1))]
            high = values[int(round(0.975 * (len(values) - 1)))]
            out.setdefault(metric, {})[system.name] = Estimate(value, low, high, len(ids))
    return out


def check_server_config(config: EvalConfig) -> None:
    """``--server-base-url`` generates the --model checkpoints' predictions: there must be one, and
    ``--server-model`` names one model (several checkpoints are each asked for by their own name)."""
    from speechsum_cli.llm.transport import check_credentials

    if not config.models:
        raise InputError(
            "--server-base-url generates the predictions of --model checkpoints, and no --model was "
            "given. Pass --model CKPT (its processor and config are read here), or drop "
            "--server-base-url to score --predictions files only."
        )
    if config.server.model and len(config.models) > 1:
        raise InputError(
            f"--server-model '{config.server.model}' names one served model, but {len(config.models)} "
            "--model checkpoints were given. Drop --server-model to ask the server for each "
            "checkpoint by its --model name, or evaluate one --model per run."
        )
    check_credentials(config.server)


def run(config: EvalConfig) -> EvalResult:
    """Generate or load every system's predictions, score the common rows, write the report."""
    from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest
    from speechsum_cli.metrics.report import build_report, write_report

    started = time.perf_counter()
    if not config.models and not config.predictions:
        raise InputError("nothing to evaluate: pass --model CKPT and/or --predictions FILE.")
    if config.server is not None:
        check_server_config(config)
    if config.judge is not None:
        from speechsum_cli.llm.transport import check_credentials

        check_credentials(config.judge)
    overwrite = config.overwrite or retry_replaces(config.out, config.judge is not None and config.judge.retry_failed)
    if not (config.judge is not None and config.judge.dry_run):
        check_output_dir(config.out, overwrite=overwrite)
    rows = load_test_rows(config)
    rows_by_id = {row["id"]: row for row in rows}
    test_ids = [row["id"] for row in rows]
    names = system_names(config)
    systems = [
        load_predictions(path, name, test_ids) for path, name in zip(config.predictions, names[len(config.models) :])
    ]
    systems = [generate_predictions(model, name, rows, config) for model, name in zip(config.models, names)] + systems
    common = [i for i in test_ids if all(i in s.predictions for s in systems)]
    check_join(config, systems, test_ids, common)
    per_row = score(systems, rows_by_id, common)
    judged = run_judge(config, systems, rows_by_id, common, per_row) if config.judge is not None else None
    if judged is not None and config.judge.dry_run:
        return EvalResult(config.out, systems, len(common), {}, {}, judged)
    warning = None
    if judged is not None:
        warning = check_batch_failures(judged.batch, config.judge, config.out, "judge request")
    summary = summarize_scores(per_row, systems, config.resamples)
    summary.update(wer_estimates(systems, rows_by_id, config.resamples))
    report = build_report(config, systems, common, per_row, summary, rows_by_id, judged)
    if config.judge is None and config.judge_off:
        report["judge"]["why"] = config.judge_off  # the CLI knows whether --no-judge was passed
    with atomic_output_dir(config.out, overwrite=overwrite) as tmp:
        plots = write_report(tmp, report, summary, plot=config.plot)
        write_manifest(
            tmp,
            stage="eval",
            config=config,
            inputs=[config.data, *config.models, *config.predictions],
            counts={
                "test_rows": len(rows),
                "rows_compared": len(common),
                **{f"missing[{s.name}]": len(s.missing) for s in systems},
                **{f"extra[{s.name}]": len(s.extra) for s in systems},
                **{f"transcribed[{s.name}]": len(s.transcriptions) for s in systems if s.transcriptions},
                **{f"padded_short_audio[{s.name}]": len(s.padded) for s in systems if s.kind == "model"},
                **({"wer_rows_compared": report["wer_rows_compared"]} if "wer" in summary else {}),
            },
            metrics={m: {n: e.mean for n, e in by.items()} for m, by in summary.items()},
            wall_time=time.perf_counter() - started,
            extra={
                "judge": report["judge"],
                "generation": {s.name: s.generation for s in systems if s.kind == "model"},
                **({FAILURES_KEY: judged.batch.failures().as_record()} if judged is not None else {}),
            },
        )
    return EvalResult(
        config.out, systems, len(common), summary, report, judged, warning, [config.out / p.name for p in plots]
    )
