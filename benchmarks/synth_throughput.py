"""``speechsum synth`` throughput and memory against a local OpenAI-compatible server.

A fake server (tests/fake_openai.py, in its own process) answers every request after ``--latency``
seconds (default 0.1 s, like a fast hosted model). Prints rows/s at each concurrency for ``--rows``
rows (cache off), the speed-up over concurrency 1, and the peak RSS of a ``--big``-row run of the
real CLI in a subprocess (issue #3 targets: >= 20x at concurrency 32; < 1 GB at 100k rows).

    python benchmarks/synth_throughput.py                      # 2,000 rows x (1, 8, 32, 64) + 100k RSS
    python benchmarks/synth_throughput.py --rows 500 --big 0   # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TRANSCRIPT = (
    "Alice opened the weekly planning meeting at nine and reviewed the budget of {i} thousand "
    "dollars. Bob reported that the vendor missed two deadlines, so the launch moves to March. "
    "The team agreed to hire three engineers and to review the Northwind contract next week. "
    "Carol will draft the proposal by Friday and Dan will book the room for the workshop. "
) * 3


def serve(latency: float, port_queue: mp.Queue, stop: mp.Event) -> None:
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(latency=latency) as server:
        port_queue.put(server.base_url)
        stop.wait()
        port_queue.put(server.requests)


def write_corpus(path: Path, recordings: int) -> Path:
    with open(path, "w") as fh:
        fh.writelines(
            json.dumps({"id": f"rec{i:05d}", "audio": f"audio/rec{i:05d}.wav", "transcript": TRANSCRIPT.format(i=i)})
            + "\n"
            for i in range(recordings)
        )
    return path


def throughput(corpus: Path, base_url: str, rows: int, concurrency: int, work: Path) -> float:
    from speechsum_cli.llm.config import LLMConfig
    from speechsum_cli.stages.synth import SynthConfig, run

    out = work / f"out-c{concurrency}"
    config = SynthConfig(
        data=corpus,
        out=out,
        n=rows,
        per_audio=1,
        show_progress=False,
        llm=LLMConfig(
            base_url=base_url,
            model="bench",
            concurrency=concurrency,
            cache_dir=None,
            prices={"bench": (2.0, 8.0)},
            max_retries=2,
        ),
    )
    started = time.perf_counter()
    result = run(config)
    elapsed = time.perf_counter() - started
    assert result.complete and result.counts["written"] == rows, result.counts
    return rows / elapsed


def peak_rss_of_cli(corpus: Path, base_url: str, rows: int, concurrency: int, work: Path) -> tuple[float, float, dict]:
    """(peak RSS MiB, wall seconds, counts) of ``speechsum synth`` in a fresh process."""
    out = work / "out-big"
    cmd = [
        sys.executable,
        "-m",
        "speechsum_cli",
        "synth",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--n",
        str(rows),
        "--base-url",
        base_url,
        "--model",
        "bench",
        "--no-cache",
        "--no-progress",
        "--concurrency",
        str(concurrency),
        "--price-in",
        "2",
        "--price-out",
        "8",
        "--json",
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"big run failed:\n{proc.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    payload = json.loads(proc.stdout)
    return peak_kib / 1024, wall, payload["counts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="rows per concurrency level (0 = skip)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--latency", type=float, default=0.1, help="server seconds per request")
    parser.add_argument("--big", type=int, default=100_000, help="rows of the peak-RSS run (0 = skip)")
    parser.add_argument("--big-latency", type=float, default=0.0, help="server latency for the big run")
    parser.add_argument("--big-concurrency", type=int, default=64)
    args = parser.parse_args()
    from speechsum_cli.cli.common import quiet_libraries

    quiet_libraries()

    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        work = Path(tmp)
        corpus = write_corpus(work / "corpus.jsonl", max(args.rows, 2000))
        ctx = mp.get_context("spawn")
        for latency, phase in ((args.latency, "throughput"), (args.big_latency, "memory")):
            if (phase == "memory" and not args.big) or (phase == "throughput" and not args.rows):
                continue
            queue, stop = ctx.Queue(), ctx.Event()
            server = ctx.Process(target=serve, args=(latency, queue, stop), daemon=True)
            server.start()
            base_url = queue.get(timeout=30)
            try:
                if phase == "throughput":
                    print(f"server latency {latency * 1000:.0f} ms, {args.rows} rows per level, cache off")
                    rates = {}
                    for c in args.concurrency:
                        rates[c] = throughput(corpus, base_url, args.rows, c, work)
                        ratio = f"  {rates[c] / rates[args.concurrency[0]]:5.1f}x vs c={args.concurrency[0]}"
                        print(f"concurrency {c:3d}: {rates[c]:8.1f} rows/s{ratio}", flush=True)
                else:
                    mib, wall, counts = peak_rss_of_cli(corpus, base_url, args.big, args.big_concurrency, work)
                    print(
                        f"{args.big:,} rows (server latency {latency * 1000:.0f} ms, concurrency "
                        f"{args.big_concurrency}): peak RSS {mib:.0f} MiB, wall {wall:.0f} s "
                        f"({args.big / wall:.0f} rows/s); written {counts['written']:,}, failed "
                        f"{counts['failed']:,}, near-duplicate queries {counts['deduplicated']:,} "
                        f"(the fake server's queries differ only by a 10-character digest)",
                        flush=True,
                    )
            finally:
                stop.set()
                server.join(timeout=10)
                if server.is_alive():
                    server.terminate()


if __name__ == "__main__":
    main()
