"""Does ``speechsum summarize`` memory stay flat as recordings get longer?

Builds a tiny Qwen2-Audio model with 30 s windows (like the real one; a 60 min file = 120 windows)
unless ``--model`` is given, writes a short and a long 16 kHz mono PCM16 wav of espeak-ng speech,
runs ``speechsum summarize FILE --format json`` on each in a fresh process, and compares the peak
resident memory (RSS) and wall time of the two runs.

Target: peak RSS of the long run at most 1.5x the short one (audio is streamed window by window,
so memory must not grow with duration). Prints PASS/FAIL; exits non-zero on FAIL only with --check.

Reading the figures: with the tiny model most of the peak RSS is the torch/transformers baseline
(~450 MB), and wall time is dominated by start-up, so the wall ratio is far below the audio ratio.
A one-off rise of the peak over the first few batches (glibc raising its mmap threshold, then
keeping freed per-batch buffers on the heap) is not growth with duration: compare --long-minutes
10 against 60, or run with MALLOC_MMAP_THRESHOLD_=131072 to remove it.

    python benchmarks/summarize_long.py
    python benchmarks/summarize_long.py --short-minutes 2 --long-minutes 60 --model runs/dpo --check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
"""Rate of the generated recordings (what the audio encoders expect; no resampling in the run)."""
WRITE_BLOCK_SECONDS = 60
"""The generator writes the long file this much at a time."""
RSS_RATIO_TARGET = 1.5
"""Peak RSS long/short must stay at or below this."""
PARAGRAPH = (
    "Good morning everyone, and thank you for joining the quarterly planning meeting. "
    "Alice Chen opened the budget review at nine and walked us through the numbers: spending is "
    "four point two million dollars, slightly under plan. The team agreed to move the launch to "
    "March fourteenth because the vendor missed two deadlines, and to hire three engineers before "
    "the summer. Bob will send the vendor contract to Northwind by Friday. Carol drafts the "
    "proposal, Dan books the room for the design review, and everyone reads the report before "
    "next week. Questions about the roadmap go to the shared channel."
)


@dataclass
class Run:
    label: str
    audio_seconds: float
    wall_seconds: float
    peak_rss_bytes: int
    result: dict


def render_paragraph(workdir: Path) -> np.ndarray:
    """PARAGRAPH spoken once by espeak-ng, as int16 at SAMPLE_RATE."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install -y espeak-ng).")
    wav = workdir / "paragraph.wav"
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), PARAGRAPH], check=True)
    speech, rate = sf.read(wav, dtype="float32")
    speech = soxr.resample(speech, rate, SAMPLE_RATE)
    return (np.clip(speech, -1.0, 1.0) * 32767).astype(np.int16)


def write_speech(path: Path, minutes: float, paragraph: np.ndarray) -> float:
    """Write ``minutes`` of the paragraph, repeated, block by block; returns the duration in s."""
    total = int(round(minutes * 60 * SAMPLE_RATE))
    block = WRITE_BLOCK_SECONDS * SAMPLE_RATE
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16") as fh:
        for start in range(0, total, block):
            positions = np.arange(start, min(start + block, total)) % len(paragraph)
            fh.write(paragraph[positions])
    return total / SAMPLE_RATE


def summarize(label: str, audio: Path, seconds: float, model: Path, args, workdir: Path) -> Run:
    """Run ``speechsum summarize`` on ``audio`` in a child process; measure wall time, peak RSS.

    Peak RSS comes from ``os.wait4(pid)``: the kernel's ``ru_maxrss`` for exactly that child (and
    any descendants it reaped), read when we reap it. Alternatives and why not:
    ``getrusage(RUSAGE_CHILDREN)`` in this process is a running maximum over *every* child reaped
    so far (espeak-ng, the previous run), so the second measurement could report the first one's
    peak; psutil polling misses short spikes between samples; ``/usr/bin/time -v`` is the same
    ``wait4`` figure but is not installed everywhere. ``sys.executable -m speechsum_cli`` is the
    ``speechsum`` entry point without a shell shim (pyenv) in between.
    """
    cmd = [
        sys.executable,
        "-m",
        "speechsum_cli",
        "summarize",
        str(audio),
        "--model",
        str(model),
        "--max-new-tokens",
        str(args.max_new_tokens),
        "--no-progress",
        "--format",
        "json",
        "--device",
        "cpu",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out_path, err_path = workdir / f"{label}.json", workdir / f"{label}.stderr"
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    if proc.returncode != 0:
        tail = err_path.read_text(errors="replace")[-3000:]
        sys.exit(f"{label}: '{' '.join(cmd)}' exited {proc.returncode}:\n{tail}")
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Run(label, seconds, wall, peak, json.loads(out_path.read_text()))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--short-minutes", type=float, default=2.0, help="Length of the short recording.")
    add("--long-minutes", type=float, default=60.0, help="Length of the long recording.")
    add("--model", type=Path, help="Checkpoint dir (default: build a tiny Qwen2-Audio with 30 s windows).")
    add("--max-new-tokens", type=int, default=8, help="Generation budget per window/combine step.")
    add(
        "--threads",
        type=int,
        default=1,
        help="Torch/OpenMP threads per run (0 = library default); 1 keeps shared machines usable.",
    )
    add(
        "--workdir",
        type=Path,
        help="Keep the model and JSON outputs here; audio is deleted after each run (default: a temp dir, removed).",
    )
    add("--check", action="store_true", help=f"Exit 1 if peak RSS long/short > {RSS_RATIO_TARGET}.")
    return parser.parse_args()


def run_both(args: argparse.Namespace, workdir: Path) -> list[Run]:
    model = args.model
    if model is None:
        from speechsum_cli.families import get_family

        print("building tiny qwen2_audio model (30 s windows)...", file=sys.stderr)
        model = get_family("qwen2_audio").build_tiny(workdir / "tiny-qwen2-audio", window_seconds=30.0)
    print("rendering espeak-ng speech...", file=sys.stderr)
    paragraph = render_paragraph(workdir)
    runs: list[Run] = []
    for label, minutes in (("short", args.short_minutes), ("long", args.long_minutes)):
        audio = workdir / f"{label}_{minutes:g}min.wav"
        seconds = write_speech(audio, minutes, paragraph)
        print(f"summarizing {audio.name} ({seconds:.0f} s)...", file=sys.stderr)
        runs.append(summarize(label, audio, seconds, model, args, workdir))
        audio.unlink()  # the 60 min file is 115 MB; do not keep it around
    return runs


def report(runs: list[Run], args: argparse.Namespace) -> bool:
    """Print the table, the ratios and the PASS/FAIL line; True if the RSS target is met."""
    print(f"model: {args.model or 'tiny qwen2_audio, 30 s windows (built)'}   threads: {args.threads or 'default'}")
    header = (
        f"{'run':<6} {'audio s':>9} {'windows':>8} {'rounds':>7} {'wall s':>8} {'RTF':>7} "
        f"{'peak RSS MB':>12} {'encoded s':>11} {'duration s':>11}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        r = run.result
        print(
            f"{run.label:<6} {run.audio_seconds:>9.1f} {len(r['chunks']):>8d} "
            f"{r['reduce_rounds']:>7d} {run.wall_seconds:>8.1f} "
            f"{run.wall_seconds / run.audio_seconds:>7.4f} {run.peak_rss_bytes / 2**20:>12.1f} "
            f"{r['encoded_seconds']:>11.2f} {r['duration']:>11.2f}"
        )
    short, long = runs
    rss_ratio = long.peak_rss_bytes / short.peak_rss_bytes
    grown_mb = (long.peak_rss_bytes - short.peak_rss_bytes) / 2**20
    print()
    print(f"peak RSS long/short: {rss_ratio:.3f}   (+{grown_mb:.1f} MB)")
    print(
        f"wall long/short:     {long.wall_seconds / short.wall_seconds:.2f}   "
        f"(audio long/short: {long.audio_seconds / short.audio_seconds:.1f})"
    )
    for run in runs:
        encoded, duration = run.result["encoded_seconds"], run.result["duration"]
        lost = duration - encoded
        verdict = "nothing dropped" if abs(lost) < 1e-3 else f"{lost:.3f} s NOT ENCODED"
        print(f"{run.label}: encoded {encoded:.3f} s of {duration:.3f} s ({verdict})")
    passed = rss_ratio <= RSS_RATIO_TARGET
    print(f"peak RSS ratio <= {RSS_RATIO_TARGET}: {'PASS' if passed else 'FAIL'}")
    return passed


def main() -> int:
    args = parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="speechsum-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        runs = run_both(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    passed = report(runs, args)
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
