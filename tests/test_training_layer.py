"""The one training layer: sft, distill and dpo share their flags, their skeleton and its fixes."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.dtypes import Dtype
from tests.conftest import espeak

runner = CliRunner()
TRAINING_STAGES = ("sft", "distill", "dpo")
SHARED_FLAGS = (
    "--model --data --out --lr --max-steps --epochs --batch-size --grad-accum --warmup --weight-decay "
    "--lora-r --lora-alpha --lora-dropout --lora-targets --seed --resume --restart --merge --dtype "
    "--json --on-long-audio --save-steps --logging-steps --report-to --gradient-checkpointing "
    "--train-encoder --full --eval-steps --num-workers --overwrite --split --group-by-length"
).split()
PACKAGE = Path(__file__).resolve().parent.parent / "speechsum_cli"


def command(name: str):
    return typer.main.get_command(app).commands[name]


def option(cmd, flag: str):
    found = [p for p in cmd.params if flag in p.opts or flag in p.secondary_opts]
    assert found, f"{cmd.name} has no {flag}"
    return found[0]


@pytest.mark.parametrize("flag", SHARED_FLAGS)
def test_training_stages_share_each_flag_with_one_default_unless_the_help_says_why(flag):
    params = {stage: option(command(stage), flag) for stage in TRAINING_STAGES}
    sft = params["sft"]
    for stage, param in params.items():
        assert set(sft.opts) <= set(param.opts) and param.secondary_opts == sft.secondary_opts, (stage, flag)
        if param.default != sft.default:
            assert "(Here " in (param.help or ""), f"{stage} {flag}: default differs without a reason"


def test_the_starting_checkpoint_is_model_with_ckpt_as_synonym_everywhere():
    for stage in TRAINING_STAGES:
        names = option(command(stage), "--model").opts
        assert {"--model", "-m", "--ckpt"} <= set(names), (stage, names)
    assert "--student" in option(command("distill"), "--model").opts


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _stage_imports(stage: str) -> set[str]:
    """What a stage imports: its module's imports, or every module's of its package."""
    package = PACKAGE / "stages" / stage
    files = sorted(package.glob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
    return set().union(*(_imports(f) for f in files))


def test_training_stages_import_nothing_from_each_other_and_the_layer_no_stage():
    for stage in TRAINING_STAGES:
        others = {f"speechsum_cli.stages.{o}" for o in TRAINING_STAGES if o != stage}
        imported = _stage_imports(stage)
        assert not {i for i in imported if any(i == o or i.startswith(o + ".") for o in others)}, stage
        assert "speechsum_cli.stages.sft" not in imported or stage == "sft"
    for module in (PACKAGE / "training").glob("*.py"):
        assert not any(i.startswith("speechsum_cli.stages") for i in _imports(module)), module.name


def captured(seen: dict, cfg):
    """Stand-in for a stage's run: keeps the config the CLI built (the CLI -> config translation
    is what these tests check; the stages' runs are tested in their own files)."""
    from types import SimpleNamespace

    seen["cfg"] = cfg
    return SimpleNamespace(out=cfg.out, counts={}, metrics={})


@pytest.mark.parametrize("stage", TRAINING_STAGES)
def test_every_training_field_reaches_the_stage_config(stage, monkeypatch, tmp_path):
    """weight_decay, lora_dropout, train_encoder, eval_steps, num_workers could not be set from
    some or all commands before; every stage now passes each one through."""
    import importlib

    module = importlib.import_module(f"speechsum_cli.stages.{stage}")
    seen = {}
    monkeypatch.setattr(module, "run", lambda cfg: captured(seen, cfg))
    args = [
        stage,
        "--model",
        "m",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
        "--weight-decay",
        "0.1",
        "--lora-dropout",
        "0.2",
        "--train-encoder",
        "--eval-steps",
        "7",
        "--num-workers",
        "2",
        "--lora-targets",
        "q_proj, v_proj",
        "--dtype",
        "float32",
        "--on-long-audio",
        "chunk",
        "--warmup",
        "3",
    ]
    if stage == "distill":
        args += ["--teacher", "t"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    train = seen["cfg"].train
    assert (train.weight_decay, train.lora_dropout, train.train_encoder, train.eval_steps, train.num_workers) == (
        0.1,
        0.2,
        True,
        7,
        2,
    )
    assert train.lora_targets == ("q_proj", "v_proj") and train.warmup == 3
    assert train.dtype is Dtype.float32 and train.on_long_audio is LongAudio.chunk


@pytest.mark.parametrize("stage", TRAINING_STAGES)
def test_each_training_flag_is_a_settings_field_and_its_help_is_the_fields(stage):
    """One source: the flag's help is the field's metadata (a stage's reason for another default
    follows it), and no field lacks a flag or flag lacks a field."""
    import dataclasses

    from speechsum_cli.training.settings import TrainSettings

    cmd = command(stage)
    panel = [p for p in cmd.params if p.rich_help_panel == "Training (shared by sft, distill, dpo)"]
    fields = dataclasses.fields(TrainSettings)
    assert sorted(p.name for p in panel) == sorted(f.name for f in fields)
    for spec in fields:
        param = next(p for p in panel if p.name == spec.name)
        help = spec.metadata["help"]
        reason = stage != "sft" and param.help.startswith(f"{help} (Here ")
        assert param.help == help or reason, spec.name
        assert ("--" + spec.name.replace("_", "-")) in param.opts, (spec.name, param.opts)


def test_dtype_is_one_vocabulary_from_the_cli_and_from_python():
    from speechsum_cli.errors import InputError
    from speechsum_cli.training.settings import TrainSettings

    assert TrainSettings(dtype="bfloat16").dtype is Dtype.bfloat16  # a Python caller's str, once
    assert TrainSettings(on_long_audio="chunk").on_long_audio is LongAudio.chunk
    with pytest.raises(InputError, match="'fp16' is not one of auto, float32, bfloat16, float16"):
        TrainSettings(dtype="fp16")
    refused = runner.invoke(app, ["sft", "-m", "m", "-d", "d", "-o", "o", "--dtype", "bf16"])
    assert refused.exit_code == 2
    assert "'bf16' is not one of 'auto', 'float32', 'bfloat16', 'float16'" in " ".join(
        refused.output.replace("│", " ").split()
    )
    assert "No such option" in runner.invoke(app, ["sft", "--precision", "float32"]).output


def test_one_resolver_picks_autos_dtype_for_the_device():
    from speechsum_cli import dtypes
    from speechsum_cli.errors import InputError

    assert dtypes.resolve(Dtype.auto, "cpu") is Dtype.float32
    assert dtypes.resolve("bfloat16", "cpu") is Dtype.bfloat16  # a Python caller's load(dtype=...)
    assert str(dtypes.torch_dtype(Dtype.bfloat16)) == "torch.bfloat16"
    assert dtypes.of_torch(dtypes.torch_dtype(Dtype.float16)) is Dtype.float16
    with pytest.raises(InputError, match="'bf16' is not one of auto, float32, bfloat16, float16"):
        dtypes.resolve("bf16", "cpu")


# --- dpo, which had drifted from sft's skeleton ---------------------------------------------


@pytest.fixture(scope="module")
def pairs_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    rows = []
    for i, (chosen, rejected) in enumerate(
        [
            ("Alice opened the review.", "Carol opened it at 10."),
            ("Bob sends the contract.", "Dana sends 5 contracts."),
            ("The team hires three.", "The team hires 7. 7."),
            ("The launch moves to March.", "It moves to April 2."),
        ]
    ):
        espeak(chosen, folder / f"p{i}.wav")
        rows.append(
            {"id": f"p{i}", "audio": f"p{i}.wav", "query": "Summarize.", "chosen": chosen, "rejected": rejected}
        )
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dpo_resumes_records_the_step_and_checks_gradients(tiny_models, pairs_data, tmp_path, monkeypatch):
    from speechsum_cli.stages import dpo
    from speechsum_cli.training.settings import TrainSettings
    from speechsum_cli.training.trainer import GradientCheck

    out = tmp_path / "dpo"
    cfg = dpo.DpoConfig(
        data=pairs_data,
        model=str(tiny_models("qwen2_audio")),
        out=out,
        train=TrainSettings(max_steps=4, save_steps=2, batch_size=1, lr=1e-3, logging_steps=1),
    )
    real_call, calls, checks = dpo.PairCollator.__call__, {"n": 0}, []

    def crash_on_fourth_batch(self, rows):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated crash")
        return real_call(self, rows)

    real_init = dpo.DpoTrainer.__init__

    def spy_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        checks.append(any(isinstance(c, GradientCheck) for c in self.callback_handler.callbacks))

    monkeypatch.setattr(dpo.DpoTrainer, "__init__", spy_init)
    monkeypatch.setattr(dpo.PairCollator, "__call__", crash_on_fourth_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        dpo.run(cfg)
    monkeypatch.setattr(dpo.PairCollator, "__call__", real_call)
    assert (tmp_path / ".dpo.partial" / "checkpoint-2").is_dir() and not out.exists()

    result = dpo.run(cfg)  # the same settings: continues by itself
    assert result.metrics["resumed_from_step"] == 2 and result.metrics["global_step"] == 4
    assert checks == [True, True]
    record = json.loads((out / "speechsum.json").read_text())
    assert record["metrics"]["resumed_from_step"] == 2
    assert "rewards/margins_last" in record["metrics"]


def test_dpo_trains_on_long_audio_with_chunk(tiny_models, pairs_data, tmp_path):
    """`dpo --help` offered --on-long-audio chunk and the run refused it; now it trains on every window."""
    import soundfile as sf

    rows = [json.loads(line) for line in pairs_data.read_text().splitlines()]
    long_wav = tmp_path / "long.wav"
    wave, sr = sf.read(pairs_data.parent / rows[0]["audio"])
    import numpy as np

    sf.write(long_wav, np.tile(wave, int(np.ceil(8 * sr / len(wave))))[: 8 * sr], sr)  # 8 s > 5 s window
    rows[0]["audio"] = str(long_wav)
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({**r, "audio": str(pairs_data.parent / r["audio"]) if r["id"] != "p0" else r["audio"]}) + "\n"
            for r in rows
        )
    )
    result = runner.invoke(
        app,
        [
            "dpo",
            "-m",
            str(tiny_models("qwen2_audio")),
            "-d",
            str(data),
            "-o",
            str(tmp_path / "dpo"),
            "--max-steps",
            "2",
            "--on-long-audio",
            "chunk",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert counts["chunked_long_audio"] == 1 and counts["train_pairs"] == 4


def test_a_step_logged_twice_gets_one_step_line(capsys):
    """The training log and an eval log of the same step: one 'step N/N' header, then the eval loss."""
    from types import SimpleNamespace

    from speechsum_cli.training.trainer import StderrLog

    log = StderrLog(("rewards/accuracies",))
    state = SimpleNamespace(is_world_process_zero=True, global_step=24, max_steps=24)
    log.on_log(None, state, None, logs={"loss": 1.5, "rewards/accuracies": 0.75})
    log.on_log(None, state, None, logs={"eval_loss": 2.0})
    err = capsys.readouterr().err
    assert err.count("step 24/24") == 1 and "eval_loss 2" in err and "rewards/accuracies 0.75" in err


GENERATING = {
    "summarize": ("speechsum_cli.stages.summarize", "SummarizeConfig"),
    "eval": ("speechsum_cli.stages.evaluate", "EvalConfig"),
    "pairs": ("speechsum_cli.stages.pairs", "PairsConfig"),
    "distill": ("speechsum_cli.stages.distill", "DistillConfig"),
}
GENERATION_FLAGS = {
    "--max-new-tokens": "max_new_tokens",
    "--temperature": "temperature",
    "--top-p": "top_p",
    "--batch-size": "batch_size",
}


@pytest.mark.parametrize("name", sorted(GENERATING))
def test_generation_flags_have_one_default_each_and_the_config_agrees(name):
    """--max-new-tokens/--temperature/--top-p/--batch-size: the shared default unless the help says
    why (speechsum_cli/generation.py), and the stage config's default is the flag's."""
    import dataclasses
    import importlib

    from speechsum_cli import generation

    module, config = GENERATING[name]
    fields = {f.name: f.default for f in dataclasses.fields(getattr(importlib.import_module(module), config))}
    cmd = command(name)
    for flag, field_name in GENERATION_FLAGS.items():
        found = [p for p in cmd.params if flag in p.opts]
        if not found or field_name not in fields:  # distill's --batch-size is the training flag
            continue
        param = found[0]
        assert param.default == fields[field_name], (name, flag, param.default, fields[field_name])
        if param.default != generation.SHARED[field_name]:
            assert f"(Here {param.default}: " in param.help, (name, flag, param.help)
        else:
            assert "(Here " not in param.help, (name, flag)
