"""`speechsum dpo`: audio DPO with the starting checkpoint as reference."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import FAMILIES, Prompt, load
from tests.conftest import espeak

runner = CliRunner()
PAIRS = [
    (
        "d1",
        "Alice opened the review at nine.",
        "- Alice opened the review at nine.",
        "- Carol opened the review at 10.",
    ),
    (
        "d2",
        "Bob sends the contract by Friday.",
        "Bob sends the contract by Friday.",
        "Dana sends 5 contracts on Monday.",
    ),
    (
        "d3",
        "The team hires three engineers.",
        "- The team hires three engineers.",
        "- The team hires 7 engineers. 7 engineers.",
    ),
    ("d4", "The launch moves to March.", "The launch moves to March.", "The launch moves to April 2."),
]


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    rows = []
    for row_id, transcript, chosen, rejected in PAIRS:
        espeak(transcript, folder / f"{row_id}.wav")
        rows.append(
            {
                "id": row_id,
                "audio": f"{row_id}.wav",
                "transcript": transcript,
                "query": "Summarize the recording.",
                "chosen": chosen,
                "rejected": rejected,
            }
        )
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_dpo(*args):
    return runner.invoke(app, ["dpo", *args, "--json"])


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_dpo_raises_the_margin_and_keeps_the_reference(model_type, tiny_models, pairs_file, tmp_path, speech_wav):
    ckpt = str(tiny_models(model_type))
    out = tmp_path / "dpo"
    result = run_dpo(
        "--ckpt",
        ckpt,
        "--data",
        str(pairs_file),
        "--out",
        str(out),
        "--max-steps",
        "24",
        "--lr",
        "5e-3",
        "--batch-size",
        "2",
        "--logging-steps",
        "4",
        "--warmup",
        "0",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics["rewards/margins_first"] < metrics["rewards/margins_last"]
    assert metrics["rewards/margins_last"] > 0
    assert metrics["rewards/accuracies_last"] > 0.5
    assert metrics["loss_last"] < metrics["loss_first"]

    # The reference is the starting checkpoint: with the DPO adapter disabled, the network is
    # bit-identical to --ckpt; enabled, it is not.
    from peft import PeftModel

    base = load(ckpt, device="cpu", dtype="float32")
    batch = base.encode([Prompt("Summarize the recording.", torch.zeros(8000).numpy() + 0.01)])
    with torch.inference_mode():
        reference = base.model(**base.to_model(batch.inputs)).logits
    policy = PeftModel.from_pretrained(load(ckpt, device="cpu", dtype="float32").model, str(out)).eval()
    with torch.inference_mode():
        with policy.disable_adapter():
            disabled = policy(**base.to_model(batch.inputs)).logits
        enabled = policy(**base.to_model(batch.inputs)).logits
    assert torch.equal(disabled, reference)
    assert not torch.allclose(enabled, reference)

    summary = runner.invoke(
        app, ["summarize", str(speech_wav), "--model", str(out), "--max-new-tokens", "3", "--no-progress"]
    )
    assert summary.exit_code == 0, summary.output
    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["stage"] == "dpo" and manifest["counts"]["train_pairs"] == 4


def test_pairs_then_dpo_chain(tiny_models, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    rows = []
    for row_id, transcript, *_ in PAIRS:
        espeak(transcript, tmp_path / f"{row_id}.wav")
        rows.append({"id": row_id, "audio": f"{row_id}.wav", "transcript": transcript, "query": "Summarize."})
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = str(tiny_models("qwen2_audio"))
    made = runner.invoke(
        app,
        [
            "pairs",
            "--model",
            ckpt,
            "--data",
            str(prompts),
            "--out",
            str(tmp_path / "pairs"),
            "--judge",
            "offline",
            "--k",
            "4",
            "--max-new-tokens",
            "8",
            "--no-progress",
            "--json",
        ],
    )
    assert made.exit_code == 0, made.output
    trained = run_dpo(
        "--ckpt",
        ckpt,
        "--data",
        str(tmp_path / "pairs"),
        "--out",
        str(tmp_path / "dpo"),
        "--max-steps",
        "4",
        "--lr",
        "1e-3",
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["counts"]["train_pairs"] == json.loads(made.stdout)["counts"]["pairs_kept"]


def test_pairs_without_rejected_column_says_what_to_run(tiny_models, tmp_path):
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"id": "a", "audio": "a.wav", "query": "q", "chosen": "c"}) + "\n")
    result = run_dpo("--ckpt", str(tiny_models("qwen2_audio")), "--data", str(data), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert "no column 'rejected'" in result.stderr and "speechsum pairs" in result.stderr


def test_identical_chosen_and_rejected_are_named(tiny_models, tmp_path, speech_wav):
    data = tmp_path / "p.jsonl"
    data.write_text(
        json.dumps({"id": "same-1", "audio": str(speech_wav), "query": "q", "chosen": "x", "rejected": "x"}) + "\n"
    )
    result = run_dpo("--ckpt", str(tiny_models("qwen2_audio")), "--data", str(data), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1
    assert "chosen equals rejected" in result.stderr and "same-1" in result.stderr
