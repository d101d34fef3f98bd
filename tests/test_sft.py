"""``speechsum sft``: training touches what it should, padding is loss-neutral, resume, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import FAMILIES, get_family
from speechsum_cli.inference.feature_cache import CACHE_DIRNAME
from tests.conftest import espeak

runner = CliRunner()

SENTENCES = (
    "Alice opened the budget review at nine.",
    "Bob will send the contract by Friday.",
    "The launch moves to March fourteenth.",
    "We decided to hire three engineers.",
    "Carol drafts the proposal.",
    "Dan books the room for Monday.",
    "Forests store energy from the sun.",
    "Everyone reads the quarterly report.",
)
QUERY = "Summarize in one sentence."
HEAD_SCALE = 10.0
"""Tiny random models have an output head with std 0.02: logits stay near-flat whatever the
hidden state, so no adapter can lower the loss much. Scaling the head gives them the logit range
of a trained model; LoRA then has something to learn with."""


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("sft-audio")
    return [espeak(text, folder / f"clip{i}.wav", speed=200) for i, text in enumerate(SENTENCES)]


def synth_rows(clips: list[Path]) -> list[dict]:
    """Rows in the synth output format (id, audio, transcript, query, style, summary)."""
    return [
        {"id": f"row{i}", "audio": str(clip), "transcript": text, "query": QUERY, "style": "tldr", "summary": text}
        for i, (clip, text) in enumerate(zip(clips, SENTENCES))
    ]


@pytest.fixture(scope="module")
def sft_data(clips, tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("sft-data") / "train.jsonl", synth_rows(clips))


@pytest.fixture(scope="session")
def trainable_models(tiny_models, tmp_path_factory):
    """``trainable_models(model_type)``: the tiny checkpoint with a scaled output head."""
    import torch

    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("trainable-models")

    def build(model_type: str) -> Path:
        if model_type not in built:
            family, source = get_family(model_type), tiny_models(model_type)
            out = root / model_type
            shutil.copytree(source, out)
            model = family.load_model(str(source), dtype=torch.float32, device="cpu")
            with torch.no_grad():
                model.get_output_embeddings().weight.mul_(HEAD_SCALE)
            model.save_pretrained(out)
            built[model_type] = out
        return built[model_type]

    return build


def sft(*args: str):
    return runner.invoke(app, ["sft", *args])


def manifest(out: Path) -> dict:
    return json.loads((out / "speechsum.json").read_text())


def state_dict(path: Path) -> dict:
    from safetensors.torch import load_file

    tensors: dict = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def test_help_shows_the_paper_defaults_and_an_example():
    result = runner.invoke(app, ["sft", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "speechsum sft --data runs/synth --model Qwen/Qwen2-Audio-7B-Instruct --out runs/sft" in text
    for flag in (
        "--lora-r",
        "--lora-alpha",
        "--lora-targets",
        "--train-encoder",
        "--full",
        "--on-long-audio",
        "--resume",
        "--merge",
        "--eval-split",
        "--report-to",
    ):
        assert flag in text


# --- each family trains, touches only what it should, and its output summarizes ---------------


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_lora_trains_lm_and_projector_only_and_output_summarizes(
    model_type, trainable_models, sft_data, clips, tmp_path
):
    import torch
    from peft import PeftModel

    family = FAMILIES[model_type]
    base = trainable_models(model_type)
    out = tmp_path / "sft"
    result = sft(
        "--data",
        str(sft_data),
        "--model",
        str(base),
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--lr",
        "1e-2",
        "--batch-size",
        "4",
        "--logging-steps",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert "Parameters" in result.stderr and "LoRA" in result.stderr
    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    assert not (tmp_path / ".sft.partial").exists()

    record = manifest(out)
    assert record["stage"] == "sft" and record["output"] == "adapter"
    assert record["counts"]["train_rows"] == 8
    assert record["metrics"]["global_step"] == 3
    assert [i["path"] for i in record["inputs"]] == [str(sft_data), str(base)]
    groups = {g["name"]: g for g in record["parameters"]}
    assert groups["encoder"]["trainable"] == 0 and groups["encoder"]["total"] > 0
    assert groups["projector"]["trainable"] == groups["projector"]["total"] > 0
    assert groups["language model"]["trainable"] == 0
    assert groups["LoRA"]["trainable"] > 0

    # Plain transformers + peft load the output; compare it to the base weights.
    base_weights = state_dict(base)
    before = family.load_model(str(base), dtype=torch.float32, device="cpu")
    trained = PeftModel.from_pretrained(family.load_model(str(base), dtype=torch.float32, device="cpu"), str(out))
    lora_modules = [n for n, m in trained.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)]
    assert lora_modules
    lm_prefix = f"base_model.model.{family.language_model_prefix}."
    assert all(n.startswith(lm_prefix) for n in lora_modules), lora_modules
    assert all(n.rsplit(".", 1)[-1] in family.lora_targets for n in lora_modules)
    params = dict(trained.named_parameters())
    lora_b = [p for n, p in params.items() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b), "LoRA B matrices are still zero: nothing trained"
    for prefix in family.audio_encoder_prefixes:
        encoder = {
            n: p
            for n, p in before.named_parameters()
            if n.startswith(prefix + ".") and not any(n.startswith(q + ".") for q in family.projector_prefixes)
        }
        assert encoder
        for name, tensor in encoder.items():
            assert torch.equal(params[f"base_model.model.{name}"], tensor), name
    projector_changed = [
        not torch.equal(params[f"base_model.model.{n}".replace(p_, p_ + ".modules_to_save.default", 1)], t)
        for p_ in family.projector_prefixes
        for n, t in before.named_parameters()
        if n.startswith(p_ + ".")
    ]
    assert projector_changed and any(projector_changed)
    assert base_weights  # the base checkpoint itself was not modified
    assert all(torch.equal(t, state_dict(base)[k]) for k, t in base_weights.items())

    summary = runner.invoke(
        app,
        ["summarize", str(clips[0]), "--model", str(out), "--max-new-tokens", "8", "--no-progress", "--format", "json"],
    )
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["model"] == str(out)


# qwen3_omni_moe trains LoRA on its attention only (the fused experts and the router stay frozen):
# the tiny model needs more steps to halve its loss.
OVERFIT_STEPS = {"qwen3_omni_moe": 120}


@pytest.mark.slow
@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_tiny_model_overfits_eight_examples(model_type, trainable_models, sft_data, tmp_path):
    out = tmp_path / "sft"
    result = sft(
        "--data",
        str(sft_data),
        "--model",
        str(trainable_models(model_type)),
        "--out",
        str(out),
        "--max-steps",
        str(OVERFIT_STEPS.get(model_type, 60)),
        "--lr",
        "1e-2",
        "--warmup",
        "0",
        "--batch-size",
        "8",
        "--logging-steps",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert metrics == manifest(out)["metrics"]
    assert metrics["loss_last"] <= 0.5 * metrics["loss_first"], metrics


# --- padding, merge, resume -----------------------------------------------------------------


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_batch_of_two_loss_equals_token_weighted_single_losses(model_type, trainable_models, clips):
    """Right padding, audio padding and label masking change nothing: the batch loss is the
    mean over all summary tokens, i.e. the single-row losses weighted by their token counts."""
    import torch

    from speechsum_cli.families import load
    from speechsum_cli.stages.sft import SpeechCollator, summary_token_loss

    lm = load(str(trainable_models(model_type)), device="cpu", dtype="float32")
    collate = SpeechCollator(lm, lm.window_seconds)
    rows = [
        {"id": "short", "audio": str(clips[4]), "query": QUERY, "summary": "Carol.", "truncate": False},
        {
            "id": "long",
            "audio": str(clips[0]),
            "query": QUERY + " Be thorough.",
            "summary": SENTENCES[0] + " " + SENTENCES[1],
            "truncate": False,
        },
    ]

    def loss_and_tokens(batch_rows):
        inputs = collate(batch_rows)
        labels = inputs.pop("labels")
        with torch.no_grad():
            loss = summary_token_loss(lm.model(**inputs), labels).item()  # what sft optimizes
            own = lm.model(**inputs, labels=labels).loss.item()  # the family's own loss agrees
        assert loss == pytest.approx(own, abs=1e-4)
        return loss, int((labels[:, 1:] != -100).sum())

    (l1, n1), (l2, n2) = loss_and_tokens(rows[:1]), loss_and_tokens(rows[1:])
    both, n = loss_and_tokens(rows)
    assert n == n1 + n2
    assert both == pytest.approx((l1 * n1 + l2 * n2) / n, abs=1e-4)
    assert both != pytest.approx((l1 + l2) / 2, abs=1e-4)  # the rows really differ in length


def test_merge_writes_a_full_checkpoint_equal_to_the_adapter(trainable_models, sft_data, clips, tmp_path):
    import torch

    from speechsum_cli.data.audio import load_audio
    from speechsum_cli.families import Prompt, load

    base = trainable_models("qwen2_audio")
    common = [
        "--data",
        str(sft_data),
        "--model",
        str(base),
        "--max-steps",
        "2",
        "--lr",
        "1e-2",
        "--batch-size",
        "4",
        "--lora-dropout",
        "0",
    ]
    assert sft(*common, "--out", str(tmp_path / "adapter")).exit_code == 0
    merged = sft(*common, "--out", str(tmp_path / "merged"), "--merge")
    assert merged.exit_code == 0, merged.output
    assert (tmp_path / "merged" / "config.json").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert manifest(tmp_path / "merged")["output"] == "merged"

    logits = []
    for name in ("adapter", "merged"):
        lm = load(str(tmp_path / name), device="cpu", dtype="float32")
        prompt = Prompt(query=QUERY, audio=load_audio(str(clips[0]), lm.sampling_rate))
        with torch.no_grad():
            logits.append(lm.model(**lm.encode([prompt]).inputs).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-4, rtol=1e-4)


def test_eval_split_records_eval_loss(trainable_models, sft_data, tmp_path):
    out = tmp_path / "sft"
    result = sft(
        "--data",
        str(sft_data),
        "--model",
        str(trainable_models("voxtral")),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--eval-split",
        "0.25",
    )
    assert result.exit_code == 0, result.output
    record = manifest(out)
    assert (record["counts"]["train_rows"], record["counts"]["eval_rows"]) == (6, 2)
    assert record["metrics"]["eval_loss"] > 0


def test_resume_continues_from_the_saved_step(trainable_models, sft_data, tmp_path, monkeypatch):
    """The resume rule: re-running the interrupted command continues it; other settings are
    refused (naming them) unless --restart; --resume with nothing to continue is an error."""
    from speechsum_cli.stages import sft as stage
    from speechsum_cli.training.settings import TrainSettings

    out = tmp_path / "sft"
    cfg = stage.SftConfig(
        data=sft_data,
        model=str(trainable_models("qwen2_audio")),
        out=out,
        train=TrainSettings(max_steps=4, save_steps=2, batch_size=4, lr=1e-2, logging_steps=1),
    )
    real_call = stage.SpeechCollator.__call__
    calls = {"n": 0}

    def crash_on_fourth_batch(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real_call(self, rows)

    monkeypatch.setattr(stage.SpeechCollator, "__call__", crash_on_fourth_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        stage.run(cfg)
    monkeypatch.setattr(stage.SpeechCollator, "__call__", real_call)
    partial = tmp_path / ".sft.partial"
    assert not out.exists()
    assert (partial / "checkpoint-2").is_dir()

    changed = sft(
        "--data",
        str(sft_data),
        "--model",
        cfg.model,
        "--out",
        str(out),
        "--max-steps",
        "4",
        "--save-steps",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "2e-2",
    )
    assert changed.exit_code == 1
    message = " ".join(changed.stderr.split())
    assert "holds an interrupted run (last checkpoint: checkpoint-2)" in message
    assert "train.lr: 0.01 -> 0.02" in message and "--restart" in message
    assert (partial / "checkpoint-2").is_dir()  # refused: nothing discarded

    # the same settings (logging may change) continue the run by themselves
    result = stage.run(train_replace(cfg, logging_steps=2))
    assert result.metrics["resumed_from_step"] == 2
    assert result.metrics["global_step"] == 4
    assert manifest(out)["metrics"]["resumed_from_step"] == 2
    assert not partial.exists()

    nothing = sft("--data", str(sft_data), "--model", cfg.model, "--out", str(tmp_path / "other"), "--resume")
    assert nothing.exit_code == 1
    assert "no checkpoint in" in nothing.stderr


def test_restart_discards_an_interrupted_run(trainable_models, sft_data, tmp_path):
    from speechsum_cli.stages import sft as stage
    from speechsum_cli.training.settings import TrainSettings

    out = tmp_path / "sft"
    partial = tmp_path / ".sft.partial"
    (partial / "checkpoint-7").mkdir(parents=True)
    (partial / "checkpoint-7" / "trainer_state.json").write_text("{}")
    cfg = stage.SftConfig(
        data=sft_data,
        model=str(trainable_models("qwen2_audio")),
        out=out,
        train=TrainSettings(max_steps=1, batch_size=4, restart=True),
    )
    result = stage.run(cfg)
    assert "resumed_from_step" not in result.metrics and result.metrics["global_step"] == 1


def train_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **changes))

    return dataclasses.replace(cfg, **changes)


# --- long audio ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_data(clips, tmp_path_factory) -> Path:
    """The eight rows plus one of 7 s: longer than the tiny models' 5 s window."""
    folder = tmp_path_factory.mktemp("sft-long")
    data, sr = sf.read(clips[0], dtype="float32")
    long_clip = folder / "long.wav"
    sf.write(long_clip, np.tile(data, 4)[: int(7.0 * sr)], sr)
    rows = synth_rows(clips) + [
        {
            "id": "too-long",
            "audio": str(long_clip),
            "transcript": "x",
            "query": QUERY,
            "style": "tldr",
            "summary": "A long talk.",
        }
    ]
    return write_rows(folder / "train.jsonl", rows)


def test_long_audio_is_an_error_by_default(trainable_models, long_data, tmp_path):
    result = sft(
        "--data", str(long_data), "--model", str(trainable_models("qwen2_audio")), "--out", str(tmp_path / "sft")
    )
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "1 row(s) with audio longer than the model's 5 s window (longest 7.0 s): ids 'too-long'" in message
    assert "--on-long-audio truncate" in message and "--on-long-audio drop" in message
    assert not (tmp_path / "sft").exists()


@pytest.mark.parametrize("policy", ["drop", "truncate", "chunk"])
def test_long_audio_policies_are_counted(policy, trainable_models, long_data, tmp_path):
    out = tmp_path / "sft"
    result = sft(
        "--data",
        str(long_data),
        "--model",
        str(trainable_models("qwen2_audio")),
        "--out",
        str(out),
        "--on-long-audio",
        policy,
        "--max-steps",
        "3",
        "--batch-size",
        "9",
    )
    assert result.exit_code == 0, result.output
    counts = manifest(out)["counts"]
    assert counts["long_audio"] == 1
    assert counts[{"drop": "dropped", "truncate": "truncated", "chunk": "chunked"}[policy] + "_long_audio"] == 1
    assert counts["train_rows"] == (8 if policy == "drop" else 9)
    if policy != "chunk":
        assert "too-long" in result.stderr


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_chunked_recording_fills_one_placeholder_run(model_type, trainable_models, clips):
    """--on-long-audio chunk: a prompt carries consecutive windows; its placeholder run is the sum
    of theirs and the model consumes exactly that many embeddings."""
    import torch

    from speechsum_cli.data.audio import load_audio
    from speechsum_cli.families import Prompt, load

    lm = load(str(trainable_models(model_type)), device="cpu", dtype="float32")
    first, second = (load_audio(str(c), lm.sampling_rate) for c in clips[:2])
    singles = [lm.encode([Prompt(query=QUERY, audio=w, answer="ok")]).audio_tokens[0] for w in (first, second)]
    both = lm.encode([Prompt(query=QUERY, audio=[first, second], answer="ok")])
    assert both.audio_tokens == [sum(singles)]
    assert both.audio_seconds[0] == pytest.approx((len(first) + len(second)) / lm.sampling_rate)
    with torch.no_grad():
        assert torch.isfinite(lm.model(**both.inputs).loss)


# --- bad input and bad targets fail early and say where -------------------------------------


def test_missing_column_names_the_column(clips, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "summary"} for r in synth_rows(clips)]
    data = write_rows(tmp_path / "train.jsonl", rows)
    result = sft("--data", str(data), "--model", "unused", "--out", str(tmp_path / "sft"))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"data '{data}' has no column 'summary'" in message
    assert "--summary-column" in message


def test_empty_dataset_is_refused(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("")
    result = sft("--data", str(data), "--model", "unused", "--out", str(tmp_path / "sft"))
    assert result.exit_code == 1
    assert f"data '{data}' is empty" in " ".join(result.stderr.split())


def test_bad_rows_are_named_by_id_and_column(clips, tmp_path):
    rows = synth_rows(clips)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    rows[2]["audio"] = str(not_audio)
    rows[5]["summary"] = "  "
    data = write_rows(tmp_path / "train.jsonl", rows)
    result = sft("--data", str(data), "--model", "unused", "--out", str(tmp_path / "sft"))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "1 row(s) with an empty 'summary': ids 'row5'" in message
    assert "1 row(s) with unreadable 'audio': ids 'row2'" in message
    assert "Traceback" not in result.output


def test_lora_targets_that_match_nothing_fail_clearly(trainable_models, sft_data, tmp_path):
    result = sft(
        "--data",
        str(sft_data),
        "--model",
        str(trainable_models("qwen2_audio")),
        "--out",
        str(tmp_path / "sft"),
        "--lora-targets",
        "query_key_value",
    )
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "LoRA targets query_key_value match no module of the language model ('model.language_model')" in message
    assert "q_proj" in message  # the names that would work
    assert not (tmp_path / "sft").exists()


def test_lora_is_kept_off_the_encoder_even_where_names_coincide(trainable_models):
    """Phi-4-MM's speech encoder has o_proj/down_proj too: the LM prefix keeps LoRA off it."""
    import torch

    from speechsum_cli.training.model import prepare_model
    from speechsum_cli.training.settings import TrainSettings

    family = FAMILIES["phi4_multimodal"]
    model = family.load_model(str(trainable_models("phi4_multimodal")), dtype=torch.float32, device="cpu")
    encoder_names = {
        n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n.startswith(family.audio_encoder_prefixes[0] + ".")
    }
    assert encoder_names & set(family.lora_targets)  # the trap exists
    peft_model = prepare_model(model, family, TrainSettings(), "m")
    wrapped = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A")]
    assert wrapped and not any(family.audio_encoder_prefixes[0] in n for n in wrapped)


def test_train_encoder_changes_the_encoder_too(trainable_models, sft_data, tmp_path):
    """--train-encoder on Phi-4-MM, whose encoder forward is patched per instance: the trained
    copy peft keeps must be the one that runs (else the encoder would silently not train)."""
    import torch
    from peft import PeftModel

    family = FAMILIES["phi4_multimodal"]
    base = trainable_models("phi4_multimodal")
    out = tmp_path / "sft"
    result = sft(
        "--data",
        str(sft_data),
        "--model",
        str(base),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--lr",
        "1e-2",
        "--batch-size",
        "4",
        "--train-encoder",
    )
    assert result.exit_code == 0, result.output
    groups = {g["name"]: g for g in manifest(out)["parameters"]}
    assert groups["encoder"]["trainable"] == groups["encoder"]["total"] > 0
    before = dict(family.load_model(str(base), dtype=torch.float32, device="cpu").named_parameters())
    trained = PeftModel.from_pretrained(family.load_model(str(base), dtype=torch.float32, device="cpu"), str(out))
    prefix = family.audio_encoder_prefixes[0]
    changed = [
        not torch.equal(p, before[n.removeprefix("base_model.model.").replace(".modules_to_save.default", "")])
        for n, p in trained.named_parameters()
        if ".modules_to_save.default." in n and n.removeprefix("base_model.model.").startswith(prefix)
    ]
    assert changed and any(changed)


def test_weights_the_forward_pass_never_reaches_fail_the_first_step():
    import torch

    from speechsum_cli.errors import ModelError
    from speechsum_cli.training.trainer import GradientCheck

    class Family:
        audio_encoder_prefixes, projector_prefixes, language_model_prefix = ("enc",), ("proj",), "lm"

    model = torch.nn.ModuleDict({"enc": torch.nn.Linear(2, 2), "proj": torch.nn.Linear(2, 2)})
    model["proj"](torch.ones(1, 2)).sum().backward()  # the encoder is trainable but never used
    with pytest.raises(ModelError, match="encoder received no gradient"):
        GradientCheck(model, Family()).on_pre_optimizer_step(None, None, None)


# --- multi-process --------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_two_processes_on_cpu_match_gradient_accumulation(trainable_models, sft_data, tmp_path):
    """2 processes x batch 2 (gloo) give the same step losses as 1 process x batch 2 x accum 2.

    Launched with torchrun, which is what ``accelerate launch --multi_gpu`` runs on GPUs;
    ``accelerate launch --cpu --num_processes 2`` needs mpirun for several CPU processes.
    """
    model = str(trainable_models("qwen2_audio"))
    common = [
        "--data",
        str(sft_data),
        "--model",
        model,
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--logging-steps",
        "1",
        "--no-group-by-length",
    ]
    ddp_out = tmp_path / "ddp" / "sft"
    ddp_out.parent.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "speechsum_cli",
        "sft",
        *common,
        "--out",
        str(ddp_out),
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("Parameters") == 1  # only the main process reports
    ddp = manifest(ddp_out)
    assert ddp["world_size"] == 2
    assert ddp["metrics"]["global_step"] == 2
    # one output, no leftovers: beside it only the shared feature cache, holding whole entries
    assert sorted(p.name for p in ddp_out.parent.iterdir() if p.name != CACHE_DIRNAME) == ["sft"]
    assert not list((ddp_out.parent / CACHE_DIRNAME).glob("**/.tmp-*"))

    single = sft(*common, "--grad-accum", "2", "--out", str(tmp_path / "single"))
    assert single.exit_code == 0, single.output
    one = manifest(tmp_path / "single")["metrics"]
    for key in ("loss_first", "loss_last"):
        assert ddp["metrics"][key] == pytest.approx(one[key], abs=1e-3), key


def test_a_resume_inside_an_epoch_with_group_by_length_is_the_uninterrupted_run(
    trainable_models, sft_data, tmp_path, monkeypatch
):
    """Issue 28: group-by-length (the default) drew each epoch's order from the global RNG, so a run
    resumed inside its second epoch followed another order than the one it interrupted (on the old code:
    step 8's loss 5.634 vs 5.656, weights apart by 0.008). The order is now a function of the seed and
    the epoch: the same loss, the same weights, bit for bit. (Feature cache off: a cached window's states
    differ from the live forward's in the last bits, ~1e-5 in the weights after a resume.)"""
    import torch

    from speechsum_cli.stages import sft as stage
    from speechsum_cli.training.settings import TrainSettings

    def config(name: str):
        train = TrainSettings(
            max_steps=8, save_steps=5, batch_size=2, lr=1e-2, logging_steps=1, group_by_length=True, feature_cache=False
        )
        return stage.SftConfig(
            data=sft_data, model=str(trainable_models("qwen2_audio")), out=tmp_path / name, train=train
        )

    whole = stage.run(config("whole"))
    real_call, calls = stage.SpeechCollator.__call__, {"n": 0}

    def crash_on_the_eighth_batch(self, rows):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("simulated crash")
        return real_call(self, rows)

    monkeypatch.setattr(stage.SpeechCollator, "__call__", crash_on_the_eighth_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        stage.run(config("resumed"))
    monkeypatch.setattr(stage.SpeechCollator, "__call__", real_call)
    resumed = stage.run(config("resumed"))  # from checkpoint-5: inside the second epoch
    a, b = state_dict(tmp_path / "whole"), state_dict(tmp_path / "resumed")
    assert resumed.metrics["resumed_from_step"] == 5 and whole.metrics["global_step"] == 8
    assert resumed.metrics["loss_last"] == whole.metrics["loss_last"]  # step 8's loss
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
