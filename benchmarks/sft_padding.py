"""How much of an sft batch is padding, with length grouping vs random batching?

Builds a tiny Qwen2-Audio model with a 30 s window (like the real one) unless ``--model`` is
given, and a dataset of ``--rows`` rows whose audio lasts 2-30 s (uniform; espeak-ng speech cut
to length, one file per 0.5 s step) and whose summaries are 5-120 words. Both strategies draw
batches with the samplers sft's Trainer uses (``LengthGroupedSampler`` over sft's estimated
lengths, or a random permutation), collate them with sft's collator (the family's encode: audio
placeholders expanded, right padding), and count padded positions in ``attention_mask`` over
one epoch. Step time is the median forward+backward of the LoRA-wrapped model over ``--steps``
batches per strategy, the two strategies' batches timed alternately so that load from other
processes on the machine hits both alike.

Target: padded fraction <= 10% with grouping. Prints PASS/FAIL; exits non-zero on FAIL only
with --check.

Reading the figures: padded fraction counts language-model positions (what grows attention and
MLP cost). Audio *features* are padded to one window by the Qwen2-Audio/Voxtral processors
whatever the batching, so encoder cost per row is fixed and not counted here. With the tiny
model, step time is dominated by that fixed encoder work, so the time gain is smaller than the
padding gain; with a 7B language model the LM dominates. On a shared machine step times are
noisy: the padded fraction and LM positions are exact, the times are indicative.

    python benchmarks/sft_padding.py
    python benchmarks/sft_padding.py --rows 2000 --batch-size 8 --model runs/composed --check
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000
MIN_SECONDS, MAX_SECONDS, STEP_SECONDS = 2.0, 30.0, 0.5
TARGET_PADDED_FRACTION = 0.10
PHRASE = (
    "Good morning everyone. Alice Chen opened the budget review at nine. The team agreed to "
    "move the launch to March fourteenth and to hire three engineers. Bob will send the vendor "
    "contract to Northwind by Friday."
)
WORDS = PHRASE.replace(".", "").split()


def make_audio(folder: Path) -> dict[float, Path]:
    """One wav per duration step, cut from repeated espeak-ng speech."""
    phrase = folder / "phrase.wav"
    subprocess.run(["espeak-ng", "-w", str(phrase), PHRASE], check=True)
    data, sr = sf.read(phrase, dtype="float32")
    files = {}
    for seconds in np.arange(MIN_SECONDS, MAX_SECONDS + 1e-9, STEP_SECONDS):
        n = int(seconds * sr)
        path = folder / f"{seconds:04.1f}s.wav"
        sf.write(path, np.tile(data, n // len(data) + 1)[:n], sr)
        files[float(seconds)] = path
    return files


def make_rows(files: dict[float, Path], n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    steps = sorted(files)
    rows = []
    for i in range(n):
        seconds = rng.choice(steps)
        words = rng.randint(5, 120)
        rows.append(
            {
                "id": f"row{i:05d}",
                "audio": str(files[seconds]),
                "query": "Summarize the key points.",
                "summary": " ".join(rng.choice(WORDS) for _ in range(words)),
                "truncate": False,
                "seconds": seconds,
            }
        )
    return rows


def batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padding(collate, rows, order, batch_size) -> dict:
    """Padded share of the attention mask over every batch of one epoch."""
    padded = total = 0
    for batch in batches(order, batch_size):
        mask = collate([rows[i] for i in batch])["attention_mask"]
        padded += int((mask == 0).sum())
        total += mask.numel()
    return {"padded_fraction": padded / total, "positions": total}


def step_times(model, collate, rows, orders: dict, batch_size: int, steps: int) -> dict:
    """Median forward+backward seconds per strategy, timing the strategies' batches alternately
    (r0, g0, r1, g1, ...) so that load from other processes hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in orders}
    split = {name: batches(order, batch_size)[:steps] for name, order in orders.items()}
    for k in range(steps):
        for name in orders:
            inputs = collate([rows[i] for i in split[name][k]])
            start = time.perf_counter()
            model(**inputs).loss.backward()
            model.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint (default: a tiny Qwen2-Audio with a 30 s window)")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="batches timed per strategy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()

    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from speechsum_cli.cli.common import quiet_libraries
    from speechsum_cli.families import get_family, load
    from speechsum_cli.stages.sft import SpeechCollator
    from speechsum_cli.training.lengths import estimate_lengths
    from speechsum_cli.training.model import prepare_model
    from speechsum_cli.training.settings import TrainSettings

    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or str(get_family("qwen2_audio").build_tiny(tmp / "tiny", window_seconds=30.0))
        lm = load(model_dir, device="cpu", dtype="float32")
        window = lm.window_seconds
        files = {s: p for s, p in make_audio(tmp).items() if s <= window}
        rows = make_rows(files, args.rows, args.seed)
        lengths = estimate_lengths(
            lm, [r["query"] for r in rows], [r["summary"] for r in rows], [r["seconds"] for r in rows], window
        )
        torch.manual_seed(args.seed)
        model = prepare_model(lm.model, lm.family, TrainSettings(), model_dir)
        model.train()
        collate = SpeechCollator(lm, window)

        generator = torch.Generator().manual_seed(args.seed)
        grouped = list(LengthGroupedSampler(args.batch_size, lengths=lengths, generator=generator))
        shuffled = list(range(len(rows)))
        random.Random(args.seed).shuffle(shuffled)

        print(
            f"{len(rows)} rows, audio {MIN_SECONDS:g}-{min(MAX_SECONDS, window):g} s, summaries 5-120 words, "
            f"batch size {args.batch_size}, model {'tiny qwen2_audio (30 s window)' if not args.model else model_dir}"
        )
        orders = {"random": shuffled, "grouped": grouped}
        results = {name: padding(collate, rows, order, args.batch_size) for name, order in orders.items()}
        for name, seconds in step_times(model, collate, rows, orders, args.batch_size, args.steps).items():
            results[name]["step_seconds"] = seconds
        for name, r in results.items():
            print(
                f"  {name:8s} padded fraction {100 * r['padded_fraction']:5.1f}%   "
                f"LM positions/epoch {r['positions']:,}   step time {r['step_seconds'] * 1000:6.1f} ms "
                f"(median of {args.steps}, fwd+bwd)"
            )
        speedup = results["random"]["step_seconds"] / max(results["grouped"]["step_seconds"], 1e-9)
        print(
            f"  positions saved by grouping: "
            f"{100 * (1 - results['grouped']['positions'] / results['random']['positions']):.1f}%   "
            f"step-time ratio random/grouped: {speedup:.2f}x"
        )
        ok = results["grouped"]["padded_fraction"] <= TARGET_PADDED_FRACTION
        print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs during the run)")
        print(
            f"{'PASS' if ok else 'FAIL'}: grouped padded fraction "
            f"{100 * results['grouped']['padded_fraction']:.1f}% (target <= {100 * TARGET_PADDED_FRACTION:.0f}%)"
        )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
