"""``pairs``: sample candidates from a checkpoint and let a judge pick chosen/rejected.

Stage 3 of the recipe: the distilled student samples ``k`` summaries per prompt; a judge (the
pairwise LLM judge of the paper, a 1-7 rubric, or the offline check) picks the better and the
worse, aimed at hallucination and repetition. Output: a dataset of preference pairs for ``dpo``.

With ``--teacher``, a text LM reading the transcript (distill's teacher, in distill's prompt) writes
its own greedy answer, which joins each prompt's candidates at a seeded random position — the
self-synthesis of Reinforced Behavior Alignment: when every student sample invents details, the
teacher's answer gives the judge a faithful option. The judge sees texts only, never where they
came from; each pair records ``chosen_source`` / ``rejected_source`` (student | teacher).

With ``server`` (``--server-base-url``) the student samples on an OpenAI-compatible server instead:
one request per prompt asking for ``n`` = k choices with ``temperature``, ``top_p`` and the seed
``seed + k * row`` (a server that ignores ``n`` is asked again with the seeds after it, up to k),
:mod:`speechsum_cli.families.served`; a re-run of the same command gets the same candidates from
the response cache.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli import generation
from speechsum_cli.console import plural, warn
from speechsum_cli.data.dataset import ColumnMap, load_rows, require_columns, rows_with_empty
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import check_audio_rows, decode_row_audio, long_audio_plan, shown_ids
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError
from speechsum_cli.llm.batch import check_batch_failures
from speechsum_cli.manifest import FAILURES_KEY, retry_replaces
from speechsum_cli.metrics import preference
from speechsum_cli.typed import enum_fields

JUDGES = ("pairwise", "rubric", "offline")
STUDENT, TEACHER = "student", "teacher"
"""Where a candidate came from (``chosen_source`` / ``rejected_source``); the judge never sees it."""
LONG_AUDIO = (LongAudio.error, LongAudio.chunk, LongAudio.drop)
"""A candidate answers the whole recording: truncate is not offered."""


@dataclass(frozen=True)
class PairsConfig:
    """Settings of one ``speechsum pairs`` run."""

    model: str
    """Checkpoint that samples the candidates (the KD student in the paper)."""
    data: Path
    """Prompts: id, audio, transcript, query (+ style, summary)."""
    out: Path
    """Output dataset directory."""
    k: int = 2
    """Candidates per prompt (the paper: 2)."""
    temperature: float = generation.default("pairs", "temperature")
    top_p: float = generation.default("pairs", "top_p")
    max_new_tokens: int = generation.default("pairs", "max_new_tokens")
    batch_size: int = generation.default("pairs", "batch_size")
    """Prompts sampled together (each with k candidates)."""
    judge: str = "pairwise"
    """pairwise | rubric | offline."""
    min_margin: float = 1.0
    """rubric: keep a pair only when best - worst overall score >= this."""
    llm: Any = None
    """LLMConfig of the judge (pairwise/rubric)."""
    concurrency: int = 8
    """Judge requests in flight."""
    on_long_audio: LongAudio = LongAudio.error
    """Audio longer than the model's window: error (default), chunk (its windows in one prompt, as
    sft/distill/dpo read it) or drop (counted and warned)."""
    seed: int = 0
    device: str = "auto"
    dtype: Dtype = Dtype.auto
    teacher: str | None = None
    """Text chat LM (local dir or hub id) whose greedy answer to transcript + query joins the
    candidates (None = student samples only)."""
    teacher_system: str | None = None
    """System message of the teacher's conversation (default: its template's own)."""
    split: str | None = None
    columns: ColumnMap = ColumnMap()
    """Names of the prompts' id, audio, transcript and query columns (--X-column)."""
    overwrite: bool = False
    show_progress: bool = True
    server: Any = None
    """LLMConfig of an OpenAI-compatible server on which the student samples its candidates from
    audio in chat messages (``--server-base-url``); None = sample in this process."""

    def __post_init__(self) -> None:
        enum_fields(self, on_long_audio=LongAudio, dtype=Dtype)


@dataclass
class PairsResult:
    out: Path | None
    counts: dict[str, int]
    pairs: list[dict[str, Any]] = field(default_factory=list)
    llm: Any = None
    """The CallBatch of the LLM judge (requests, cost, dry-run estimates)."""
    warning: str | None = None
    """Some judge requests failed: how many, why, and how to retry them."""


def check_config(config: PairsConfig) -> None:
    problems = []
    if config.judge not in JUDGES:
        problems.append(f"--judge must be one of {', '.join(JUDGES)}, got '{config.judge}'")
    if config.k < 2:
        problems.append(f"--k must be at least 2 to form a pair, got {config.k}")
    if config.temperature <= 0:
        problems.append("--temperature must be > 0: greedy decoding gives k identical candidates")
    if config.on_long_audio not in LONG_AUDIO:
        allowed = " or ".join(p.value for p in LONG_AUDIO)
        problems.append(
            f"--on-long-audio must be {allowed} for pairs (a candidate answers the whole "
            f"recording), got '{config.on_long_audio.value}'"
        )
    if config.judge != "offline" and config.llm is None:
        problems.append(
            f"--judge {config.judge} needs an LLM: pass --judge-base-url or set the key variable "
            "(--judge-api-key-env), or use --judge offline"
        )
    if problems:
        raise InputError("; ".join(problems) + ".")
    from speechsum_cli.llm.transport import check_credentials

    for llm in (config.llm, config.server):
        if llm is not None:
            check_credentials(llm)


def load_prompts(config: PairsConfig) -> tuple[list[dict[str, Any]], list[float]]:
    """The prompt rows and their audio durations, every bad row named (before any model loads)."""
    readers = "the judge and the --teacher read it" if config.teacher else "the judge reads it"
    ds = load_rows(config.data, columns=config.columns, split=config.split)
    hint = (
        f"pairs needs prompts with audio, transcript ({readers}) and query (synth output "
        "works; other names map with --audio-column, --transcript-column, --query-column)."
    )
    require_columns(ds, ["audio", "transcript", "query"], config.data, hint)
    empty = rows_with_empty(ds, "transcript")
    blank = [f"{len(empty)} row(s) with an empty 'transcript' ({readers}): ids {shown_ids(empty)}"] if empty else []
    durations = check_audio_rows(
        ds, config.data, stage="pairs", required=["audio"], nonempty=[], hint=hint, extra_problems=blank
    )
    return list(ds), durations


def split_long(
    rows: list[dict[str, Any]], durations: list[float], window: float, policy: LongAudio, source: Path
) -> tuple[list[dict[str, Any]], int]:
    """The rows kept, and how many were dropped: long rows are refused (error), dropped (drop), or
    kept whole (chunk: their windows fill one prompt)."""
    ids = [row["id"] for row in rows]
    if policy is LongAudio.error:
        long = [i for i, d in zip(ids, durations) if d > window + 1e-6]
        if long:
            raise InputError(
                f"{len(long)} prompt(s) have audio longer than the model's {window:g} s window (ids: "
                f"{shown_ids(long)}). Pass --on-long-audio chunk to read each whole (its windows in one "
                "prompt, as sft/distill/dpo read it), --on-long-audio drop to leave them out (counted), "
                "or split the recordings first."
            )
    plan = long_audio_plan(ids, durations, window, policy, source)
    return [rows[i] for i in plan.keep], plan.counts["dropped_long_audio"]


def padded_short(rows: list[dict[str, Any]], durations: list[float], shortest: float) -> int:
    """Prompts whose audio is shorter than the encoder reads: sampled with silence after it up to
    ``shortest`` seconds (the family pads it); counted and said."""
    short = [row["id"] for row, seconds in zip(rows, durations) if seconds < shortest]
    if short:
        warn(
            f"{plural(len(short), 'prompt')} with audio shorter than the {shortest:.3f} s the "
            "model's audio encoder reads, so each was sampled with silence after it up to that "
            f"length: ids {shown_ids(short)}."
        )
    return len(short)


def sample_candidates(config: PairsConfig, rows: list[dict[str, Any]], lm: Any) -> list[list[str]]:
    """k sampled summaries per row, batched (a row's k samples share a batch; on a server, one
    request with n = k and the seed ``seed + k * row``)."""
    import torch

    from speechsum_cli.console import progress_bar
    from speechsum_cli.families import GenerationSettings, Prompt

    torch.manual_seed(config.seed)
    settings = GenerationSettings(config.max_new_tokens, config.temperature, config.top_p)
    size = lm.generation_batch(config.batch_size)
    window = lm.window_seconds
    candidates: list[list[str]] = []
    with progress_bar("Sampling candidates", len(rows), enabled=config.show_progress) as advance:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            prompts = [
                Prompt(row["query"], decode_row_audio(row, lm.sampling_rate, window, chunk=True)) for row in chunk
            ]
            seeds = [config.seed + config.k * (start + i) for i in range(len(chunk))]  # a row's k seeds are its own
            candidates += lm.sample(prompts, settings, config.k, seeds)
            advance(len(chunk))
    return candidates


def distinct_candidates(candidates: list[str]) -> list[int]:
    """Indices of the first occurrence of each distinct (normalized), non-empty candidate."""
    seen: dict[str, int] = {}
    for i, text in enumerate(candidates):
        if preference.normalized(text):
            seen.setdefault(preference.normalized(text), i)
    return sorted(seen.values())


def pairwise_calls(rows: list[dict[str, Any]], candidates: list[list[str]]) -> dict[Any, Any]:
    """Both orders of every pair of a row's candidates (texts only: the judge never sees sources)."""
    from speechsum_cli.metrics.judge import pairwise_messages

    calls = {}
    for r, (row, texts) in enumerate(zip(rows, candidates)):
        for i, j in preference.candidate_pairs(len(texts)):
            a, b = texts[i], texts[j]
            calls[(r, i, j, "ab")] = pairwise_messages(row["transcript"], row["query"], a, b)
            calls[(r, i, j, "ba")] = pairwise_messages(row["transcript"], row["query"], b, a)
    return calls


# --- the teacher's answer -------------------------------------------------------------------


def check_teacher(config: PairsConfig, rows: list[dict[str, Any]]) -> Any:
    """The teacher's tokenizer, its chat template checked on the first row (before any model loads)."""
    from speechsum_cli.teacher import Teacher, check_teacher_template, load_teacher_tokenizer

    tokenizer = load_teacher_tokenizer(config.teacher)
    check_teacher_template(
        Teacher(None, tokenizer, config.teacher, config.teacher_system), rows[0]["transcript"], rows[0]["query"]
    )
    return tokenizer


def teacher_answers(config: PairsConfig, rows: list[dict[str, Any]], tokenizer: Any) -> tuple[list[str], int]:
    """The teacher's greedy answer to each row's transcript + query (batched), and how many
    answers reached --max-new-tokens without an end token (kept as they are, counted)."""
    import torch

    from speechsum_cli.console import progress_bar
    from speechsum_cli.families import GenerationSettings, resolve_device
    from speechsum_cli.teacher import load_teacher

    teacher = load_teacher(
        config.teacher,
        tokenizer,
        device=resolve_device(config.device),
        dtype=config.dtype,
        system=config.teacher_system,
    )
    tokenizer.padding_side = "left"
    kwargs = teacher.generation_kwargs(GenerationSettings(config.max_new_tokens))  # greedy
    stop = kwargs["eos_token_id"]
    answers: list[str] = []
    hit_max = 0
    with progress_bar("Teacher answers", len(rows), enabled=config.show_progress) as advance:
        for start in range(0, len(rows), config.batch_size):
            chunk = rows[start : start + config.batch_size]
            prompts = [teacher.render(row["transcript"], row["query"]) for row in chunk]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(teacher.device)
            with torch.inference_mode():
                output = teacher.model.generate(**enc, **kwargs)
            new = output[:, enc["input_ids"].shape[1] :].cpu()
            hit_max += sum(1 for ids in new.tolist() if not set(ids) & set(stop))
            answers += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
            advance(len(chunk))
    return answers, hit_max


def add_teacher_answers(
    candidates: list[list[str]], answers: list[str], seed: int
) -> tuple[list[list[str]], list[list[str]], dict[str, int]]:
    """Each row's distinct student candidates with the teacher's answer inserted at a seeded random
    position (so no judge's tie-break by position favours either source), and every candidate's
    source. An empty answer is left out; an answer a student sample already says (same normalized
    text) is not added twice — the student's copy stays, as the student's: it is on-policy text."""
    rng = random.Random(seed)
    texts: list[list[str]] = []
    sources: list[list[str]] = []
    counts = {
        "teacher_answers": len(answers),
        "teacher_candidates": 0,
        "teacher_same_as_student": 0,
        "teacher_empty": 0,
    }
    for cands, answer in zip(candidates, answers, strict=True):
        row_texts, row_sources = list(cands), [STUDENT] * len(cands)
        said = {preference.normalized(c) for c in cands}
        if not preference.normalized(answer):
            counts["teacher_empty"] += 1
        elif preference.normalized(answer) in said:
            counts["teacher_same_as_student"] += 1
        else:
            at = rng.randint(0, len(cands))
            row_texts.insert(at, answer)
            row_sources.insert(at, TEACHER)
            counts["teacher_candidates"] += 1
        texts.append(row_texts)
        sources.append(row_sources)
    return texts, sources, counts


def run(config: PairsConfig) -> PairsResult:
    """Sample, judge, and write the pairs dataset (nothing written on a dry run)."""
    from speechsum_cli.families import load_generator
    from speechsum_cli.inference.feature_cache import cache_for_inference
    from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest

    started = time.perf_counter()
    check_config(config)
    overwrite = config.overwrite or retry_replaces(config.out, config.llm is not None and config.llm.retry_failed)
    if not (config.llm is not None and config.llm.dry_run):
        check_output_dir(config.out, overwrite=overwrite)
    rows, durations = load_prompts(config)
    teacher_tokenizer = check_teacher(config, rows) if config.teacher else None
    lm = load_generator(config.model, server=config.server, device=config.device, dtype=config.dtype)
    try:
        if config.server is None:
            cache_for_inference(lm, config.out)  # k samples of a clip (and eval's students) encode it once
        padded = padded_short(rows, durations, lm.min_clip_seconds)
        rows, dropped = split_long(rows, durations, lm.window_seconds, config.on_long_audio, config.data)
        texts = sample_candidates(config, rows, lm)
        generation = lm.record()
    finally:
        lm.close()
    del lm
    candidates = [[c[i] for i in distinct_candidates(c)] for c in texts]
    sources = [[STUDENT] * len(c) for c in candidates]
    counts = {
        "prompts": len(rows) + dropped,
        "long_audio_dropped": dropped,
        "short_audio_padded": padded,
        "empty_candidates": sum(1 for c in texts for t in c if not preference.normalized(t)),
        # samples dropped because an earlier sample of the same prompt says the same
        "identical_candidates": sum(
            sum(1 for t in c if preference.normalized(t)) - len(d) for c, d in zip(texts, candidates)
        ),
    }
    if teacher_tokenizer is not None:
        answers, hit_max = teacher_answers(config, rows, teacher_tokenizer)
        candidates, sources, teacher_counts = add_teacher_answers(candidates, answers, config.seed)
        counts.update(teacher_counts, teacher_hit_max_new_tokens=hit_max)
    counts["prompts_without_two_distinct_candidates"] = sum(1 for c in candidates if len(c) < 2)
    judgeable = [r for r, c in enumerate(candidates) if len(c) >= 2]
    decide = {"offline": judge_offline, "pairwise": judge_pairwise, "rubric": judge_rubric}[config.judge]
    decisions, batch, judge_counts = decide(config, [rows[r] for r in judgeable], [candidates[r] for r in judgeable])
    counts.update(judge_counts)
    if batch is not None and config.llm.dry_run:
        return PairsResult(None, counts, [], batch)
    warning = None if batch is None else check_batch_failures(batch, config.llm, config.out, "judge request")
    pairs = []
    for r, decision in zip(judgeable, decisions):
        if decision is None:
            continue
        best, worst, best_score, worst_score, rationale = decision
        row = rows[r]
        pairs.append(
            {
                "id": row["id"],
                "audio": row["audio"],
                "transcript": row["transcript"],
                "query": row["query"],
                "style": row.get("style"),
                "chosen": candidates[r][best],
                "rejected": candidates[r][worst],
                "chosen_score": float(best_score),
                "rejected_score": float(worst_score),
                "judge_rationale": rationale,
                "judge": config.judge,
                "chosen_source": sources[r][best],
                "rejected_source": sources[r][worst],
            }
        )
    counts["pairs_kept"] = len(pairs)
    if teacher_tokenizer is not None:
        counts["chosen_teacher"] = sum(1 for p in pairs if p["chosen_source"] == TEACHER)
        counts["rejected_teacher"] = sum(1 for p in pairs if p["rejected_source"] == TEACHER)
    if not pairs:
        raise InputError(
            f"no preference pair was kept out of {counts['prompts']} prompts (counts: {counts}). "
            "Sample more diverse candidates (--temperature, --k) or check the judge."
        )
    from datasets import Dataset

    with atomic_output_dir(config.out, overwrite=overwrite) as tmp:
        Dataset.from_list(pairs).save_to_disk(str(tmp))
        llm_usage = (
            {}
            if batch is None
            else {
                **batch.usage.as_record(),
                "cost_usd": round(batch.usage.cost_usd, 6),
                "stopped_by_budget": batch.stopped_by_budget,
                "concurrency": batch.concurrency,
                "failure_reasons": sorted(set(batch.failed.values()))[:20],
            }
        )
        inputs = [config.data, config.model] + ([config.teacher] if config.teacher else [])
        failures = {} if batch is None else {FAILURES_KEY: batch.failures().as_record()}
        write_manifest(
            tmp,
            stage="pairs",
            config=config,
            inputs=inputs,
            counts=counts,
            metrics={"llm": llm_usage},
            wall_time=time.perf_counter() - started,
            extra={"generation": generation, **failures},
        )
    return PairsResult(config.out, counts, pairs, batch, warning)


Decision = tuple[int, int, float, float, str] | None


def judge_offline(config: PairsConfig, rows, candidates) -> tuple[list[Decision], None, dict[str, int]]:
    decisions: list[Decision] = []
    ties = 0
    for row, cands in zip(rows, candidates):
        best, worst, scores, tie = preference.rank_offline(cands, row)
        if tie:
            ties += 1
            decisions.append(None)
            continue
        decisions.append(
            (
                best,
                worst,
                scores[best],
                scores[worst],
                "offline: fewer unsupported numbers/names, less repetition, style, ROUGE-L",
            )
        )
    return decisions, None, {"ties": ties}


def judge_pairwise(config: PairsConfig, rows, candidates):
    from speechsum_cli.console import progress_bar
    from speechsum_cli.llm.batch import run_calls
    from speechsum_cli.metrics.judge import pairwise_prompt, pairwise_schema

    calls = pairwise_calls(rows, candidates)
    show = config.show_progress and not config.llm.dry_run
    with progress_bar("Judging pairs (both orders)", len(calls), enabled=show) as advance:
        batch = run_calls(
            config.llm,
            calls,
            pairwise_schema(),
            prompt_version=f"pairwise-{pairwise_prompt()['version']}",
            concurrency=config.concurrency,
            advance=advance,
        )
    counts = {"ties": 0, "inconsistent": 0, "judge_failed": 0, "not_judged_budget": 0}
    decisions: list[Decision] = []
    for r, cands in enumerate(candidates):
        outcomes: dict[tuple[int, int], str] = {}
        rationale = ""
        for i, j in preference.candidate_pairs(len(cands)):
            ab, ba = batch.results.get((r, i, j, "ab")), batch.results.get((r, i, j, "ba"))
            if ab is None or ba is None:
                counts["not_judged_budget"] += 1
                continue
            if not (ab.ok and ba.ok):
                counts["judge_failed"] += 1
                continue
            outcome = preference.resolve_pairwise(ab.data["better"], ba.data["better"])
            if outcome == "inconsistent":
                counts["inconsistent"] += 1
                continue
            outcomes[(i, j)] = outcome
            rationale = rationale or ab.data["rationale"]
        if not outcomes:
            decisions.append(None)
            continue
        best, worst, wins, tie = preference.tournament(len(cands), outcomes)
        if tie:
            counts["ties"] += 1
            decisions.append(None)
            continue
        decisions.append((best, worst, wins[best], wins[worst], rationale))
    return decisions, batch, counts


def judge_rubric(config: PairsConfig, rows, candidates):
    from speechsum_cli.metrics.judge import judge_all

    items = {
        (r, i): (row["transcript"], row["query"], text)
        for r, (row, cands) in enumerate(zip(rows, candidates))
        for i, text in enumerate(cands)
    }
    from speechsum_cli.console import progress_bar

    show = config.show_progress and not config.llm.dry_run
    with progress_bar("Judging candidates (rubric)", len(items), enabled=show) as advance:
        judged = judge_all(config.llm, items, concurrency=config.concurrency, advance=advance)
    counts = {"ties": 0, "below_margin": 0, "judge_failed": len(judged.failed)}
    decisions: list[Decision] = []
    for r, cands in enumerate(candidates):
        scored = [(i, judged.scores[(r, i)]["judge_overall"]) for i in range(len(cands)) if (r, i) in judged.scores]
        if len(scored) < 2:
            decisions.append(None)
            continue
        best = max(scored, key=lambda t: t[1])
        worst = min(scored, key=lambda t: t[1])
        if best[1] == worst[1]:
            counts["ties"] += 1
            decisions.append(None)
        elif best[1] - worst[1] < config.min_margin:
            counts["below_margin"] += 1
            decisions.append(None)
        else:
            decisions.append((best[0], worst[0], best[1], worst[1], judged.rationales.get((r, best[0]), "")))
    return decisions, judged.batch, counts
