"""``speechsum synth`` end to end: a fake OpenAI-compatible server for the pipeline and its fault
paths (cache, budget, dry run, resume after kill -9, key hygiene) and a real ``transformers
serve`` with a tiny local model for the HTTP round-trip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.data.dataset import load_rows
from speechsum_cli.errors import InputError
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.prompts.styles import styles
from speechsum_cli.prompts.synth import draw_facets, synth_prompt_version
from speechsum_cli.stages.synth import Deduplicator, Plan, SynthConfig, run
from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-proj-TOPSECRET-abcdef0123456789"


def write_corpus(path: Path, n: int = 5, *, missing: tuple[int, ...] = ()) -> Path:
    rows = [
        {
            "id": f"talk{i}",
            "audio": f"audio/talk{i}.wav",
            "transcript": None
            if i in missing
            else f"Alice opened meeting {i}. We agreed to ship version {i} on Friday. Bob will email the vendor.",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def config(tmp_path: Path, server: FakeOpenAI, **overrides) -> SynthConfig:
    llm_fields = dict(
        base_url=server.base_url,
        model="fake",
        concurrency=4,
        max_retries=1,
        timeout=5.0,
        cache_dir=tmp_path / "cache",
        prices={"fake": (2.0, 8.0)},
    )
    llm_fields.update(overrides.pop("llm", {}))
    corpus = tmp_path / "corpus.jsonl"
    fields = dict(
        data=corpus if corpus.exists() else write_corpus(corpus),
        out=tmp_path / "out",
        llm=LLMConfig(**llm_fields),
        show_progress=False,
    )
    fields.update(overrides)
    return SynthConfig(**fields)


def manifest(out: Path) -> dict:
    return json.loads((out / "speechsum.json").read_text())


def cli(tmp_path: Path, server: FakeOpenAI, *args: str) -> list[str]:
    if not (tmp_path / "corpus.jsonl").exists():
        write_corpus(tmp_path / "corpus.jsonl")
    return [
        "synth",
        "--data",
        str(tmp_path / "corpus.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--base-url",
        server.base_url,
        "--llm",
        "fake",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--price-in",
        "2",
        "--price-out",
        "8",
        "--no-progress",
        *args,
    ]


# -- pure parts ---------------------------------------------------------------------------------


def test_facets_are_seeded_distinct_and_cover_the_presets():
    a = draw_facets(7, "talk1", 7)
    assert a == draw_facets(7, "talk1", 7)
    assert a != draw_facets(8, "talk1", 7)
    assert len(set(a)) == 7
    assert {f.style for f in a} == set(styles())  # every preset once before any repeats
    longer = draw_facets(7, "talk1", 30)
    assert longer[:7] == a and len(set(longer)) == 30


def test_plan_cycles_through_the_corpus_with_unique_ids():
    plan = Plan([0, 1, 2], ["a", "b", "c"], n=14, per_audio=2, seed=0)
    jobs = [plan.job(j) for j in range(14)]
    ids = [j.row_id for j in jobs]
    assert len(set(ids)) == 14
    assert Counter(j.source_id for j in jobs) == {
        plan.source_ids[plan.order[0]]: 6,
        plan.source_ids[plan.order[1]]: 4,
        plan.source_ids[plan.order[2]]: 4,
    }
    first = [j for j in jobs if j.source_id == "a"]
    assert len({j.facets for j in first}) == len(first)


def test_near_duplicate_queries_per_recording():
    dedup = Deduplicator(90.0)
    dedup.keep(0, "Summarize the meeting in 3 bullets.")
    assert dedup.is_duplicate(0, "summarize the meeting in 3 bullets")
    assert dedup.is_duplicate(0, "Summarise the meeting in 3 bullets!")
    assert not dedup.is_duplicate(0, "What did Bob promise to the vendor?")
    assert not dedup.is_duplicate(1, "Summarize the meeting in 3 bullets.")  # other recording


# -- the pipeline against the fake server ---------------------------------------------------------


def test_happy_path_dataset_that_sft_can_read(tmp_path, server):
    result = run(config(tmp_path, server, n=12, per_audio=2))
    assert result.complete and server.requests == 12
    ds = load_rows(tmp_path / "out")
    assert len(ds) == 12 and len(set(ds["id"])) == 12
    for column in (
        "id",
        "source_id",
        "audio",
        "transcript",
        "query",
        "style",
        "summary",
        "length",
        "focus",
        "audience",
        "tone",
        "importance",
        "prompt_version",
    ):
        assert column in ds.column_names
    row = ds[0]
    assert row["id"].startswith(row["source_id"] + "#")
    assert row["audio"] == str(tmp_path / "audio" / f"{row['source_id']}.wav")
    assert row["source_id"].replace("talk", "meeting ") in row["transcript"]
    assert row["style"] in styles() and set(ds["prompt_version"]) == {synth_prompt_version()}
    per_source = Counter(ds["source_id"])
    assert sorted(per_source.values()) == [2, 2, 2, 2, 4]  # 10 per pass, then 2 more
    m = manifest(tmp_path / "out")
    assert m["stage"] == "synth" and m["complete"] is True
    assert m["counts"]["requested"] == 12 and m["counts"]["written"] == 12
    assert m["metrics"]["usage"]["requests"] == 12 and m["metrics"]["usage"]["cost_usd"] > 0
    assert not (tmp_path / ".out.partial").exists()


def test_failures_filters_and_duplicates_are_counted_never_dropped(tmp_path, server):
    def responder(messages):
        prompt = messages[1]["content"]
        if "meeting 0" in prompt:
            return "not json at all"
        importance = 1 if "meeting 1" in prompt else 5
        return json.dumps(
            {"query": "Summarize this recording.", "summary": "- Ship on Friday.", "importance": importance}
        )

    server.responder = responder
    result = run(
        config(tmp_path, server, n=10, per_audio=2, min_importance=3, llm={"json_retries": 1, "max_failed_share": 0.5})
    )
    c = result.counts
    assert c["failed_by_reason"] == {"invalid JSON": 2}
    assert c["filtered_importance"] == 2
    assert c["deduplicated"] == 3  # talk2..talk4 each asked twice for the same query
    assert c["written"] == 3
    assert c["written"] + c["failed"] + c["filtered_importance"] + c["deduplicated"] == c["requested"]
    assert manifest(tmp_path / "out")["counts"] == c


def test_http_errors_after_retries_become_failed_rows(tmp_path, server):
    server.fail_next(*["500"] * 2)
    result = run(config(tmp_path, server, n=3, llm={"max_retries": 1, "concurrency": 1, "max_failed_share": 0.5}))
    assert result.counts["failed_by_reason"] == {"HTTP 500": 1}
    assert result.counts["written"] == 2


def test_nothing_listening_fails_loudly_and_leaves_nothing_that_looks_finished(tmp_path):
    """Connection refused on every request: exit 3 with the first error and the counts by reason,
    and no --out (a recipe skips a stage whose output exists)."""
    write_corpus(tmp_path / "corpus.jsonl", n=3)
    args = [
        "synth",
        "--data",
        str(tmp_path / "corpus.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--llm",
        "fake",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-retries",
        "0",
        "--no-progress",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    message = " ".join(result.output.split())
    assert "nothing answers at http://127.0.0.1:9/v1: 3 requests could not connect (Connection error." in message
    assert "Start the server or fix --base-url" in message
    assert not (tmp_path / "out").exists()
    again = CliRunner().invoke(app, args)  # still nothing: the same failure, not a finished output
    assert again.exit_code == 3 and not (tmp_path / "out").exists()


def test_an_endpoint_that_never_answers_stops_the_run_after_three_calls(tmp_path):
    """A server that accepts and drops every connection: without the stop, each of the 20 calls
    would spend its retries the same way; with it, three calls show nothing will answer."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def drop_every_connection() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    threading.Thread(target=drop_every_connection, daemon=True).start()
    try:
        write_corpus(tmp_path / "corpus.jsonl", n=20)
        base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        result = CliRunner().invoke(
            app,
            [
                "synth",
                "--data",
                str(tmp_path / "corpus.jsonl"),
                "--out",
                str(tmp_path / "out"),
                "--base-url",
                base_url,
                "--llm",
                "fake",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--max-retries",
                "0",
                "--concurrency",
                "1",
                "--no-progress",
            ],
        )
    finally:
        listener.close()
    assert result.exit_code == 3, result.output
    assert f"nothing answers at {base_url}: 3 requests could not connect" in " ".join(result.output.split())
    assert len(accepted) == 3  # 20 without the stop
    assert not (tmp_path / "out").exists()


def test_partial_failure_writes_warns_and_retry_failed_resends_only_those(tmp_path, server):
    server.fail_next("500", "500")  # the first request fails for good (1 retry)
    first = CliRunner().invoke(app, cli(tmp_path, server, "--n", "10", "--concurrency", "1", "--max-retries", "1"))
    assert first.exit_code == 0, first.output
    assert "1 of 10 requests failed (HTTP 500: 1); first error: HTTP 500: boom" in first.output
    assert "run the same command with --retry-failed" in first.output
    assert len(load_rows(tmp_path / "out")) == 9
    assert manifest(tmp_path / "out")["llm_failures"]["failed"] == 1
    assert (tmp_path / ".out.partial").exists()  # the failed row waits there for --retry-failed
    sent = server.requests
    retried = CliRunner().invoke(app, cli(tmp_path, server, "--n", "10", "--retry-failed"))
    assert retried.exit_code == 0, retried.output
    assert server.requests == sent + 1, "only the failed request is sent again"
    assert len(load_rows(tmp_path / "out")) == 10
    assert manifest(tmp_path / "out")["llm_failures"]["failed"] == 0
    assert not (tmp_path / ".out.partial").exists()
    nothing = CliRunner().invoke(app, cli(tmp_path, server, "--n", "10", "--retry-failed"))
    assert nothing.exit_code == 1 and "nothing to retry" in nothing.output


def test_too_many_failures_fail_the_run_unless_the_share_is_raised(tmp_path, server):
    server.fail_next(*["500"] * 6)  # 3 requests x (1 try + 1 retry)
    args = cli(tmp_path, server, "--n", "10", "--concurrency", "1", "--max-retries", "1")
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code == 3, failed.output
    assert (
        "too many requests failed (30% > --max-failed-share 0.1): 3 of 10 requests failed (HTTP 500: 3)"
        in failed.output
    )
    assert not (tmp_path / "out").exists()
    sent = server.requests
    accepted = CliRunner().invoke(app, [*args, "--max-failed-share", "0.5"])
    assert accepted.exit_code == 0, accepted.output
    assert server.requests == sent  # the finished rows are reused: nothing is sent again
    assert len(load_rows(tmp_path / "out")) == 7


def test_retry_failed_asks_again_where_the_cache_holds_an_invalid_reply(tmp_path, server):
    server.fail_next("garbage")
    args = cli(tmp_path, server, "--n", "10", "--concurrency", "1", "--json-retries", "0")
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0 and "1 of 10 requests failed (invalid JSON: 1)" in first.output
    retried = CliRunner().invoke(app, [*args, "--retry-failed"])
    assert retried.exit_code == 0, retried.output
    assert server.requests == 11  # the cached garbage was not replayed
    assert len(load_rows(tmp_path / "out")) == 10


def test_rerun_is_served_from_the_cache(tmp_path, server):
    runner = CliRunner()
    first = runner.invoke(app, cli(tmp_path, server, "--n", "8"))
    assert first.exit_code == 0, first.output
    assert server.requests == 8
    again = runner.invoke(app, cli(tmp_path, server, "--n", "8"))
    assert again.exit_code == 1 and "already exists" in again.output
    second = runner.invoke(app, cli(tmp_path, server, "--n", "8", "--overwrite"))
    assert second.exit_code == 0, second.output
    assert server.requests == 8, "a re-run must send zero requests"
    assert "0 requests, 8 cache hits" in second.output
    assert len(load_rows(tmp_path / "out")) == 8


def test_dry_run_sends_nothing_and_writes_nothing(tmp_path, server):
    write_corpus(tmp_path / "corpus.jsonl")
    result = CliRunner().invoke(app, cli(tmp_path, server, "--n", "20", "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "dry run: 20 rows -> 20 requests (0 cached)" in result.output
    assert "input" in result.output and "$" in result.output
    assert server.requests == 0
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_max_cost_stops_cleanly_and_resumes(tmp_path, server):
    server.usage = (1000, 1000)  # $0.01 per request at $2/$8 per 1M
    cfg = config(tmp_path, server, n=10, llm={"max_cost": 0.035, "concurrency": 1})
    stopped = run(cfg)
    assert not stopped.complete and stopped.stopped == "budget"
    m = manifest(tmp_path / "out")
    assert m["complete"] is False and m["stopped"] == "budget"
    assert m["counts"]["written"] == 3 and m["counts"]["remaining"] == 7
    assert m["metrics"]["usage"]["cost_usd"] <= 0.035
    assert len(load_rows(tmp_path / "out")) == 3  # what it has is written
    resumed = run(config(tmp_path, server, n=10, llm={"max_cost": 1.0, "concurrency": 1}))
    assert resumed.complete and server.requests == 10
    ids = load_rows(tmp_path / "out")["id"]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert manifest(tmp_path / "out")["metrics"]["usage"]["cost_usd"] == pytest.approx(0.1)


def test_missing_transcripts_error_or_skip(tmp_path, server):
    write_corpus(tmp_path / "corpus.jsonl", missing=(1, 3))
    cfg = config(tmp_path, server, data=tmp_path / "corpus.jsonl")
    with pytest.raises(InputError, match=r"2 row\(s\) without a transcript: talk1, talk3. .*--skip-missing"):
        run(cfg)
    assert server.requests == 0
    result = run(config(tmp_path, server, data=tmp_path / "corpus.jsonl", skip_missing=True))
    assert result.counts["skipped_missing_transcript"] == 2 and result.counts["written"] == 3
    assert "talk1" not in set(load_rows(tmp_path / "out")["source_id"])


def test_changed_settings_refuse_to_mix_with_unfinished_work(tmp_path, server):
    server.usage = (1000, 1000)
    run(config(tmp_path, server, n=6, llm={"max_cost": 0.025, "concurrency": 1}))
    with pytest.raises(InputError, match=r"different settings \(seed\).*--restart"):
        run(config(tmp_path, server, n=6, seed=1, llm={"concurrency": 1}))


def test_column_maps_and_sidecar_folder(tmp_path, server):
    rows = [{"key": f"r{i}", "wav": f"r{i}.wav", "text": f"Talk number {i} about budgets."} for i in range(3)]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(
        app,
        cli(
            tmp_path,
            server,
            "--data",
            str(tmp_path / "other.jsonl"),
            "--id-column",
            "key",
            "--audio-column",
            "wav",
            "--transcript-column",
            "text",
        ),
    )
    assert result.exit_code == 0, result.output
    assert sorted(load_rows(tmp_path / "out")["source_id"]) == ["r0", "r1", "r2"]


def test_the_key_never_reaches_output_manifest_or_stderr(tmp_path, server, monkeypatch):
    monkeypatch.setenv("SYNTH_TEST_KEY", SECRET)
    write_corpus(tmp_path / "corpus.jsonl")
    server.fail_next(*["echo-auth"] * 2)  # a proxy that echoes the Authorization header
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechsum_cli",
            *cli(
                tmp_path,
                server,
                "--n",
                "4",
                "--api-key-env",
                "SYNTH_TEST_KEY",
                "--max-retries",
                "1",
                "--concurrency",
                "1",
                "--max-failed-share",
                "0.5",
            ),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SYNTH_TEST_KEY": SECRET},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert server.auth_headers[0] == f"Bearer {SECRET}"
    assert "HTTP 502: 1" in proc.stdout
    m = manifest(tmp_path / "out")
    assert m["config"]["llm"]["api_key_env"] == "SYNTH_TEST_KEY"
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    for text in [proc.stdout, proc.stderr] + [p.read_bytes().decode("latin-1") for p in files]:
        assert SECRET not in text
    server.fail_next("401")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechsum_cli",
            *cli(tmp_path, server, "--n", "4", "--api-key-env", "SYNTH_TEST_KEY", "--overwrite", "--no-cache"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SYNTH_TEST_KEY": SECRET},
        timeout=120,
    )
    assert proc.returncode == 1 and "Error:" in proc.stderr and "HTTP 401" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout


def test_resume_after_kill_9(tmp_path):
    write_corpus(tmp_path / "corpus.jsonl", n=10)
    n = 60
    with FakeOpenAI(latency=0.05) as server:
        args = [
            sys.executable,
            "-m",
            "speechsum_cli",
            *cli(tmp_path, server, "--n", str(n), "--per-audio", "3", "--concurrency", "2"),
        ]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while server.requests < 20 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not (tmp_path / "out").exists(), "a killed run must not leave an output that looks complete"
        partial = tmp_path / ".out.partial"
        shards = list(partial.glob("shard-*.jsonl"))
        finished = sum(len(p.read_text().splitlines()) for p in shards)
        assert 0 < finished < n
        with open(shards[0], "a") as fh:  # what a kill during a write leaves behind
            fh.write('{"job": 59, "id": "torn')
        before = server.requests
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        sent_again = server.requests - before
        # only unfinished jobs are sent (in-flight ones at kill time come from the cache)
        assert sent_again <= n - finished
    ds = load_rows(tmp_path / "out")
    expected = {f"talk{i}#{k}" for i in range(10) for k in range(6)}
    assert len(ds["id"]) == len(set(ds["id"])) == n
    assert set(ds["id"]) == expected
    m = manifest(tmp_path / "out")
    assert m["complete"] is True and m["counts"]["written"] == n and m["counts"]["finished"] == n
    assert not partial.exists()


# -- a real OpenAI-compatible server: transformers serve (tests/conftest.py) ---------------------


@pytest.mark.slow
def test_real_server_round_trip_records_invalid_json_with_reason(tmp_path, transformers_server):
    """A random tiny LM cannot write JSON: every request must still go over HTTP, token usage must
    be counted, and every row must be recorded as failed with reason 'invalid JSON' — none dropped."""
    base_url, model_dir = transformers_server
    write_corpus(tmp_path / "corpus.jsonl", n=3)
    result = CliRunner().invoke(
        app,
        [
            "synth",
            "--data",
            str(tmp_path / "corpus.jsonl"),
            "--out",
            str(tmp_path / "out"),
            "--base-url",
            base_url,
            "--llm",
            model_dir,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json-retries",
            "1",
            "--max-tokens",
            "16",
            "--concurrency",
            "2",
            "--no-progress",
            "--json",
        ],
    )
    assert result.exit_code == 3, result.output  # nothing usable: no output, the records kept
    assert "every request failed: 3 of 3 requests failed (invalid JSON: 3)" in result.output
    assert not (tmp_path / "out").exists()
    records = [
        json.loads(line)
        for shard in sorted((tmp_path / ".out.partial").glob("shard-*.jsonl"))
        for line in shard.read_text().splitlines()
    ]
    assert [r["status"] for r in records] == ["failed"] * 3
    assert all(r["reason"].startswith("invalid JSON") for r in records)
    assert sum(r["requests"] for r in records) == 6  # 3 rows x (1 try + 1 repair turn)
    assert sum(r["input_tokens"] for r in records) > 100 and sum(r["output_tokens"] for r in records) > 0


def test_tts_espeak_turns_a_text_corpus_into_speech(tmp_path, server):
    import soundfile as sf

    rows = [{"id": f"doc/{i}", "transcript": f"Notes number {i}. The budget was approved."} for i in range(2)]
    (tmp_path / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    no_tts = config(tmp_path, server, data=tmp_path / "text.jsonl", per_audio=2)
    with pytest.raises(InputError, match="no column 'audio'.*--tts espeak"):
        run(no_tts)
    result = run(config(tmp_path, server, data=tmp_path / "text.jsonl", per_audio=2, tts="espeak"))
    assert result.complete and result.counts["written"] == 4
    ds = load_rows(tmp_path / "out")
    paths = set(ds["audio"])
    assert len(paths) == 2  # one recording per source, shared by its rows
    for path in paths:
        assert Path(path).is_relative_to(tmp_path / "out" / "audio")
        info = sf.info(path)
        assert info.frames / info.samplerate > 1.0


@pytest.mark.slow
def test_synth_output_trains_with_sft(tmp_path, server, tiny_models):
    """The contract end to end: a text corpus -> synth (--tts espeak) -> sft reads and trains on it."""
    rows = [{"id": f"n{i}", "transcript": f"Meeting {i}. The budget was approved."} for i in range(2)]
    (tmp_path / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(config(tmp_path, server, data=tmp_path / "text.jsonl", per_audio=2, tts="espeak")).complete
    result = CliRunner().invoke(
        app,
        [
            "sft",
            "--data",
            str(tmp_path / "out"),
            "--model",
            str(tiny_models("qwen2_audio")),
            "--out",
            str(tmp_path / "sft"),
            "--max-steps",
            "1",
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    record = manifest(tmp_path / "sft")
    assert record["counts"]["train_rows"] == 4
    assert record["inputs"][0]["manifest"]["stage"] == "synth"  # lineage


def test_tts_openai_speaks_through_the_endpoint_with_cache(tmp_path, server):
    import soundfile as sf

    rows = [{"id": f"doc{i}", "transcript": f"Notes number {i}. The budget was approved."} for i in range(3)]
    (tmp_path / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(tmp_path, server, data=tmp_path / "text.jsonl", per_audio=2, tts="openai:tts-1")
    result = run(cfg)
    assert result.complete and result.counts["written"] == 6
    assert sorted(server.speech_inputs) == sorted(r["transcript"] for r in rows)  # once per recording
    tts = result.usage["tts"]
    assert tts["requests"] == 3 and tts["cost_usd"] == pytest.approx(sum(len(r["transcript"]) for r in rows) * 15 / 1e6)
    ds = load_rows(tmp_path / "out")
    assert len(set(ds["audio"])) == 3
    assert all(sf.info(p).duration >= 0.5 for p in set(ds["audio"]))
    assert manifest(tmp_path / "out")["metrics"]["usage"]["tts"]["requests"] == 3
    before = server.requests
    again = run(config(tmp_path, server, data=tmp_path / "text.jsonl", per_audio=2, tts="openai:tts-1", overwrite=True))
    assert again.complete and server.requests == before and again.usage["tts"]["cache_hits"] == 3
    with pytest.raises(InputError, match="--tts 'openai:' is not supported"):
        run(config(tmp_path, server, data=tmp_path / "text.jsonl", tts="openai:", overwrite=True))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_start_the_server_then_the_same_command_finishes_the_run(tmp_path):
    """Issue 28: the error says 'start the server, then run the same command again'; doing exactly
    that failed again (2 of 8 requests failed ... --retry-failed), the calls that could not
    connect having been kept as failed rows, which the first message called finished rows."""
    port = free_port()
    write_corpus(tmp_path / "corpus.jsonl", n=8)
    args = [
        "synth",
        "--data",
        str(tmp_path / "corpus.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--llm",
        "fake",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-retries",
        "0",
        "--concurrency",
        "4",
        "--no-progress",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 3, first.output
    message = " ".join(first.output.split())
    assert "Start the server or fix --base-url, then run the same command again." in message
    work = tmp_path / ".out.partial"
    assert (
        f"No row is finished yet (the run's state is in '{work}'). Running the same command "
        "again sends the 8 requests still to do (2 that could not connect, 6 not sent yet)."
    ) in message
    assert "finished rows are kept" not in message

    with FakeOpenAI(port=port) as server:  # the server is up now: the very same command
        again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert "sending again 2 requests that could not connect in an earlier run" in said
    assert server.requests == 8
    assert len(load_rows(tmp_path / "out")) == 8
    recorded = manifest(tmp_path / "out")
    assert recorded["complete"] is True and recorded["llm_failures"]["failed"] == 0
    assert recorded["counts"]["failed"] == 0 and recorded["counts"]["written"] == 8
    assert not (tmp_path / ".out.partial").exists()


def test_a_stopped_run_counts_what_it_keeps_by_what_each_row_is(tmp_path, server):
    """A run stopped by a refusal: the rows written, the one that failed for good (it waits for
    --retry-failed) and the requests not sent, each counted as what it is."""
    server.fail_next("500", "500", None, None, "401")  # None: answered as usual
    args = cli(tmp_path, server, "--n", "6", "--concurrency", "1", "--max-retries", "1")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert (
        f"Kept in '{tmp_path / '.out.partial'}': 3 finished rows (2 written, 1 failed "
        "(--retry-failed sends them again)). Running the same command again sends the "
        "3 requests still to do (3 not sent yet)."
    ) in message


def test_discarding_nothing_leaves_the_shards_as_they_are(tmp_path):
    """synth asks the work dir on every run for the requests to send again: with none, the shards
    are not rewritten."""
    from speechsum_cli.data.workdir import WorkDir

    work = WorkDir(tmp_path / "out", {"n": 2})
    writer = work.writer(shard_rows=10)
    for job in range(2):
        writer.write({"job": job, "status": "ok"})
    writer.close()
    before = sorted(p.name for p in work.path.glob("shard-*"))
    assert work.discard(lambda record: False) == 0
    assert sorted(p.name for p in work.path.glob("shard-*")) == before
    assert work.discard(lambda record: record["job"] == 1) == 1
    assert [r["job"] for r in work.records()] == [0]
