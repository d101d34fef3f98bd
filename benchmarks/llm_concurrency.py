"""Fixed vs adaptive (AIMD) concurrency of the LLM client against a server of fixed capacity.

Starts tests/fake_openai.py in-process as a server that works on at most ``--capacity`` requests
at a time and either answers HTTP 429 beyond that (``--over-capacity 429``, a rate-limited API) or
queues the rest serially so the client times out (``--over-capacity queue``, ``transformers
serve``). Sends ``--calls`` judge-style calls through the one client (``llm.batch.run_calls``) at
``--concurrency`` in flight, fixed and adaptive alternately in one run (A, B, A, B, ...), and prints
per round and as medians: throughput (completed calls/s), failed calls, requests sent, 429s and
time-outs, and the adaptive/fixed ratios.

    python benchmarks/llm_concurrency.py                                   # 429s, capacity 4, 64 in flight
    python benchmarks/llm_concurrency.py --over-capacity queue --capacity 1 --concurrency 8 \\
        --latency 0.15 --timeout 0.5 --calls 24                            # a serial server
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SCHEMA = {"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}


@dataclass
class Round:
    seconds: float
    completed: int
    failed: int
    requests: int
    rate_limited: int
    timeouts: int
    lowest: int

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds


def one_round(args: argparse.Namespace, *, adaptive: bool) -> Round:
    from speechsum_cli.llm.batch import run_calls
    from speechsum_cli.llm.config import LLMConfig
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(latency=args.latency, capacity=args.capacity, over_capacity=args.over_capacity) as server:
        config = LLMConfig(
            base_url=server.base_url,
            model="bench",
            prices={"bench": (0.0, 0.0)},
            concurrency=args.concurrency,
            adaptive_concurrency=adaptive,
            timeout=args.timeout,
            max_retries=args.max_retries,
            timeout_retries=args.timeout_retries,
        )
        calls = {i: [{"role": "user", "content": f"call {i}"}] for i in range(args.calls)}
        started = time.perf_counter()
        batch = run_calls(config, calls, SCHEMA, prompt_version="bench", concurrency=args.concurrency)
        seconds = time.perf_counter() - started
        record = batch.concurrency
        return Round(
            seconds,
            sum(c.ok for c in batch.results.values()),
            len(batch.failed),
            server.requests,
            record["rate_limited"],
            record["timeouts"],
            record["lowest"],
        )


def describe(name: str, r: Round) -> str:
    return (
        f"{name:8s} {r.throughput:7.1f} calls/s  {r.completed:4d} ok  {r.failed:3d} failed  "
        f"{r.requests:5d} requests  {r.rate_limited:4d} x 429  {r.timeouts:4d} time-outs  "
        f"lowest limit {r.lowest}  ({r.seconds:.1f} s)"
    )


def ratio(adaptive: float, fixed: float) -> str:
    return f"{adaptive / fixed:.2f}x" if fixed else ("=" if adaptive == fixed else "inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=4, help="Requests the server works on at once.")
    parser.add_argument("--over-capacity", choices=("429", "queue"), default="429")
    parser.add_argument("--latency", type=float, default=0.1, help="Seconds the server takes per request.")
    parser.add_argument("--concurrency", type=int, default=64, help="The client's --concurrency (the ceiling).")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--max-retries", type=int, default=5)
    parser.add_argument("--timeout-retries", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="Pairs of (fixed, adaptive) runs.")
    args = parser.parse_args()

    print(
        f"server: capacity {args.capacity}, {args.latency:g} s per request, over capacity: "
        f"{args.over_capacity}; client: {args.calls} calls, --concurrency {args.concurrency}, "
        f"timeout {args.timeout:g} s, {args.max_retries} retries + {args.timeout_retries} time-out retries"
    )
    rounds: dict[bool, list[Round]] = {False: [], True: []}
    for i in range(args.rounds):
        for adaptive in (False, True):  # interleaved: A, B, A, B
            r = one_round(args, adaptive=adaptive)
            rounds[adaptive].append(r)
            print(f"round {i + 1} " + describe("adaptive" if adaptive else "fixed", r), flush=True)
    fixed, adaptive = rounds[False], rounds[True]

    def median(runs: list[Round], field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    print(
        "adaptive / fixed (medians): "
        f"throughput {ratio(median(adaptive, 'throughput'), median(fixed, 'throughput'))}, "
        f"failed {median(adaptive, 'failed'):g} vs {median(fixed, 'failed'):g}, "
        f"requests {ratio(median(adaptive, 'requests'), median(fixed, 'requests'))}, "
        f"429s {ratio(median(adaptive, 'rate_limited'), median(fixed, 'rate_limited'))}, "
        f"time-outs {ratio(median(adaptive, 'timeouts'), median(fixed, 'timeouts'))}"
    )


if __name__ == "__main__":
    main()
