"""speechsum from Python: load a checkpoint, summarize recordings of any length.

    python examples/api_example.py MODEL AUDIO [AUDIO...]
    python examples/api_example.py runs/quickstart/dpo runs/quickstart/corpus/test/product-pricing.wav

MODEL is anything `speechsum summarize --model` takes: a checkpoint dir, a hub id (`id@revision`),
or an adapter written by sft/distill/dpo (merged into its base on load).
"""

from __future__ import annotations

import sys
from pathlib import Path

from speechsum_cli.families import load
from speechsum_cli.stages.summarize import SummarizeConfig, run


def main(model: str, audio: list[str]) -> None:
    # 1. The model on its own: family, audio window, parameter count.
    lm = load(model, device="cpu")
    n_params = sum(p.numel() for p in lm.model.parameters())
    print(f"{model}: family {lm.family.model_type}, {lm.window_seconds:.0f} s audio window, {n_params:,} parameters")
    del lm

    # 2. Summaries: the same code path as the CLI (long audio is split at pauses and recombined).
    result = run(
        SummarizeConfig(
            audio=tuple(Path(a) for a in audio),
            model=model,
            style="bullets",
            max_new_tokens=64,
            device="cpu",
            show_progress=False,
        )
    )
    for rec in result.recordings:
        print(f"\n== {rec.audio} ({rec.duration:.1f} s, {len(rec.chunks)} window(s), RTF {rec.real_time_factor:.3f})")
        print(rec.summary)

    # A free-text request instead of a preset:
    custom = run(
        SummarizeConfig(
            audio=(Path(audio[0]),),
            model=model,
            query="Who has to do what by when?",
            max_new_tokens=64,
            device="cpu",
            show_progress=False,
        )
    )
    print(f"\n== free-text query\n{custom.recordings[0].summary}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
