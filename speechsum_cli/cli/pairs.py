"""``speechsum pairs``: flags -> PairsConfig -> stages.pairs.run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

EPILOG = (
    "Examples:\n\n"
    "  speechsum pairs --model runs/kd --data prompts/ --out runs/pairs --base-url http://127.0.0.1:8000/v1 --judge-model MODEL\n\n"
    "  speechsum pairs --model runs/kd --data prompts/ --out runs/pairs --judge offline\n\n"
    "The pairwise judge sees both orders of every pair and keeps only consistent verdicts."
)


class Judge(str, Enum):
    pairwise = "pairwise"
    rubric = "rubric"
    offline = "offline"


class LongAudio(str, Enum):
    error = "error"
    drop = "drop"


def pairs(
    model: Annotated[str, typer.Option("--model", "-m", help="Checkpoint that samples candidates (the KD student).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Prompts: dataset dir/.parquet/.jsonl with id, audio, transcript, query.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset directory of preference pairs.")],
    k: Annotated[int, typer.Option("--k", help="Candidates sampled per prompt.", min=2)] = 2,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0).")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Budget per candidate.", min=1)] = 256,
    batch_size: Annotated[int, typer.Option(help="Prompts sampled together.", min=1)] = 4,
    judge: Annotated[Judge, typer.Option(help="pairwise (the paper's), rubric (1-7 scores), or offline (no LLM).")] = Judge.pairwise,
    min_margin: Annotated[float, typer.Option(help="rubric: keep pairs whose best - worst score >= this.")] = 1.0,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint of the judge.")] = None,
    judge_model: Annotated[str, typer.Option(help="Judge model (the paper: gpt-4.1).")] = "gpt-4.1",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the judge's key.")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, typer.Option(help="Judge requests in flight.", min=1)] = 8,
    judge_max_tokens: Annotated[int, typer.Option(help="Reply budget per judge request.", min=16)] = 256,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Judge response cache  \\[default: ~/.cache/speechsum/llm].", show_default=False)] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop judging before spending more than this many USD.", min=0.0)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Sample, then estimate judge requests and cost; send and write nothing.")] = False,
    on_long_audio: Annotated[LongAudio, typer.Option(help="Audio longer than the model's window: error, or drop (counted).")] = LongAudio.error,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    split: Annotated[Optional[str], typer.Option(help="Split of a saved DatasetDict.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")] = True,
) -> None:
    """Sample k candidates per prompt and let a judge build chosen/rejected pairs (stage 3)."""
    import json

    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.llm import LLMConfig
    from speechsum_cli.stages.pairs import PairsConfig, run

    quiet_libraries()
    llm = None
    if judge is not Judge.offline:
        llm = LLMConfig(base_url=base_url, model=judge_model, api_key_env=api_key_env, temperature=0.0,
                        max_tokens=judge_max_tokens, max_cost=max_cost, dry_run=dry_run,
                        cache_dir=cache_dir or Path.home() / ".cache" / "speechsum" / "llm")
    elif dry_run:
        from speechsum_cli.errors import InputError

        raise InputError("--dry-run estimates LLM judge costs; the offline judge costs nothing. Drop --dry-run.")
    config = PairsConfig(
        model=model, data=data, out=out, k=k, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, batch_size=batch_size, judge=judge.value, min_margin=min_margin,
        llm=llm, concurrency=concurrency, on_long_audio=on_long_audio.value, seed=seed, device=device,
        dtype=dtype, split=split, overwrite=overwrite, show_progress=progress,
    )
    result = run(config)
    if dry_run:
        batch = result.llm
        typer.echo(f"Dry run: {batch.estimated_requests} judge requests (~{batch.estimated_input_tokens} input, "
                   f"~{batch.estimated_output_tokens} output tokens), estimated ${batch.estimated_cost_usd:.4f}; "
                   "nothing was sent or written.")
        return
    typer.echo(json.dumps({"out": str(result.out), **result.counts}))
