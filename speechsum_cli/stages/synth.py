"""``synth``: diverse (query, summary) pairs written by an LLM from transcripts (stage 1 data).

For every job (``n`` of them, ``per_audio`` per recording, cycling through the shuffled corpus
with fresh facets), the facets are drawn with a seeded RNG, the LLM writes a query + summary +
importance as JSON, and one record is appended to a shard in the work dir. Rows below
``min_importance`` and near-duplicate queries of the same recording are recorded, not written;
failed calls are recorded with their reason. A re-run continues from the shards; the final output
is one ``save_to_disk`` dataset with ``speechsum.json``.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from speechsum_cli.console import info, plural, progress_bar
from speechsum_cli.data.dataset import ColumnMap, load_rows, require_columns, rows_with_empty
from speechsum_cli.data.tts import audio_name, check_tts, remote_model, speak
from speechsum_cli.data.workdir import WorkDir, work_dir_for
from speechsum_cli.errors import InputError, NothingUsableError
from speechsum_cli.llm.client import Completion, LLMClient
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.llm.failures import (
    Failures,
    check_failures,
    reason_category,
    retry_hint,
    unanswered,
)
from speechsum_cli.llm.pool import run_pool
from speechsum_cli.llm.prices import BudgetExceeded, price_for
from speechsum_cli.llm.speech import speak_all
from speechsum_cli.llm.transport import LLMError
from speechsum_cli.manifest import (
    FAILURES_KEY,
    MANIFEST_NAME,
    atomic_output_dir,
    check_output_dir,
    read_manifest,
    write_manifest,
)
from speechsum_cli.prompts.synth import (
    Facets,
    draw_facets,
    synth_messages,
    synth_prompt_version,
    synth_schema,
)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_FILTERED = "filtered"
STATUS_DUPLICATE = "duplicate"
TTS_DIR = "audio"
"""Folder of the output dataset (and of the work dir) holding --tts audio."""
PARQUET_BATCH_ROWS = 2000
"""Rows per Arrow batch when the shards are turned into the final dataset (bounded memory)."""


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one ``speechsum synth`` run."""

    data: Path
    """Corpus: dataset dir, .parquet/.jsonl file, or folder of audio with .txt transcripts."""
    out: Path
    """Output dataset directory (save_to_disk) with speechsum.json."""
    llm: LLMConfig = field(default_factory=LLMConfig)
    """The generator: endpoint, model, concurrency, retries, cache, budget."""
    n: int | None = None
    """Jobs in total; None = one pass over the corpus (recordings x per_audio)."""
    per_audio: int = 1
    """Pairs per recording per pass, with distinct facets."""
    seed: int = 0
    """Seeds the corpus order and every facet draw."""
    min_importance: int = 1
    """Rows whose LLM-rated importance (1-5) is lower are counted and left out."""
    dedup_threshold: float = 90.0
    """Queries of the same recording at least this similar (rapidfuzz ratio, 0-100, on normalized
    text) are duplicates; 100 = exact normalized matches only."""
    columns: ColumnMap = ColumnMap()
    """The corpus's column names for id/audio/transcript."""
    split: str | None = None
    """Split of a DatasetDict corpus."""
    skip_missing: bool = False
    """Skip (and count) recordings without a transcript instead of failing."""
    tts: str | None = None
    """'espeak' or 'openai:MODEL': make audio from the transcript for rows without audio."""
    overwrite: bool = False
    """Replace an existing complete output."""
    restart: bool = False
    """Discard unfinished work from earlier runs instead of resuming it."""
    shard_rows: int = 5000
    """Records per work-dir shard file."""
    show_progress: bool = True
    """Progress bar (rows/s, tokens, cost) on stderr."""


@dataclass
class SynthResult:
    """What a run did; ``out`` is None for a dry run."""

    out: Path | None
    complete: bool
    stopped: str | None
    counts: dict[str, Any]
    usage: dict[str, Any]
    work_dir: Path | None = None
    """Kept beside the output while rows remain: unfinished (resume) or failed (--retry-failed)."""
    estimate: dict[str, Any] | None = None
    wall_time: float = 0.0
    failures: Failures | None = None
    warning: str | None = None
    """Some requests failed: how many, why, and how to retry them."""


@dataclass(frozen=True)
class Job:
    index: int
    source: int
    """Row index in the corpus."""
    source_id: str
    slot: int
    """k-th pair of this recording over all passes (the id suffix)."""
    facets: Facets

    @property
    def row_id(self) -> str:
        return f"{self.source_id}#{self.slot}"


class Plan:
    """Job ``j`` -> (recording, slot, facets), deterministic in (seed, corpus, n, per_audio)."""

    def __init__(self, source_rows: list[int], source_ids: list[str], n: int | None, per_audio: int, seed: int):
        import random

        self.order = list(source_rows)
        random.Random(seed).shuffle(self.order)
        self.per_pass = len(self.order) * per_audio
        self.n = self.per_pass if n is None else n
        self.per_audio = per_audio
        self.passes = max(1, math.ceil(self.n / self.per_pass))
        self.seed = seed
        self.source_ids = source_ids

        @lru_cache(maxsize=4096)
        def facets_of(source_id: str) -> tuple[Facets, ...]:
            return tuple(draw_facets(seed, source_id, self.passes * per_audio))

        self._facets_of = facets_of

    def job(self, j: int) -> Job:
        rnd, pos = divmod(j, self.per_pass)
        a, s = divmod(pos, self.per_audio)
        source = self.order[a]
        source_id = self.source_ids[source]
        slot = rnd * self.per_audio + s
        return Job(j, source, source_id, slot, self._facets_of(source_id)[slot])


def normalize_query(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class Deduplicator:
    """Near-duplicate queries per recording (rapidfuzz ratio on normalized text)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.kept: dict[int, list[str]] = defaultdict(list)

    def is_duplicate(self, source: int, query: str) -> bool:
        from rapidfuzz import fuzz, process

        q = normalize_query(query)
        seen = self.kept[source]
        if q in seen:
            return True
        return process.extractOne(q, seen, scorer=fuzz.ratio, score_cutoff=self.threshold) is not None

    def keep(self, source: int, query: str) -> None:
        self.kept[source].append(normalize_query(query))


# -- inputs ------------------------------------------------------------------------------------


def load_corpus(config: SynthConfig) -> tuple[Any, list[int], list[str]]:
    """(dataset, usable row indices, ids of rows skipped for a missing transcript)."""
    ds = load_rows(config.data, columns=config.columns, split=config.split)
    require_columns(
        ds,
        ["transcript"],
        config.data,
        "Pass --transcript-column NAME, or give a folder of audio with .txt transcripts.",
    )
    if config.tts is None:
        require_columns(
            ds, ["audio"], config.data, "Pass --audio-column NAME, or --tts espeak to make audio from the transcripts."
        )
    missing = rows_with_empty(ds, "transcript")
    if missing and not config.skip_missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise InputError(
            f"data '{config.data}' has {len(missing)} row(s) without a transcript: {shown}. "
            "Add the transcripts, or pass --skip-missing to leave them out (they are counted in "
            "speechsum.json)."
        )
    missing_set = set(missing)
    ids = list(ds["id"])
    usable = [i for i, row_id in enumerate(ids) if row_id not in missing_set]
    if not usable:
        raise InputError(f"data '{config.data}' has no row with a transcript.")
    return ds, usable, missing


def check_config(config: SynthConfig) -> None:
    problems = []
    if config.n is not None and config.n < 1:
        problems.append(f"--n must be at least 1, got {config.n}")
    if config.per_audio < 1:
        problems.append(f"--per-audio must be at least 1, got {config.per_audio}")
    if not 1 <= config.min_importance <= 5:
        problems.append(f"--min-importance must be 1-5, got {config.min_importance}")
    if not 0 < config.dedup_threshold <= 100:
        problems.append(f"--dedup-threshold must be in (0, 100], got {config.dedup_threshold:g}")
    if config.llm.concurrency < 1:
        problems.append(f"--concurrency must be at least 1, got {config.llm.concurrency}")
    if config.llm.max_cost is not None and config.llm.max_cost <= 0:
        problems.append(f"--max-cost must be positive, got {config.llm.max_cost:g}")
    if config.tts is not None and config.tts != "espeak" and not remote_model(config.tts):
        problems.append(f"--tts '{config.tts}' is not supported; use --tts espeak or --tts openai:MODEL")
    if problems:
        raise InputError("; ".join(problems) + ".")
    if config.tts == "espeak":
        check_tts(config.tts)


def check_output(config: SynthConfig) -> None:
    """An existing output may be replaced by --overwrite, by resuming the run that stopped it, or
    by --retry-failed when its run kept failed rows in the work dir."""
    out = config.out
    if config.llm.retry_failed:
        check_retry(config)
        return
    if out.exists() and not config.overwrite:
        manifest = read_manifest(out) if out.is_dir() else None
        resumable = manifest is not None and manifest.get("complete") is False and work_dir_for(out).exists()
        if not resumable:
            check_output_dir(out, overwrite=False)
    elif out.exists():
        check_output_dir(out, overwrite=True)


def check_retry(config: SynthConfig) -> None:
    """--retry-failed needs the work dir of an earlier run of this output (it holds the failed rows)."""
    work = work_dir_for(config.out)
    if not work.exists():
        done = " (its speechsum.json records no failed row)" if config.out.exists() else ""
        raise InputError(
            f"--retry-failed: nothing to retry for '{config.out}'{done}: no earlier run's rows in '{work}'. "
            "Run without --retry-failed" + (", with --overwrite to redo it." if config.out.exists() else ".")
        )


def replaces_finished(config: SynthConfig) -> bool:
    """--overwrite of a finished output starts over, even where its failed rows wait for --retry-failed."""
    manifest = read_manifest(config.out) if config.overwrite and config.out.is_dir() else None
    return bool(manifest and manifest.get("complete"))


def fingerprint(config: SynthConfig) -> dict[str, Any]:
    """The settings that decide which rows exist and what they say (resume must match them)."""
    return {
        "data": str(Path(config.data).resolve()),
        "split": config.split,
        "columns": vars(config.columns),
        "n": config.n,
        "per_audio": config.per_audio,
        "seed": config.seed,
        "min_importance": config.min_importance,
        "dedup_threshold": config.dedup_threshold,
        "skip_missing": config.skip_missing,
        "tts": config.tts,
        "model": config.llm.model,
        "temperature": config.llm.temperature,
        "max_tokens": config.llm.max_tokens,
        "extra_body": config.llm.extra_body,
        "prompt_version": synth_prompt_version(),
    }


# -- run -----------------------------------------------------------------------------------------


def run(config: SynthConfig) -> SynthResult:
    """Generate, resume or estimate (dry run) the synthetic dataset of ``config``."""
    started = time.perf_counter()
    check_config(config)
    if not config.llm.dry_run:
        check_output(config)
    ds, usable, missing = load_corpus(config)
    ids = list(ds["id"])
    plan = Plan(usable, ids, config.n, config.per_audio, config.seed)
    transcripts = ds.select_columns(["transcript"])
    if config.llm.dry_run:
        return _dry_run(config, plan, transcripts, len(missing), started)

    client = LLMClient(config.llm)  # a missing key fails here, before any work dir exists
    try:
        work = WorkDir(config.out, fingerprint(config), restart=config.restart or replaces_finished(config))
        resend_unanswered(work, retry_failed=config.llm.retry_failed)
        state = _State.from_records(work.records(), config.dedup_threshold)
        client.ledger.spent_before = state.usage["cost_usd"]  # earlier runs count against --max-cost
        stopped = asyncio.run(_generate(config, plan, transcripts, work, state, client))
    except LLMError as exc:
        raise type(exc)(f"{exc} {state.resume_note(plan.n, work.path)}") from None
    finally:
        client.close()
    counts = state.counts(requested=plan.n, skipped_missing=len(missing), corpus=len(ids))
    usage: dict[str, Any] = dict(state.usage)
    usage["concurrency"] = client.in_flight.record()  # this run's requests in flight (AIMD)
    if remote_model(config.tts) and stopped is None:
        tts_usage, tts_failed, stopped = _speak_remote(config, ds, work, state.usage["cost_usd"])
        usage["tts"] = tts_usage
        counts["tts_failed_recordings"] = tts_failed
    complete = stopped is None and state.done_jobs() >= plan.n
    failures = state.failures()
    warning = check_synth_failures(config, state, failures, work.path) if complete else None
    _finalize(config, ds, work, plan, counts, usage, complete, stopped, time.perf_counter() - started, failures)
    if complete and not failures.failed:
        work.remove()
    keep = not complete or failures.failed
    return SynthResult(
        config.out,
        complete,
        stopped,
        counts,
        usage,
        work.path if keep else None,
        wall_time=time.perf_counter() - started,
        failures=failures,
        warning=warning,
    )


def resend_unanswered(work: WorkDir, *, retry_failed: bool) -> int:
    """Make pending again the failed jobs this run sends: those that failed only because nothing
    answered (a connection error: the server was not up yet), on every run, so the plain re-run
    the error advises finishes them; with ``--retry-failed`` every failed job. Returns how many."""

    def resend(record: dict[str, Any]) -> bool:
        return record["status"] == STATUS_FAILED and (retry_failed or unanswered(record["reason"]))

    again = work.discard(resend)
    if again and not retry_failed:
        info(
            f"sending again {plural(again, 'request')} that could not connect in an earlier run "
            f"(kept in '{work.path}')."
        )
    return again


def check_synth_failures(config: SynthConfig, state: _State, failures: Failures, work: Path) -> str | None:
    """Fail the run (nothing written, the rows kept in the work dir) when every request failed, more
    than --max-failed-share did, or no row survived; else the partial-failure warning (or None)."""
    left = (
        f"Nothing was written to '{config.out}'" if not config.out.exists() else f"'{config.out}' was left as it was"
    ) + f" (the run's records are kept in '{work}')."
    warning = check_failures(
        failures, max_share=config.llm.max_failed_share, unit="request", left=left, retry=retry_hint(config.llm)
    )
    if state.status[STATUS_OK] == 0:
        lost = ", ".join(f"{name} {n}" for name, n in state.status.items() if n)
        raise NothingUsableError(
            f"no row was written: all {plural(state.done_jobs(), 'request')} finished without a usable row "
            f"({lost}). {left} Lower --min-importance or --dedup-threshold, or check the LLM's replies."
        )
    if warning is not None:
        warning += f" Until then the failed rows are missing from '{config.out}' and kept in '{work}'."
    return warning


def _dry_run(config: SynthConfig, plan: Plan, transcripts: Any, skipped: int, started: float) -> SynthResult:
    client = LLMClient(config.llm)
    est: Counter = Counter()
    schema_version = synth_prompt_version()
    try:
        for j in range(plan.n):
            job = plan.job(j)
            messages = synth_messages(transcripts[job.source]["transcript"], job.facets)
            e = client.estimate(messages, prompt_version=schema_version)
            est["jobs"] += 1
            est["cached"] += int(e.cached)
            est["requests"] += int(not e.cached)
            est["input_tokens"] += e.input_tokens
            est["output_tokens"] += e.output_tokens
            est["cost_usd"] += e.cost_usd
    finally:
        client.close()
    estimate = dict(est) | {
        "model": config.llm.model,
        "priced": client.ledger.price is not None,
        "max_cost": config.llm.max_cost,
        "note": "input tokens ~ characters/4; output tokens = expected_output_tokens per request; "
        "JSON repair retries not included",
    }
    estimate.setdefault("cost_usd", 0.0)
    tts_model = remote_model(config.tts)
    if tts_model:  # every planned recording without audio is spoken once
        sources = {plan.job(j).source for j in range(min(plan.n, plan.per_pass))}
        chars = sum(len(transcripts[i]["transcript"]) for i in sources)
        price = price_for(tts_model, config.llm.prices)
        estimate["tts"] = {
            "model": tts_model,
            "recordings": len(sources),
            "characters": chars,
            "cost_usd": chars * price[0] / 1e6 if price else 0.0,
            "priced": price is not None,
        }
        estimate["cost_usd"] += estimate["tts"]["cost_usd"]
    return SynthResult(
        None,
        False,
        None,
        {"requested": plan.n, "skipped_missing_transcript": skipped},
        {},
        estimate=estimate,
        wall_time=time.perf_counter() - started,
    )


class _State:
    """Counts, usage, finished jobs and dedup memory, rebuilt from the shards on resume."""

    def __init__(self, threshold: float) -> None:
        self.done: set[int] = set()
        self.status = Counter()
        self.failed = Counter()
        self.reasons: list[str] = []
        """Every failed job's reason, in the order written (the first is reported in full)."""
        self.unanswered = 0
        """Failed jobs that could not connect (sent again by the next run)."""
        self.usage = {"requests": 0, "cache_hits": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        self.dedup = Deduplicator(threshold)

    @classmethod
    def from_records(cls, records: Iterator[dict[str, Any]], threshold: float) -> _State:
        state = cls(threshold)
        for record in records:
            if record["job"] in state.done:
                continue  # cannot happen with one writer; never count a job twice
            state.add(record)
            if record["status"] == STATUS_OK:
                state.dedup.keep(record["source"], record["query"])
        return state

    def add(self, record: dict[str, Any]) -> None:
        self.done.add(record["job"])
        self.status[record["status"]] += 1
        if record["status"] == STATUS_FAILED:
            self.failed[reason_category(record["reason"])] += 1
            self.reasons.append(record["reason"])
            self.unanswered += unanswered(record["reason"])
        for key in self.usage:
            self.usage[key] += record.get(key, 0)

    def resume_note(self, requested: int, work: Path) -> str:
        """What a stopped run leaves for the next, row by row as what it is: written, left out,
        failed (for --retry-failed), could not connect and not sent (both sent by a re-run)."""
        left_out = self.status[STATUS_FILTERED] + self.status[STATUS_DUPLICATE]
        failed = self.status[STATUS_FAILED] - self.unanswered
        finished = [
            f"{n} {what}"
            for n, what in (
                (self.status[STATUS_OK], "written"),
                (left_out, "left out (below --min-importance or a near-duplicate)"),
                (failed, "failed (--retry-failed sends them again)"),
            )
            if n
        ]
        unsent = requested - len(self.done)
        if finished:
            total = self.status[STATUS_OK] + left_out + failed
            kept = f"Kept in '{work}': {plural(total, 'finished row')} ({', '.join(finished)})."
        else:
            kept = f"No row is finished yet (the run's state is in '{work}')."
        todo = [f"{self.unanswered} that could not connect"] if self.unanswered else []
        todo += [f"{unsent} not sent yet"] if unsent else []
        if not todo:
            return f"{kept} Running the same command again resumes there."
        return (
            f"{kept} Running the same command again sends the "
            f"{plural(self.unanswered + unsent, 'request')} still to do ({', '.join(todo)})."
        )

    def failures(self) -> Failures:
        return Failures.tally(len(self.done), self.reasons)

    def done_jobs(self) -> int:
        return len(self.done)

    def counts(self, *, requested: int, skipped_missing: int, corpus: int) -> dict[str, Any]:
        return {
            "corpus_rows": corpus,
            "skipped_missing_transcript": skipped_missing,
            "requested": requested,
            "finished": len(self.done),
            "remaining": requested - len(self.done),
            "written": self.status[STATUS_OK],
            "failed": self.status[STATUS_FAILED],
            "failed_by_reason": dict(self.failed),
            "filtered_importance": self.status[STATUS_FILTERED],
            "deduplicated": self.status[STATUS_DUPLICATE],
        }


async def _generate(
    config: SynthConfig, plan: Plan, transcripts: Any, work: WorkDir, state: _State, client: LLMClient
) -> str | None:
    """Run the pending jobs with ``concurrency`` workers; returns 'budget' when the budget stopped it.

    An LLMError (bad key, unknown model) stops it too and is raised once the jobs in flight are written."""
    pending = (plan.job(j) for j in range(plan.n) if j not in state.done)
    writer = work.writer(config.shard_rows)
    schema = synth_schema()
    version = synth_prompt_version()

    try:
        bar = progress_bar(
            "Synth", plan.n, enabled=config.show_progress, completed=len(state.done), stats=_progress_stats(state)
        )
        with bar as advance:

            async def one(job: Job) -> None:
                messages = synth_messages(transcripts[job.source]["transcript"], job.facets)
                completion = await client.complete_json(messages, schema, prompt_version=version)
                record = _record(job, completion, version, config, state.dedup)
                writer.write(record)
                state.add(record)
                advance(1)

            stopped = await run_pool(pending, one, concurrency=config.llm.concurrency, stop_on=(BudgetExceeded,))
    finally:
        writer.close()
        await client.aclose()
    return "budget" if stopped is not None else None


def _record(job: Job, completion: Completion, version: str, config: SynthConfig, dedup: Deduplicator) -> dict[str, Any]:
    record: dict[str, Any] = {
        "job": job.index,
        "id": job.row_id,
        "source": job.source,
        "source_id": job.source_id,
        **job.facets.as_row(),
        "prompt_version": version,
        **completion.usage.as_record(),
    }
    if not completion.ok:
        return record | {"status": STATUS_FAILED, "reason": completion.reason}
    data = completion.data
    record |= {
        "query": data["query"].strip(),
        "summary": data["summary"].strip(),
        "importance": int(data["importance"]),
    }
    if record["importance"] < config.min_importance:
        return record | {"status": STATUS_FILTERED}
    if dedup.is_duplicate(job.source, record["query"]):
        return record | {"status": STATUS_DUPLICATE}
    dedup.keep(job.source, record["query"])
    return record | {"status": STATUS_OK}


def _progress_stats(state: _State) -> Callable[[], str]:
    """The progress bar's '12.5 rows/s 3,200 tok $0.0042': rows of this run per second, tokens
    and cost so far (earlier runs' included)."""
    started, before = time.perf_counter(), len(state.done)

    def stats() -> str:
        rate = (len(state.done) - before) / max(1e-6, time.perf_counter() - started)
        usage = state.usage
        return f"{rate:.1f} rows/s {usage['input_tokens'] + usage['output_tokens']:,} tok ${usage['cost_usd']:.4f}"

    return stats


# -- output --------------------------------------------------------------------------------------


def _finalize(
    config: SynthConfig,
    ds: Any,
    work: WorkDir,
    plan: Plan,
    counts: dict[str, Any],
    usage: dict[str, Any],
    complete: bool,
    stopped: str | None,
    wall_time: float,
    failures: Failures,
) -> None:
    """Shards -> one save_to_disk dataset (sorted by job) + speechsum.json, atomically."""
    from datasets import Dataset

    parquet = work.path / "rows.parquet"
    written, spoken, unspoken = _write_parquet(ds, work, parquet, config)
    if remote_model(config.tts):
        counts["written"] = written  # rows whose recording could not be spoken are left out
        counts["tts_failed_rows"] = unspoken
    overwrite = config.overwrite or config.out.exists()  # resuming a budget-stopped output
    with atomic_output_dir(config.out, overwrite=overwrite) as tmp:
        if written:
            table = Dataset.from_parquet(str(parquet), cache_dir=str(work.path / "arrow-cache"))
            with warnings.catch_warnings():  # pyarrow's null_placement deprecation inside datasets
                warnings.simplefilter("ignore", FutureWarning)
                table = table.sort("_job").remove_columns("_job")
            table.save_to_disk(str(tmp))
        else:  # num_shards=1: datasets writes no arrow file for 0 rows otherwise (unloadable)
            table = Dataset.from_dict({name: [] for name in _OUTPUT_COLUMNS}, features=_empty_features())
            table.save_to_disk(str(tmp), num_shards=1)
        for name in spoken:  # text-only corpus: the espeak audio travels with the dataset
            (tmp / TTS_DIR).mkdir(exist_ok=True)
            shutil.copyfile(work.path / TTS_DIR / name, tmp / TTS_DIR / name)
        write_manifest(
            tmp,
            stage="synth",
            config=config,
            inputs=[config.data],
            counts=counts,
            metrics={"usage": usage, "prompt_version": synth_prompt_version()},
            wall_time=wall_time,
            extra={"complete": complete, "stopped": stopped, FAILURES_KEY: failures.as_record()},
        )
    parquet.unlink(missing_ok=True)


def _empty_features() -> Any:
    from datasets import Features, Value

    return Features({name: Value("int64" if name == "importance" else "string") for name in _OUTPUT_COLUMNS})


_OUTPUT_COLUMNS = (
    "id",
    "source_id",
    "audio",
    "transcript",
    "query",
    "style",
    "summary",
    "length",
    "focus",
    "audience",
    "tone",
    "importance",
    "prompt_version",
    "model",
)


def _write_parquet(ds: Any, work: WorkDir, path: Path, config: SynthConfig) -> tuple[int, set[str], int]:
    """Stream the ok records, joined with their recording's audio and transcript, to parquet;
    with ``tts``, speak the transcripts of recordings without audio (once each, kept in the work
    dir across resumes). Returns (rows written, names of the spoken wav files, rows left out
    because remote TTS could not speak their recording)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = ds.select_columns([c for c in ("audio", "transcript") if c in ds.column_names])
    writer = None
    batch: list[dict[str, Any]] = []
    total = unspoken = 0
    spoken: set[str] = set()

    def flush() -> None:
        nonlocal writer
        table = pa.Table.from_pylist(batch)
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table.cast(writer.schema))
        batch.clear()

    for record in work.records():
        if record["status"] != STATUS_OK:
            continue
        src = source[record["source"]]
        row = {name: record.get(name) for name in _OUTPUT_COLUMNS}
        audio = src.get("audio")
        if config.tts is not None and not audio:
            name = audio_name(record["source_id"])
            if name not in spoken and not (work.path / TTS_DIR / name).is_file():
                if remote_model(config.tts):  # its failure was counted by _speak_remote
                    unspoken += 1
                    continue
                speak(src["transcript"], work.path / TTS_DIR / name)
            spoken.add(name)
            audio = f"{TTS_DIR}/{name}"  # relative to the dataset dir (load_rows resolves it)
        row.update(audio=audio, transcript=src["transcript"], model=config.llm.model, _job=record["job"])
        batch.append(row)
        total += 1
        if len(batch) >= PARQUET_BATCH_ROWS:
            flush()
    if batch:
        flush()
    if writer is not None:
        writer.close()
    return total, spoken, unspoken


def _speak_remote(
    config: SynthConfig, ds: Any, work: WorkDir, spent: float
) -> tuple[dict[str, Any], dict[str, int], str | None]:
    """Speak (:func:`~speechsum_cli.llm.speech.speak_all`) every recording without audio that has
    written rows; wavs land in the work dir (kept across resumes). Returns the TTS usage,
    failures by reason (recordings), and 'budget' if --max-cost stopped it."""
    from dataclasses import replace

    sources = {}
    for record in work.records():
        if record["status"] == STATUS_OK and record["source"] not in sources:
            name = audio_name(record["source_id"])
            if not (work.path / TTS_DIR / name).is_file():
                sources[record["source"]] = name
    if "audio" in ds.column_names:
        audio = ds.select_columns(["audio"])
        sources = {i: name for i, name in sources.items() if not audio[i]["audio"]}
    remaining = None if config.llm.max_cost is None else max(0.0, config.llm.max_cost - spent)
    tts = replace(config.llm, model=remote_model(config.tts), max_cost=remaining, extra_body=None)
    text = ds.select_columns(["transcript"])
    jobs = [(text[i]["transcript"], work.path / TTS_DIR / name) for i, name in sorted(sources.items())]
    spoken = speak_all(tts, jobs)
    usage = {
        "model": tts.model,
        "recordings": len(sources),
        "requests": spoken.usage.requests,
        "cache_hits": spoken.usage.cache_hits,
        "characters": spoken.usage.input_tokens,
        "cost_usd": spoken.usage.cost_usd,
    }
    return usage, spoken.failed, "budget" if spoken.stopped_by_budget else None


__all__ = ["MANIFEST_NAME", "SynthConfig", "SynthResult", "run"]
