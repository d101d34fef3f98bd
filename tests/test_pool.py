"""The async worker pool behind synth (writer and TTS) and the judges' batch: concurrency bound,
order, clean stop, errors raised after the jobs in flight finish, cancellation."""

from __future__ import annotations

import asyncio
import sys

import pytest

from speechsum_cli.llm.pool import run_pool


class Stop(Exception):
    """Stands for BudgetExceeded."""


def test_at_most_concurrency_jobs_in_flight_and_every_job_once_in_order():
    started: list[int] = []
    done: list[int] = []
    in_flight = peak = 0

    async def handle(job: int) -> None:
        nonlocal in_flight, peak
        started.append(job)
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(job % 3 + 1):  # uneven durations
            await asyncio.sleep(0)
        in_flight -= 1
        done.append(job)

    assert asyncio.run(run_pool(range(20), handle, concurrency=3)) is None
    assert peak == 3
    assert started == list(range(20))
    assert sorted(done) == list(range(20))


def test_a_stop_hands_out_no_further_job_and_keeps_the_jobs_in_flight():
    started: list[int] = []
    done: list[int] = []
    budget = Stop("budget reached")

    async def handle(job: int) -> None:
        started.append(job)
        if job == 1:
            raise budget
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # job 0 is still in flight when job 1 stops the pool
        done.append(job)

    stopped = asyncio.run(run_pool(range(10), handle, concurrency=2, stop_on=(Stop,)))
    assert stopped is budget
    assert started == [0, 1]
    assert done == [0]


def test_a_stop_before_the_first_await_starts_no_other_worker():
    started: list[int] = []

    async def handle(job: int) -> None:
        started.append(job)
        raise Stop

    assert isinstance(asyncio.run(run_pool(range(10), handle, concurrency=4, stop_on=(Stop,))), Stop)
    assert started == [0]


def test_an_error_is_raised_after_the_jobs_in_flight_finish():
    started: list[int] = []
    done: list[int] = []

    async def handle(job: int) -> None:
        started.append(job)
        if job == 1:
            raise ValueError("job 1 broke")
        await asyncio.sleep(0.05)  # job 0 is in flight when job 1 fails
        done.append(job)

    with pytest.raises(ValueError, match="job 1 broke"):
        asyncio.run(run_pool(range(10), handle, concurrency=2, stop_on=(Stop,)))
    assert started == [0, 1]
    assert done == [0]  # the result of the job in flight is not lost


def test_an_error_wins_over_an_earlier_stop():
    stops: list[int] = []

    async def handle(job: int) -> None:
        await asyncio.sleep(0)
        if job == 0:
            stops.append(job)
            raise Stop
        await asyncio.sleep(0)  # job 1 is still in flight when job 0 stops the pool
        raise ValueError("bad key")

    with pytest.raises(ValueError, match="bad key"):
        asyncio.run(run_pool(range(5), handle, concurrency=2, stop_on=(Stop,)))
    assert stops == [0]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="add_note is Python 3.11+")
def test_further_errors_are_counted_on_the_first():
    async def handle(job: int) -> None:
        await asyncio.sleep(0)
        raise KeyError(job) if job else ValueError("first")

    with pytest.raises(ValueError, match="first") as info:
        asyncio.run(run_pool(range(9), handle, concurrency=3))
    assert info.value.__notes__ == ["2 more job(s) in flight also raised (KeyError)"]


def test_a_failing_job_source_is_raised_after_the_jobs_in_flight_finish():
    def jobs():
        yield 0
        raise RuntimeError("corpus row missing")

    done: list[int] = []

    async def handle(job: int) -> None:
        await asyncio.sleep(0.05)  # job 0 is in flight when the second worker finds the source broken
        done.append(job)

    with pytest.raises(RuntimeError, match="corpus row missing"):
        asyncio.run(run_pool(jobs(), handle, concurrency=2))
    assert done == [0]


def test_cancellation_cancels_the_jobs_in_flight_and_starts_no_more():
    started: list[int] = []
    cancelled: list[int] = []

    async def handle(job: int) -> None:
        started.append(job)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(job)
            raise

    async def main() -> None:
        task = asyncio.create_task(run_pool(range(10), handle, concurrency=3))
        while len(started) < 3:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert started == [0, 1, 2]
    assert sorted(cancelled) == [0, 1, 2]


def test_concurrency_below_one_is_refused_not_a_silent_no_op():
    async def handle(job: int) -> None:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        asyncio.run(run_pool(range(3), handle, concurrency=0))
