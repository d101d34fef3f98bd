"""``pairs``: sample candidates from a checkpoint and let a judge pick chosen/rejected.

Stage 3 of the recipe: the distilled student samples ``k`` summaries per prompt; a judge (the
pairwise LLM judge of the paper, a 1-7 rubric, or the offline check) picks the better and the
worse, aimed at hallucination and repetition. Output: a dataset of preference pairs for ``dpo``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.data.audio import load_audio, probe
from speechsum_cli.data.dataset import ColumnMap, load_rows, require_columns, rows_with_empty
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import long_audio_plan, shown_ids
from speechsum_cli.errors import InputError
from speechsum_cli.metrics import preference

JUDGES = ("pairwise", "rubric", "offline")
LONG_AUDIO = (LongAudio.error, LongAudio.drop)
"""Candidates are sampled from one window: chunk and truncate are not offered."""


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
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 4
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
    """Audio longer than the model's window: error (default) or drop (counted and warned)."""
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    split: str | None = None
    columns: ColumnMap = ColumnMap()
    """Names of the prompts' id, audio, transcript and query columns (--X-column)."""
    overwrite: bool = False
    show_progress: bool = True


@dataclass
class PairsResult:
    out: Path | None
    counts: dict[str, int]
    pairs: list[dict[str, Any]] = field(default_factory=list)
    llm: Any = None
    """The CallBatch of the LLM judge (requests, cost, dry-run estimates)."""


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
        got = getattr(config.on_long_audio, "value", config.on_long_audio)
        problems.append(f"--on-long-audio must be {allowed} for pairs (candidates are sampled from one "
                        f"window), got '{got}'")
    if config.judge != "offline" and config.llm is None:
        problems.append(f"--judge {config.judge} needs an LLM: pass --judge-base-url or set the key variable "
                        "(--judge-api-key-env), or use --judge offline")
    if problems:
        raise InputError("; ".join(problems) + ".")
    if config.llm is not None:
        from speechsum_cli.llm.client import check_credentials

        check_credentials(config.llm)


def load_prompts(config: PairsConfig) -> list[dict[str, Any]]:
    ds = load_rows(config.data, columns=config.columns, split=config.split)
    require_columns(ds, ["audio", "transcript", "query"], config.data,
                    "pairs needs prompts with audio, transcript and query (synth output works; other "
                    "names map with --audio-column, --transcript-column, --query-column).")
    empty = rows_with_empty(ds, "transcript")
    if empty:
        raise InputError(f"{len(empty)} row(s) of '{config.data}' have an empty 'transcript' "
                         f"(ids: {shown_ids(empty)}); the judge needs it.")
    return list(ds)


def split_long(rows: list[dict[str, Any]], window: float, policy: LongAudio | str,
               source: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows that fit one window, and how many were dropped (error unless policy is drop)."""
    policy = LongAudio(policy)
    ids = [row["id"] for row in rows]
    durations = [probe(row["audio"]).duration for row in rows]
    if policy is LongAudio.error:
        long = [i for i, d in zip(ids, durations) if d > window + 1e-6]
        if long:
            raise InputError(
                f"{len(long)} prompt(s) have audio longer than the model's {window:g} s window (ids: "
                f"{shown_ids(long)}); candidates are sampled from one window. Pass --on-long-audio drop "
                "to leave them out (counted), or split the recordings first."
            )
    plan = long_audio_plan(ids, durations, window, policy, source)
    return [rows[i] for i in plan.keep], plan.counts["dropped_long_audio"]


def sample_candidates(config: PairsConfig, rows: list[dict[str, Any]], lm: Any) -> list[list[str]]:
    """k sampled summaries per row, batched (a row's k samples share a batch)."""
    import torch

    from speechsum_cli.console import progress_bar
    from speechsum_cli.families import GenerationSettings, Prompt

    torch.manual_seed(config.seed)
    settings = GenerationSettings(config.max_new_tokens, config.temperature, config.top_p)
    candidates: list[list[str]] = []
    with progress_bar("Sampling candidates", len(rows), enabled=config.show_progress) as advance:
        for start in range(0, len(rows), config.batch_size):
            chunk = rows[start : start + config.batch_size]
            prompts = []
            for row in chunk:
                audio = load_audio(row["audio"], lm.sampling_rate)
                prompts += [Prompt(row["query"], audio)] * config.k
            texts = lm.generate(prompts, settings)
            candidates += [texts[i * config.k : (i + 1) * config.k] for i in range(len(chunk))]
            advance(len(chunk))
    return candidates


def distinct_candidates(candidates: list[str]) -> list[int]:
    """Indices of the first occurrence of each distinct (normalized), non-empty candidate."""
    seen: dict[str, int] = {}
    for i, text in enumerate(candidates):
        if preference.normalized(text):
            seen.setdefault(preference.normalized(text), i)
    return sorted(seen.values())


def pairwise_calls(rows: list[dict[str, Any]], candidates: list[list[int]], texts: list[list[str]]) -> dict[Any, Any]:
    from speechsum_cli.metrics.judge import pairwise_messages

    calls = {}
    for r, (row, keep) in enumerate(zip(rows, candidates)):
        for i, j in preference.candidate_pairs(len(keep)):
            a, b = texts[r][keep[i]], texts[r][keep[j]]
            calls[(r, i, j, "ab")] = pairwise_messages(row["transcript"], row["query"], a, b)
            calls[(r, i, j, "ba")] = pairwise_messages(row["transcript"], row["query"], b, a)
    return calls


def run(config: PairsConfig) -> PairsResult:
    """Sample, judge, and write the pairs dataset (nothing written on a dry run)."""
    from speechsum_cli.families import load
    from speechsum_cli.manifest import atomic_output_dir, check_output_dir, write_manifest

    started = time.perf_counter()
    check_config(config)
    if not (config.llm is not None and config.llm.dry_run):
        check_output_dir(config.out, overwrite=config.overwrite)
    rows = load_prompts(config)
    lm = load(config.model, device=config.device, dtype=config.dtype)
    rows, dropped = split_long(rows, lm.window_seconds, config.on_long_audio, config.data)
    texts = sample_candidates(config, rows, lm)
    del lm
    keep = [distinct_candidates(c) for c in texts]
    counts = {"prompts": len(rows) + dropped, "long_audio_dropped": dropped,
              "empty_candidates": sum(1 for c in texts for t in c if not preference.normalized(t)),
              # samples dropped because an earlier sample of the same prompt says the same
              "identical_candidates": sum(
                  sum(1 for t in c if preference.normalized(t)) - len(k) for c, k in zip(texts, keep))}
    counts["prompts_without_two_distinct_candidates"] = sum(1 for k in keep if len(k) < 2)
    judgeable = [r for r, k in enumerate(keep) if len(k) >= 2]
    decide = {"offline": judge_offline, "pairwise": judge_pairwise, "rubric": judge_rubric}[config.judge]
    decisions, batch, judge_counts = decide(config, [rows[r] for r in judgeable],
                                            [keep[r] for r in judgeable], [texts[r] for r in judgeable])
    counts.update(judge_counts)
    if batch is not None and config.llm.dry_run:
        return PairsResult(None, counts, [], batch)
    pairs = []
    for r, decision in zip(judgeable, decisions):
        if decision is None:
            continue
        best, worst, best_score, worst_score, rationale = decision
        row = rows[r]
        pairs.append({
            "id": row["id"], "audio": row["audio"], "transcript": row["transcript"], "query": row["query"],
            "style": row.get("style"), "chosen": texts[r][best], "rejected": texts[r][worst],
            "chosen_score": float(best_score), "rejected_score": float(worst_score),
            "judge_rationale": rationale, "judge": config.judge,
        })
    counts["pairs_kept"] = len(pairs)
    if not pairs:
        raise InputError(
            f"no preference pair was kept out of {counts['prompts']} prompts (counts: {counts}). "
            "Sample more diverse candidates (--temperature, --k) or check the judge."
        )
    from datasets import Dataset

    with atomic_output_dir(config.out, overwrite=config.overwrite) as tmp:
        Dataset.from_list(pairs).save_to_disk(str(tmp))
        llm_usage = {} if batch is None else {
            "requests": batch.requests, "cache_hits": batch.cache_hits, "input_tokens": batch.input_tokens,
            "output_tokens": batch.output_tokens, "cost_usd": round(batch.cost_usd, 6),
            "stopped_by_budget": batch.stopped_by_budget,
            "failure_reasons": sorted(set(batch.failed.values()))[:20],
        }
        write_manifest(tmp, stage="pairs", config=config, inputs=[config.data, config.model],
                       counts=counts, metrics={"llm": llm_usage}, wall_time=time.perf_counter() - started)
    return PairsResult(config.out, counts, pairs, batch)


Decision = tuple[int, int, float, float, str] | None


def judge_offline(config: PairsConfig, rows, keep, texts) -> tuple[list[Decision], None, dict[str, int]]:
    decisions: list[Decision] = []
    ties = 0
    for row, idx, cands in zip(rows, keep, texts):
        best, worst, scores, tie = preference.rank_offline([cands[i] for i in idx], row)
        if tie:
            ties += 1
            decisions.append(None)
            continue
        decisions.append((idx[best], idx[worst], scores[best], scores[worst],
                          "offline: fewer unsupported numbers/names, less repetition, style, ROUGE-L"))
    return decisions, None, {"ties": ties}


def judge_pairwise(config: PairsConfig, rows, keep, texts):
    from speechsum_cli.console import progress_bar
    from speechsum_cli.llm.batch import run_calls
    from speechsum_cli.metrics.judge import pairwise_prompt, pairwise_schema

    calls = pairwise_calls(rows, keep, texts)
    show = config.show_progress and not config.llm.dry_run
    with progress_bar("Judging pairs (both orders)", len(calls), enabled=show) as advance:
        batch = run_calls(config.llm, calls, pairwise_schema(), prompt_version=f"pairwise-{pairwise_prompt()['version']}",
                          concurrency=config.concurrency, advance=advance)
    counts = {"ties": 0, "inconsistent": 0, "judge_failed": 0, "not_judged_budget": 0}
    decisions: list[Decision] = []
    for r, idx in enumerate(keep):
        outcomes: dict[tuple[int, int], str] = {}
        rationale = ""
        for i, j in preference.candidate_pairs(len(idx)):
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
        best, worst, wins, tie = preference.tournament(len(idx), outcomes)
        if tie:
            counts["ties"] += 1
            decisions.append(None)
            continue
        decisions.append((idx[best], idx[worst], wins[best], wins[worst], rationale))
    return decisions, batch, counts


def judge_rubric(config: PairsConfig, rows, keep, texts):
    from speechsum_cli.metrics.judge import judge_all

    items = {(r, i): (row["transcript"], row["query"], texts[r][i])
             for r, (row, idx) in enumerate(zip(rows, keep)) for i in idx}
    from speechsum_cli.console import progress_bar

    show = config.show_progress and not config.llm.dry_run
    with progress_bar("Judging candidates (rubric)", len(items), enabled=show) as advance:
        judged = judge_all(config.llm, items, concurrency=config.concurrency, advance=advance)
    counts = {"ties": 0, "below_margin": 0, "judge_failed": len(judged.failed)}
    decisions: list[Decision] = []
    for r, idx in enumerate(keep):
        scored = [(i, judged.scores[(r, i)]["judge_overall"]) for i in idx if (r, i) in judged.scores]
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
