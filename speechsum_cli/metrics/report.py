"""Rendering an eval: report.json (with per-row scores), report.md, a rich table, PNG plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from speechsum_cli.console import plural
from speechsum_cli.errors import InputError
from speechsum_cli.metrics.aggregate import HIGHER_IS_BETTER, Estimate, best_systems

METRIC_LABELS = {
    "judge_overall": "judge overall (1-7)",
    "judge_accuracy": "judge accuracy (1-7)",
    "judge_coherence": "judge coherence (1-7)",
    "judge_style": "judge style (1-7)",
    "judge_hallucination": "judge no-hallucination (1-7)",
    "judge_instruction_following": "judge instruction following (1-7)",
    "judge_flags_invented_fact": "judge: invented fact (share)",
    "has_unsupported": "unsupported content (share)",
    "unsupported_items": "unsupported items / summary",
    "rouge1": "ROUGE-1 F1",
    "rouge2": "ROUGE-2 F1",
    "rougeL": "ROUGE-L F1",
    "style_ok": "style compliance (share)",
    "repetition": "repeated 4-grams (share)",
    "repeated_sentences": "repeated sentences / summary",
    "scaffold_echo": "echoes the combine scaffold (share)",
    "words": "length (words)",
    "real_time_factor": "real-time factor",
    "wer": "WER (transcription prompt)",
    "cer": "CER (transcription prompt)",
}


def label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def arrow(metric: str) -> str:
    if metric not in HIGHER_IS_BETTER:
        return ""
    return " ↑" if HIGHER_IS_BETTER[metric] else " ↓"


def build_report(
    config: Any,
    systems: list[Any],
    ids: list[str],
    per_row: dict[str, dict[str, dict[str, float]]],
    summary: dict[str, dict[str, Estimate]],
    rows_by_id: dict[str, dict[str, Any]],
    judged: Any = None,
) -> dict[str, Any]:
    """Everything an eval found, as one JSON-able dict (the content of report.json)."""
    return {
        "judge": judge_section(config, systems, judged),
        "test_set": str(config.data),
        "rows_compared": len(ids),
        "wer_rows_compared": next(iter(summary["wer"].values())).n if "wer" in summary else 0,
        "systems": [
            {
                "name": s.name,
                "source": s.source,
                "kind": s.kind,
                "missing_ids": s.missing,
                "extra_ids": s.extra,
                "transcribed": len(s.transcriptions),
            }
            for s in systems
        ],
        "summary": {
            metric: {name: asdict(est) | {"best": name in best_systems(by, metric)} for name, est in by.items()}
            for metric, by in summary.items()
        },
        "rows": [
            {
                "id": row_id,
                "query": rows_by_id[row_id].get("query"),
                "style": rows_by_id[row_id].get("style"),
                "systems": {
                    s.name: {
                        "prediction": s.predictions[row_id],
                        **({"transcription": s.transcriptions[row_id]} if row_id in s.transcriptions else {}),
                        "scores": per_row[row_id][s.name],
                        **(
                            {"judge_rationale": judged.rationales[(row_id, s.name)]}
                            if judged is not None and (row_id, s.name) in judged.rationales
                            else {}
                        ),
                        **(
                            {"judge_failed": judged.failed[(row_id, s.name)]}
                            if judged is not None and (row_id, s.name) in judged.failed
                            else {}
                        ),
                    }
                    for s in systems
                },
            }
            for row_id in ids
        ],
    }


def judge_section(config: Any, systems: list[Any], judged: Any) -> dict[str, Any]:
    """Whether the judge ran, with which model, its cost, and failures per system."""
    if config.judge is None:
        return {"ran": False, "why": "no judge configured (pass --judge-base-url, or set the judge's API key variable)"}
    failed: dict[str, int] = {}
    for _, name in judged.failed:
        failed[name] = failed.get(name, 0) + 1
    return {
        "ran": True,
        "model": config.judge.model,
        "base_url": config.judge.base_url,
        "requests": judged.requests,
        "cache_hits": judged.cache_hits,
        "cost_usd": round(judged.cost_usd, 6),
        "stopped_by_budget": judged.stopped_by_budget,
        "concurrency": judged.batch.concurrency,
        "failed": {s.name: failed.get(s.name, 0) for s in systems},
        "failure_reasons": sorted(set(judged.failed.values()))[:20],
    }


def format_estimate(est: Estimate) -> str:
    return f"{est.mean:.3f} [{est.low:.3f}, {est.high:.3f}]"


def markdown(report: dict[str, Any], summary: dict[str, dict[str, Estimate]]) -> str:
    """A table: one row per metric, one column per system; mean [95% CI], best in bold."""
    names = [s["name"] for s in report["systems"]]
    lines = [
        f"# Evaluation on `{report['test_set']}`",
        "",
        f"{plural(report['rows_compared'], 'row')} compared (the rows every system has). "
        "Cells: mean [bootstrap 95% interval]; **bold** = best; ↑/↓ = higher/lower is better.",
        "",
        "| metric | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for metric, by in summary.items():
        best = best_systems(by, metric)
        cells = []
        for name in names:
            if name not in by:
                cells.append("—")
                continue
            text = format_estimate(by[name])
            cells.append(f"**{text}**" if name in best else text)
        lines.append(f"| {label(metric)}{arrow(metric)} | " + " | ".join(cells) + " |")
    if "wer" in summary:
        n = report["wer_rows_compared"]
        beyond = [f"`{s['name']}` {s['transcribed']}" for s in report["systems"] if s.get("transcribed", 0) > n]
        lines += [
            "",
            f"WER/CER: on the {plural(n, 'row')} every system with transcriptions has transcribed "
            "(a checkpoint transcribes the first `--wer-rows` rows, of any length)"
            + (f"; transcribed but not compared: {', '.join(beyond)} rows in all." if beyond else "."),
        ]
    lines += [
        "",
        "Systems (`--name` pairs with every `--model` first, then every `--predictions`):",
        "",
        *system_sources(report),
    ]
    judge = report["judge"]
    if not judge["ran"]:
        lines += ["", f"Judge: not run — {judge['why']}."]
    else:
        lines += [
            "",
            f"Judge: `{judge['model']}`, {judge['requests']} requests, {judge['cache_hits']} cached, "
            f"${judge['cost_usd']:.4f}; failed (retries spent, counted as missing, never as 0): "
            + ", ".join(f"{n}: {c}" for n, c in judge["failed"].items())
            + (" — stopped by --max-cost" if judge["stopped_by_budget"] else ""),
        ]
    problems = [
        f"- `{s['name']}`: {len(s['missing_ids'])} test id(s) without a prediction"
        f"{' (' + ', '.join(s['missing_ids'][:5]) + ')' if s['missing_ids'] else ''}, "
        f"{len(s['extra_ids'])} prediction id(s) not in the test set"
        f"{' (' + ', '.join(s['extra_ids'][:5]) + ')' if s['extra_ids'] else ''}"
        for s in report["systems"]
        if s["missing_ids"] or s["extra_ids"]
    ]
    if problems:
        lines += ["", "## Rows that did not join", "", *problems]
    if report.get("plots"):
        lines += ["", "## Plots", "", *(f"![{label(Path(name).stem)}]({name})" for name in report["plots"])]
    return "\n".join(lines) + "\n"


def system_sources(report: dict[str, Any]) -> list[str]:
    """One line per system: its display name and what it is (checkpoint or predictions file)."""
    return [f"- `{s['name']}`: {s['kind']} `{s['source']}`" for s in report["systems"]]


def rich_table(report: dict[str, Any], summary: dict[str, dict[str, Estimate]]) -> Any:
    from rich.table import Table

    names = [s["name"] for s in report["systems"]]
    table = Table(
        title=f"{plural(report['rows_compared'], 'row')} · mean [95% CI] · best in bold",
        caption="\n".join(f"{s['name']} = {s['kind']} {s['source']}" for s in report["systems"]),
    )
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for metric, by in summary.items():
        best = best_systems(by, metric)
        cells = [
            (
                "—"
                if n not in by
                else f"[bold green]{format_estimate(by[n])}[/]"
                if n in best
                else format_estimate(by[n])
            )
            for n in names
        ]
        table.add_row(label(metric) + arrow(metric), *cells)
    return table


def plot_metrics(out_dir: Path, summary: dict[str, dict[str, Estimate]]) -> list[Path]:
    """One PNG bar chart per metric, with the 95% interval as error bars."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'speechsum[plot]'.") from None
    paths = []
    for metric, by in summary.items():
        names = list(by)
        means = [by[n].mean for n in names]
        errors = [[by[n].mean - by[n].low for n in names], [by[n].high - by[n].mean for n in names]]
        fig, ax = plt.subplots(figsize=(max(3.0, 1.2 * len(names) + 1.5), 3.0))
        ax.bar(names, means, yerr=errors, capsize=4, color="#4c72b0")
        ax.set_title(label(metric) + arrow(metric))
        fig.tight_layout()
        path = out_dir / f"{metric}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(
    out_dir: Path, report: dict[str, Any], summary: dict[str, dict[str, Estimate]], *, plot: bool
) -> list[Path]:
    """report.json, report.md and (``plot``) one PNG per metric, which both reports list; returns the PNGs."""
    plots = plot_metrics(out_dir, summary) if plot else []
    report["plots"] = [p.name for p in plots]
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "report.md").write_text(markdown(report, summary))
    return plots
