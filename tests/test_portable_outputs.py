"""Every training output loads without speechsum, also after its folder moved.

sft (from a full checkpoint) -> distill (from the sft adapter) -> dpo (from the kd adapter), a few
steps each, in one runs folder laid out as the quickstart lays it out (models inside it). The
folder is then moved, and each output is loaded by a script that imports only transformers and
peft; its logits must equal ``speechsum_cli.families.load``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from tests.conftest import espeak

runner = CliRunner()
QUERY = "Summarize the recording in one sentence."
ROWS = [
    ("p1", "Alice opened the budget review at nine.", "Carol opened the review at ten."),
    ("p2", "Bob sends the contract by Friday.", "Dana sends five contracts on Monday."),
]
STAGES = ("sft", "kd", "dpo")

PLAIN_LOADER = textwrap.dedent('''
    """Load speechsum outputs as a user without speechsum would: transformers + peft only."""
    import json, os, sys

    import torch
    from peft import PeftModel
    from transformers import AutoModelForMultimodalLM, AutoProcessor

    inputs = torch.load(sys.argv[1])
    logits = {}
    for adapter in sys.argv[3:]:
        base = json.load(open(os.path.join(adapter, "adapter_config.json")))["base_model_name_or_path"]
        if base.startswith("."):  # written relative to the adapter folder
            base = os.path.join(adapter, base)
        AutoProcessor.from_pretrained(adapter)
        model = AutoModelForMultimodalLM.from_pretrained(base, dtype=torch.float32).eval()
        with torch.inference_mode():
            logits[adapter + "::base"] = model(**inputs).logits
            model = PeftModel.from_pretrained(model, adapter).eval()
            logits[adapter] = model(**inputs).logits
    torch.save(logits, sys.argv[2])
    loaded = sorted(m for m in sys.modules if m.split(".")[0].startswith("speechsum"))
    assert not loaded, loaded
''')


@pytest.fixture(scope="module")
def chain(tiny_text_lm, tmp_path_factory) -> Path:
    """runs/{models/student, models/teacher, sft, kd, dpo}, trained with 2 steps per stage."""
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from speechsum_cli.families.tiny import seed_everything
    from tests.test_compose import save_tiny_whisper

    root = tmp_path_factory.mktemp("portable")
    runs = root / "runs"
    records = []
    for row_id, transcript, wrong in ROWS:
        espeak(transcript, root / f"{row_id}.wav")
        records.append(
            {
                "id": row_id,
                "audio": f"{row_id}.wav",
                "transcript": transcript,
                "query": QUERY,
                "summary": transcript,
                "chosen": transcript,
                "rejected": wrong,
            }
        )
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    # a teacher with opinions (as test_distill's) and a student composed around its LLM
    tok = AutoTokenizer.from_pretrained(tiny_text_lm)
    teacher = runs / "models" / "teacher"
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.2,
    )
    seed_everything(3)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(teacher)
    tok.save_pretrained(teacher)
    whisper = save_tiny_whisper(root / "whisper", positions=250)  # a 5 s window
    student = runs / "models" / "student"
    steps = [
        ["compose", "--family", "qwen2_audio", "--encoder", str(whisper), "--llm", str(teacher), "--out", str(student)],
        [
            "sft",
            "--data",
            str(data),
            "--model",
            str(student),
            "--out",
            str(runs / "sft"),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-2",
        ],
        [
            "distill",
            "--data",
            str(data),
            "--model",
            str(runs / "sft"),
            "--teacher",
            str(teacher),
            "--out",
            str(runs / "kd"),
            "--max-steps",
            "2",
            "--max-new-tokens",
            "4",
            "--lr",
            "1e-2",
        ],
        [
            "dpo",
            "--data",
            str(data),
            "--model",
            str(runs / "kd"),
            "--out",
            str(runs / "dpo"),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--lr",
            "1e-2",
        ],
    ]
    for args in steps:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{args[0]}: {result.output}"
    moved = root / "elsewhere" / "runs-moved"
    moved.parent.mkdir()
    shutil.move(str(runs), str(moved))
    return moved


def test_outputs_record_bases_that_move_with_the_folder(chain):
    def recorded(stage: str) -> str:
        return json.loads((chain / stage / "adapter_config.json").read_text())["base_model_name_or_path"]

    # sft started from a full checkpoint beside it: named relative to the adapter, not copied
    assert recorded("sft") == "../models/student"
    assert not (chain / "sft" / "base").exists()
    # distill and dpo started from adapters: the merged starting weights are a checkpoint inside
    for stage in ("kd", "dpo"):
        assert recorded(stage) == "./base"
        assert (chain / stage / "base" / "config.json").is_file()
        assert (chain / stage / "base" / "model.safetensors").is_file()
        assert json.loads((chain / stage / "speechsum.json").read_text())["adapter_base"] == "./base"


def test_every_output_loads_with_plain_transformers_and_peft_after_moving(chain, tmp_path):
    from speechsum_cli.families import Prompt, load

    wave = espeak(ROWS[0][1], tmp_path / "probe.wav")
    import soundfile as sf
    import soxr

    audio, sr = sf.read(wave, dtype="float32")
    ours = {}
    for stage in STAGES:
        lm = load(str(chain / stage), device="cpu", dtype="float32")
        if stage == "sft":
            rate = lm.sampling_rate
            batch = lm.encode([Prompt(QUERY, soxr.resample(audio, sr, rate)[: 4 * rate].astype(np.float32))])
            inputs = {k: v for k, v in batch.inputs.items() if isinstance(v, torch.Tensor)}
            torch.save(inputs, tmp_path / "inputs.pt")
        with torch.inference_mode():
            ours[stage] = lm.model(**inputs).logits
    script = tmp_path / "plain_load.py"
    script.write_text(PLAIN_LOADER)
    adapters = [str(chain / stage) for stage in STAGES]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "inputs.pt"), str(tmp_path / "logits.pt"), *adapters],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    plain = torch.load(tmp_path / "logits.pt")

    for stage, adapter in zip(STAGES, adapters):
        torch.testing.assert_close(plain[adapter], ours[stage], atol=1e-5, rtol=0, msg=stage)
    # each stage's base is the previous stage's model: the weights its adapter trained on
    torch.testing.assert_close(plain[adapters[1] + "::base"], ours["sft"], atol=1e-5, rtol=0)
    torch.testing.assert_close(plain[adapters[2] + "::base"], ours["kd"], atol=1e-5, rtol=0)
    assert not torch.allclose(ours["kd"], ours["dpo"], atol=1e-5)  # dpo trained something


def test_a_base_that_did_not_move_with_the_adapter_is_named(tmp_path):
    from speechsum_cli.errors import ModelError
    from speechsum_cli.families.model import adapter_base, recorded_base

    adapter = tmp_path / "runs" / "sft"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "../models/student"}))
    with pytest.raises(ModelError) as error:
        adapter_base(str(adapter))
    assert "'../models/student'" in str(error.value) and "does not exist" in str(error.value)
    # a checkpoint outside the folder holding the output keeps its absolute path; a hub id stays
    elsewhere = tmp_path / "shared" / "models" / "student"
    assert recorded_base(str(elsewhere), adapter) == str(elsewhere)
    assert recorded_base(str(tmp_path / "runs" / "models" / "student"), adapter) == "../models/student"
    assert recorded_base("Qwen/Qwen2-Audio-7B-Instruct", adapter) == "Qwen/Qwen2-Audio-7B-Instruct"
