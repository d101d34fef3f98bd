"""summarize, eval and pairs with ``--server-base-url``: generation on an OpenAI-compatible server.

The server (tests/audio_chat_server.py) is a real process on 127.0.0.1 that decodes the
``input_audio`` parts of each chat request and generates with the tiny qwen2_audio model; it
counts what it received and fails on request. The requests go through the project's LLM client,
unmocked. (Why not ``transformers serve``: see the server's docstring.)
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets import load_from_disk
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.errors import NothingUsableError
from speechsum_cli.families import GenerationSettings, Prompt
from speechsum_cli.families.served import chat_messages, float_wav, sampling_params
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.redact import public_url
from speechsum_cli.stages import summarize as summarize_stage
from tests.conftest import espeak, speech_of_duration

SERVER = Path(__file__).with_name("audio_chat_server.py")
MODEL_TYPE = "qwen2_audio"
SR = 16000
runner = CliRunner()
ROWS = [
    ("p1", "Alice Chen opened the review at nine.", "Summarize the meeting as bullets."),
    ("p2", "Bob sends the contract by Friday.", "One sentence, please."),
    ("p3", "The launch moves to March fourteenth.", "What was decided?"),
]


@pytest.fixture(scope="module")
def model(tiny_models) -> Path:
    return tiny_models(MODEL_TYPE)


@pytest.fixture(scope="module")
def server(model):
    """``(base_url, control)``: the audio chat server of the tiny model; ``control(**faults)`` sets
    its faults and clears its request log, ``control.received()`` lists what it got since."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"the audio chat server did not start: {proc.stderr.read()[-2000:]}")
    root = f"http://127.0.0.1:{int(line.split()[1])}"

    def control(**faults):
        body = json.dumps({"reset": True, **faults}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{root}/control", data=body, method="POST"), timeout=10)

    def received():
        return json.loads(urllib.request.urlopen(f"{root}/stats", timeout=10).read())["requests"]

    control.received = received
    yield f"{root}/v1", control
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("long")
    return speech_of_duration(folder / "long.wav", 12.0, workdir=folder)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return espeak("Bob sends the contract by Friday.", tmp_path_factory.mktemp("short") / "short.wav")


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rows")
    lines = []
    for row_id, transcript, query in ROWS:
        espeak(transcript, folder / f"{row_id}.wav")
        lines.append(
            json.dumps(
                {
                    "id": row_id,
                    "audio": f"{row_id}.wav",
                    "transcript": transcript,
                    "query": query,
                    "summary": transcript,
                }
            )
        )
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "rows.jsonl"


def summarize(*args: str, code: int = 0):
    result = runner.invoke(app, ["summarize", *args, "--format", "json", "--no-progress", "--max-new-tokens", "8"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the request ------------------------------------------------------------------------------


def test_the_request_carries_each_window_losslessly_then_the_query():
    window = (0.3 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    (system, user) = chat_messages(Prompt("Summarize.", [window, window[:100]], system="Be brief."), SR)
    assert system == {"role": "system", "content": "Be brief."}
    parts = user["content"]
    assert [p["type"] for p in parts] == ["input_audio", "input_audio", "text"] and parts[2]["text"] == "Summarize."
    assert parts[0]["input_audio"]["format"] == "wav"
    decoded, rate = sf.read(io.BytesIO(base64.b64decode(parts[0]["input_audio"]["data"])), dtype="float32")
    assert rate == SR and np.array_equal(decoded, window)
    assert float_wav(window, SR) == float_wav(window, SR)  # no timestamp: the cache key is stable
    assert chat_messages(Prompt("Combine these."), SR) == [{"role": "user", "content": "Combine these."}]


def test_sampling_fields_greedy_and_sampled():
    assert sampling_params(GenerationSettings(64, 0.0, 0.9), seed=3) == {"max_tokens": 64, "temperature": 0.0}
    assert sampling_params(GenerationSettings(64, 0.7, 0.9), seed=3) == {
        "max_tokens": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 3,
    }


def test_urls_recorded_lose_their_secrets():
    assert public_url("https://me:pw@gpu7:8000/v1?api_key=x#f") == "https://gpu7:8000/v1"
    assert public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


# --- summarize --------------------------------------------------------------------------------


def test_a_long_clip_that_fits_the_context_is_one_request_with_every_window(model, server, long_clip, tmp_path):
    """The default reads the recording in one prompt: one request carrying its three windows as
    three input_audio parts, in order, and the answer is the local one-prompt summary."""
    url, control = server
    local = summarize(str(long_clip), "--model", str(model), "--style", "bullets")
    control()
    remote = summarize(
        str(long_clip),
        "--model",
        str(model),
        "--style",
        "bullets",
        "--server-base-url",
        url,
        "--server-cache-dir",
        str(tmp_path / "cache"),
    )
    (got,) = control.received()
    assert len(got["audio_seconds"]) == 3
    assert sum(got["audio_seconds"]) == pytest.approx(sf.info(long_clip).duration, abs=1.5 / SR)
    assert remote["reduce_rounds"] == 0 and remote["chunks"][0]["windows"] == 3
    assert remote["summary"] == local["summary"]


def test_a_long_clip_on_the_server_is_the_local_summary_one_request_per_window_plus_the_combine(
    model, server, long_clip, tmp_path
):
    url, control = server
    local = summarize(
        str(long_clip), "--model", str(model), "--style", "bullets", "--batch-size", "1", "--windows-per-prompt", "1"
    )
    control()
    remote_args = (
        str(long_clip),
        "--model",
        str(model),
        "--style",
        "bullets",
        "--server-base-url",
        url,
        "--server-cache-dir",
        str(tmp_path / "cache"),
        "--windows-per-prompt",
        "1",
    )
    remote = summarize(*remote_args)

    chunks = remote["chunks"]
    assert len(chunks) == 3 and remote["reduce_rounds"] == 1
    # greedy decoding of the same windows and the same combine prompt: the same texts
    assert [c["summary"] for c in chunks] == [c["summary"] for c in local["chunks"]]
    assert remote["summary"] == local["summary"]
    # the server got one request per window (exactly that window's audio) and one text-only combine
    got = control.received()
    assert len(got) == len(chunks) + 1
    heard = sorted(r["audio_seconds"][0] for r in got if r["audio_seconds"])
    assert heard == pytest.approx(sorted(c["end"] - c["start"] for c in chunks), abs=1.5 / SR)
    assert sum(heard) == pytest.approx(sf.info(long_clip).duration, abs=1.5 / SR)
    assert all(r["sample_rates"] == [SR] for r in got if r["audio_seconds"])
    assert [len(r["audio_seconds"]) for r in got].count(0) == 1
    assert all(r["temperature"] == 0.0 and r["seed"] is None and r["n"] is None and r["max_tokens"] == 8 for r in got)
    generation = remote["generation"]
    assert generation["on"] == "server" and generation["base_url"] == url and generation["model"] == str(model)
    assert generation["requests"] == 4 and generation["cache_hits"] == 0

    # the same command again: every answer comes from the response cache, nothing is sent
    control()
    again = summarize(*remote_args)
    assert control.received() == []
    assert again["summary"] == remote["summary"] and again["generation"]["cache_hits"] == 4
    assert again["generation"]["requests"] == 0


def test_an_interrupted_run_fails_whole_and_the_rerun_sends_only_what_was_not_answered(
    model, server, long_clip, tmp_path
):
    url, control = server
    cache = tmp_path / "cache"
    config = summarize_stage.SummarizeConfig(
        audio=(long_clip,),
        model=str(model),
        style="tldr",
        max_new_tokens=8,
        show_progress=False,
        windows_per_prompt=1,
        server=LLMConfig(base_url=url, role="server", model="", max_retries=1, cache_dir=cache),
    )
    control(fail_text_only=503)  # the windows are answered, the combine step is not
    with pytest.raises(
        NothingUsableError,
        match=r"1 of 1 generation request failed \(HTTP 503: 1\).*"
        r"--server-base-url http://127\.0\.0\.1:\d+/v1",
    ) as failed:
        summarize_stage.run(config)
    assert failed.value.exit_code == 3
    assert "only the failed requests are sent" in str(failed.value)
    assert [len(r["audio_seconds"]) for r in control.received()] == [1, 1, 1, 0, 0]  # combine: 1 retry

    control()
    result = summarize_stage.run(config)
    assert [len(r["audio_seconds"]) for r in control.received()] == [0]  # only the combine request
    assert result.generation["requests"] == 1 and result.generation["cache_hits"] == 3
    assert result.recordings[0].summary


def test_http_500_and_429_are_retried_by_the_one_client(model, server, short_clip, tmp_path):
    url, control = server
    args = (str(short_clip), "--model", str(model), "--server-base-url", url)

    control(fail=2, status=500)
    report = summarize(*args, "--server-cache-dir", str(tmp_path / "a"))
    assert [r["status"] for r in control.received()] == [500, 500, 200]
    assert report["summary"] == summarize(str(short_clip), "--model", str(model))["summary"]
    assert report["generation"]["requests"] == 1

    control(fail=2, status=429)
    report = summarize(*args, "--server-cache-dir", str(tmp_path / "b"))
    assert [r["status"] for r in control.received()] == [429, 429, 200]
    limit = report["generation"]["concurrency"]
    assert limit["rate_limited"] == 2 and limit["decreases"] >= 1


def test_nothing_answering_at_the_url_is_a_clear_error_with_exit_3(model, short_clip, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = summarize(
        str(short_clip),
        "--model",
        str(model),
        "--server-base-url",
        url,
        "--server-cache-dir",
        str(tmp_path / "cache"),
        code=3,
    )
    message = " ".join(result.output.split())
    assert f"nothing answers at --server-base-url {url}" in message
    assert "Start the server" in message and "then run the same command again" in message


def test_a_model_without_audio_input_or_not_served_names_the_flag_and_the_fix(model, server, short_clip, tmp_path):
    url, control = server
    args = (str(short_clip), "--model", str(model), "--server-base-url", url, "--server-cache-dir", str(tmp_path))

    control(no_audio=True)
    message = " ".join(summarize(*args, code=1).output.split())
    assert "refused the requests: 1 of 1 generation request failed (HTTP 400: 1)" in message
    assert f"--server-model '{model}' is an audio model" in message and "vllm serve" in message

    control()
    message = " ".join(summarize(*args, "--server-model", "qwen-audio", code=1).output.split())
    assert "--server-model 'qwen-audio' is not served at --server-base-url" in message
    assert f"it serves: {model}" in message
    assert control.received() == []  # found out before any generation request


# --- pairs and eval -----------------------------------------------------------------------------


def test_pairs_samples_k_candidates_per_prompt_in_one_request_with_the_sampling_fields(model, server, rows, tmp_path):
    url, control = server
    port = url.split(":")[2].split("/")[0]
    secret_url = f"http://user:s3cret@127.0.0.1:{port}/v1"

    def pairs(out, cache):
        return runner.invoke(
            app,
            [
                "pairs",
                "--model",
                str(model),
                "--data",
                str(rows),
                "--out",
                str(out),
                "--judge",
                "offline",
                "--k",
                "3",
                "--temperature",
                "0.9",
                "--top-p",
                "0.8",
                "--seed",
                "5",
                "--max-new-tokens",
                "8",
                "--no-progress",
                "--json",
                "--server-base-url",
                secret_url,
                "--server-cache-dir",
                str(cache),
            ],
        )

    control()
    result = pairs(tmp_path / "pairs", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    got = control.received()
    assert len(got) == len(ROWS)  # n = k: one request per prompt
    assert sorted(r["seed"] for r in got) == [5, 8, 11]  # seed + k * row
    assert all(r["n"] == 3 and r["temperature"] == 0.9 and r["top_p"] == 0.8 for r in got)
    text = (tmp_path / "pairs" / "speechsum.json").read_text()
    assert "s3cret" not in text
    generation = json.loads(text)["generation"]
    assert generation["on"] == "server" and generation["requests"] == 3
    assert generation["base_url"] == f"http://127.0.0.1:{port}/v1"
    first = load_from_disk(str(tmp_path / "pairs")).to_list()

    # the same command again: the same candidates from the cache, so the same pairs, nothing sent
    control()
    assert pairs(tmp_path / "again", tmp_path / "cache").exit_code == 0
    assert control.received() == []
    assert load_from_disk(str(tmp_path / "again")).to_list() == first

    # a server that ignores n (transformers serve does) is asked for the rest, with the next seeds
    control(ignore_n=True)
    assert pairs(tmp_path / "one-by-one", tmp_path / "cache2").exit_code == 0
    got = control.received()
    assert len(got) == 3 * len(ROWS)
    assert sorted((r["seed"], r["n"]) for r in got if r["text"] == ROWS[0][2]) == [(5, 3), (6, 2), (7, None)]


def test_eval_generates_predictions_and_transcriptions_on_the_server_and_records_it(model, server, rows, tmp_path):
    url, control = server
    control()
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "eval",
            "--model",
            str(model),
            "--data",
            str(rows),
            "--out",
            str(out),
            "--no-judge",
            "--wer-rows",
            "1",
            "--max-new-tokens",
            "8",
            "--resamples",
            "10",
            "--no-progress",
            "--server-base-url",
            url,
            "--server-cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    got = control.received()
    assert len(got) == len(ROWS) + 1  # one window per row, and the transcription prompt for one row
    assert sum(r["text"] == "Transcribe the audio exactly, word for word." for r in got) == 1
    generation = json.loads((out / "speechsum.json").read_text())["generation"]
    (record,) = generation.values()
    assert record["on"] == "server" and record["requests"] == 4 and record["model"] == str(model)


def test_eval_with_a_server_needs_a_checkpoint(rows, tmp_path):
    result = runner.invoke(
        app,
        [
            "eval",
            "--predictions",
            str(rows),
            "--data",
            str(rows),
            "--out",
            str(tmp_path / "r"),
            "--no-judge",
            "--server-base-url",
            "http://127.0.0.1:9/v1",
        ],
    )
    assert result.exit_code == 1
    assert "--server-base-url generates the predictions of --model checkpoints" in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["summarize", "eval", "pairs"])
def test_the_server_flags_are_the_same_in_every_generating_command(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    for flag in (
        "--server-base-url",
        "--server-model",
        "--server-api-key-env",
        "--server-concurrency",
        "--server-cache-dir",
    ):
        assert flag in result.output
