"""`speechsum distill --teacher-base-url`: the teacher on a server that answers like vLLM.

The server (tests/logprob_server.py) is a real process serving the tiny teacher's real log-probs in
vLLM's response shapes; the requests go through the project's LLM client, unmocked.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.stages.distill.losses import LOG_ZERO, head_topk_divergence, token_divergence
from speechsum_cli.stages.distill.remote import parse_echo, parse_prompt_logprobs, scores_tensors
from tests.test_distill import data, student, teacher  # noqa: F401 - module fixtures, shared

runner = CliRunner()
SERVER = Path(__file__).with_name("logprob_server.py")


def start_server(model: Path, mode: str):
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(model), "--mode", mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"the log-prob server did not start: {proc.stderr.read()[-2000:]}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


@pytest.fixture(scope="module")
def servers(teacher):  # noqa: F811 - the fixture imported above
    """The tiny teacher served three ways: vLLM's prompt_logprobs, echo + logprobs, and neither."""
    started = {mode: start_server(teacher, mode) for mode in ("prompt_logprobs", "echo", "none")}
    yield {mode: url for mode, (_, url) in started.items()}
    for proc, _ in started.values():
        proc.terminate()
        proc.wait(timeout=10)


def distill(*args: str):
    return runner.invoke(app, ["distill", *args, "--json"])


# --- replies and the tail bucket ------------------------------------------------------------------


def test_vllm_prompt_logprobs_are_read_at_the_completion_positions():
    ids = [5, 6, 7, 8]
    choice = {
        "prompt_logprobs": [
            None,
            {"6": {"logprob": -0.5, "rank": 1, "decoded_token": "a"}},
            {"7": {"logprob": -2.0, "rank": 3}, "9": {"logprob": -0.1, "rank": 1}},
            {"8": -1.5},
        ]
    }
    scores = parse_prompt_logprobs(choice, ids, start=2)
    assert scores.logp == [-2.0, -1.5]
    assert scores.top == [{7: -2.0, 9: -0.1}, {8: -1.5}]
    with pytest.raises(Exception, match="do not include the prompt's token 7"):
        parse_prompt_logprobs({"prompt_logprobs": [None, {"6": -0.5}, {"9": -0.1}, {"8": -1.5}]}, ids, start=2)
    with pytest.raises(Exception, match="no prompt_logprobs"):
        parse_prompt_logprobs({"text": "x"}, ids, start=2)


def test_echoed_logprobs_with_token_ids_are_read_too():
    ids = [5, 6, 7]
    choice = {
        "logprobs": {
            "tokens": ["token_id:5", "token_id:6", "token_id:7"],
            "token_logprobs": [None, -0.3, -1.0],
            "top_logprobs": [None, {"token_id:6": -0.3}, {"token_id:2": -0.2, "token_id:7": -1.0}],
        }
    }
    scores = parse_echo(choice, ids, start=1, vocab={})
    assert scores.logp == [-0.3, -1.0] and scores.top[1] == {2: -0.2, 7: -1.0}
    with pytest.raises(Exception, match="not a token of the teacher's tokenizer"):
        parse_echo(
            {"logprobs": {"token_logprobs": [None, -0.3, -1.0], "top_logprobs": [None, {"zz": -0.3}, {"a": -1.0}]}},
            ids,
            start=1,
            vocab={"a": 7},
        )


def test_top_k_divergence_is_exact_with_every_token_and_a_lower_bound_with_fewer():
    torch.manual_seed(0)
    hidden, head = torch.randn(6, 8), torch.nn.Linear(8, 12, bias=False)
    t_logits = torch.randn(6, 12) * 2
    t_logp = torch.log_softmax(t_logits, -1)
    tokens = torch.randint(0, 12, (6,))
    full = token_divergence(head(hidden), t_logits)
    for k, exact in ((12, True), (3, False)):
        top = torch.topk(t_logp, k)
        div, reverse, _ = head_topk_divergence(hidden, head, tokens, top.indices, top.values, chunk_size=4)
        if exact:
            assert torch.allclose(div, full, atol=1e-5)
        else:
            assert (div <= full + 1e-6).all() and (div < full - 1e-3).any()
        assert torch.allclose(reverse, div)


def test_ids_past_the_shared_vocabulary_fall_into_the_tail():
    from speechsum_cli.stages.distill.remote import SequenceScores

    rows = [SequenceScores([-0.1, -0.2], [{3: -0.1, 50: -3.0}, {4: -0.2}])]
    logp, ids, top = scores_tensors(rows, torch.ones(1, 3, dtype=torch.bool), 10, full=True)
    assert logp.tolist()[0][:2] == pytest.approx([-0.1, -0.2]) and logp[0, 2] == 0
    assert ids[0, 0].tolist() == [3, -1] and ids[0, 1].tolist() == [4, -1] and ids[0, 2].tolist() == [-1, -1]
    assert top[0, 0].tolist() == pytest.approx([-0.1, LOG_ZERO])  # id 50's mass: the tail's


# --- the stage against a server -------------------------------------------------------------------


def test_a_remote_teacher_gives_the_local_teachers_figures_step_for_step(student, teacher, data, servers, tmp_path):  # noqa: F811
    common = [
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--estimator",
        "sampled",
        "--max-steps",
        "3",
        "--logging-steps",
        "1",
        "--lr",
        "1e-2",
        "--max-new-tokens",
        "6",
        "--seed",
        "0",
    ]
    local = distill(*common, "--out", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    remote = distill(
        *common,
        "--out",
        str(tmp_path / "remote"),
        "--teacher-base-url",
        servers["prompt_logprobs"],
        "--teacher-concurrency",
        "2",
    )
    assert remote.exit_code == 0, remote.output
    steps = {name: json.loads(r.stdout)["metrics"]["log_history"] for name, r in (("local", local), ("remote", remote))}
    assert len(steps["local"]) == len(steps["remote"]) == 3
    for a, b in zip(steps["local"], steps["remote"]):
        for key in ("loss", "reverse_kl", "logp/teacher", "logp/student"):
            assert math.isfinite(a[key]) and b[key] == pytest.approx(a[key], abs=1e-4), (a["step"], key)
    assert len({round(s["logp/teacher"], 3) for s in steps["remote"]}) > 1  # the steps score different samples

    manifest = json.loads((tmp_path / "remote" / "speechsum.json").read_text())
    record = manifest["teacher"]
    assert record["base_url"] == servers["prompt_logprobs"] and record["model"] == str(teacher)
    assert record["logprobs"] == "prompt_logprobs" and record["approximation"].startswith("exact")
    assert record["requests"] == 1 + 3 * 2  # the probe, then one request per sampled completion
    assert "device" not in record
    assert "device" in json.loads((tmp_path / "local" / "speechsum.json").read_text())["teacher"]


def test_echo_servers_and_full_vocabulary_losses_take_the_top_k_with_a_tail(student, teacher, data, servers, tmp_path):  # noqa: F811
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--teacher-base-url",
        servers["echo"],
        "--loss",
        "jsd",
        "--teacher-top-k",
        "5",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "4",
        "--logging-steps",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "top-5 tokens + one tail bucket" in " ".join(result.output.split())
    record = json.loads((out / "speechsum.json").read_text())["teacher"]
    assert record["logprobs"] == "echo" and record["top_k"] == 5
    assert record["approximation"].startswith("top-5 log-probs + one tail bucket: jsd")
    assert all(math.isfinite(s["loss"]) and s["loss"] > 0 for s in json.loads(result.stdout)["metrics"]["log_history"])


def test_a_server_without_prompt_logprobs_is_refused_before_training(student, teacher, data, servers, tmp_path):  # noqa: F811
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--teacher-base-url",
        servers["none"],
        "--max-steps",
        "1",
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"--teacher-base-url {servers['none']} cannot score the student's tokens" in text
    assert "prompt_logprobs: its reply has no prompt_logprobs" in text
    assert "echo: its reply does not echo the prompt's tokens with logprobs" in text
    assert "vllm serve TEACHER" in text and "--teacher-logprobs echo" in text
    assert "Parameters" not in result.output and not out.exists()


def test_a_teacher_server_that_is_not_running_is_named_before_training(student, teacher, data, tmp_path):  # noqa: F811
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    out = tmp_path / "kd"
    result = distill(
        "--data",
        str(data),
        "--student",
        str(student),
        "--teacher",
        str(teacher),
        "--out",
        str(out),
        "--teacher-base-url",
        url,
        "--max-steps",
        "1",
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"nothing answers at --teacher-base-url {url}: connection error" in text
    assert "Start the teacher's server (vllm serve" in text and not out.exists()
