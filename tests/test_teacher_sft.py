"""`speechsum sft` in text mode: a plain causal LM (the text teacher) fine-tuned on transcript + query
-> summary rows, in exactly the conversation `speechsum distill` then asks it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app

runner = CliRunner()
QUERY = "Summarize the recording in one sentence."
SYSTEM = "Only state what was said."
ROWS = [
    ("t1", "Alice opened the budget review at nine.", "Alice opened the review."),
    ("t2", "Bob sends the contract to Northwind by Friday.", "Bob sends the contract."),
    ("t3", "The team hires three engineers in March.", "Three engineers join in March."),
    ("t4", "Carol drafts the proposal and Dan books the room.", "Carol drafts, Dan books."),
]


def write_text_rows(path: Path, rows=ROWS, *, drop: str | None = None) -> Path:
    records = [{"id": i, "transcript": t, "query": QUERY, "summary": s} for i, t, s in rows]
    for record in records:
        record.pop(drop, None)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sft(*args: str):
    return runner.invoke(app, ["sft", *args, "--json"])


@pytest.fixture(scope="module")
def runs(tiny_teacher, tmp_path_factory) -> Path:
    """A runs folder as the recipes lay it out: the text LM beside the outputs (so the adapter
    names its base relative to itself: ../lm)."""
    root = tmp_path_factory.mktemp("teacher-sft") / "runs"
    shutil.copytree(tiny_teacher, root / "lm")
    write_text_rows(root / "rows.jsonl")
    return root


@pytest.fixture(scope="module")
def trained(runs) -> tuple[Path, dict]:
    """Text-mode sft of the tiny chat LM through the CLI, on 4 rows repeated (an overfit check)."""
    out = runs / "teacher-sft"
    result = sft(
        "--data",
        str(runs / "rows.jsonl"),
        "--model",
        str(runs / "lm"),
        "--out",
        str(out),
        "--system",
        SYSTEM,
        "--max-steps",
        "16",
        "--batch-size",
        "4",
        "--lr",
        "1e-2",
        "--warmup",
        "0",
        "--logging-steps",
        "1",
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_sft_trains_a_text_lm_and_its_loss_falls(trained, runs):
    out, payload = trained
    metrics, counts = payload["metrics"], payload["counts"]
    assert metrics["global_step"] == 16
    assert metrics["loss_first"] > 5.0 and metrics["loss_last"] < 0.7 * metrics["loss_first"]
    assert counts["rows_in"] == counts["train_rows"] == 4 and counts["eval_rows"] == 0
    assert counts["train_tokens"] > 4 * 20

    manifest = json.loads((out / "speechsum.json").read_text())
    assert manifest["stage"] == "sft" and manifest["mode"] == "text" and manifest["output"] == "adapter"
    assert manifest["conversation"] == {
        "user_turn": "Transcript of the recording:\n\n{transcript}\n\n{query}",
        "system": SYSTEM,
        "end_of_turn": "<|im_end|>",
    }
    assert manifest["adapter_base"] == "../lm"
    groups = {g["name"]: g for g in manifest["parameters"]}
    assert groups["LoRA"]["trainable"] > 0 and groups["language model"]["trainable"] == 0
    assert groups["language model"]["total"] > 0
    assert all(groups[g]["total"] == 0 for g in ("encoder", "projector", "other"))

    # LoRA on every attention and MLP projection of the whole model, and it moved
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "../lm"
    from safetensors.torch import load_file

    weights = load_file(str(out / "adapter_model.safetensors"))
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert any(f"{name}.lora_B" in k and v.abs().max() > 0 for k, v in weights.items()), name
    # the tokenizer is saved with its chat template
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == AutoTokenizer.from_pretrained(runs / "lm").chat_template


def test_collator_masks_prompt_and_padding_and_keeps_summary_and_end_of_turn(tiny_teacher):
    from transformers import AutoTokenizer

    from speechsum_cli.stages.sft import TextCollator
    from speechsum_cli.teacher import Teacher

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    teacher = Teacher(None, tok, "t", SYSTEM)
    rows = [{"id": i, "transcript": t, "query": QUERY, "summary": s} for i, t, s in ROWS[:2]]
    rows[1]["transcript"] += " It was a long meeting with many more words in it than the first."
    batch = TextCollator(teacher)(rows)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.pad_token_id != end  # padding is masked by position, not by id
    for i, row in enumerate(rows):
        prompt = teacher.prompt_ids(row["transcript"], row["query"])
        answer = tok(row["summary"], add_special_tokens=False)["input_ids"] + [end]
        n = len(prompt) + len(answer)
        ids, labels, mask = (batch[k][i].tolist() for k in ("input_ids", "labels", "attention_mask"))
        assert ids[:n] == prompt + answer
        assert labels[: len(prompt)] == [-100] * len(prompt)
        assert labels[len(prompt) : n] == answer
        assert labels[n:] == [-100] * (len(ids) - n) and mask == [1] * n + [0] * (len(ids) - n)
        assert ids[n:] == [tok.pad_token_id] * (len(ids) - n)
    assert batch["input_ids"].shape[1] == max(int(m.sum()) for m in batch["attention_mask"])
    assert (batch["attention_mask"] == 0).any()  # the first row is padded


def test_the_training_prompt_is_distills_teacher_prompt(tiny_teacher):
    """The same function renders both: a teacher is trained on exactly what distill asks it."""
    from transformers import AutoTokenizer

    from speechsum_cli.stages.distill.teacher import DistillTeacher
    from speechsum_cli.stages.sft import TextCollator
    from speechsum_cli.teacher import Teacher

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    _, transcript, summary = ROWS[0]
    for system in (None, SYSTEM):
        asked = DistillTeacher(Teacher(None, tok, "t", system), len(tok))  # what distill reads
        batch = TextCollator(Teacher(None, tok, "t", system))(
            [{"id": "x", "transcript": transcript, "query": QUERY, "summary": summary}]
        )
        prompt_length = int((batch["labels"][0] == -100).sum())
        trained_prompt = batch["input_ids"][0, :prompt_length].tolist()
        assert trained_prompt == asked.prompt_ids(transcript, QUERY)
        assert tok.decode(trained_prompt) == asked.conversation.render(transcript, QUERY)
        expected = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" if system else "") + (
            f"<|im_start|>user\nTranscript of the recording:\n\n{transcript}\n\n{QUERY}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
        assert asked.conversation.render(transcript, QUERY) == expected


def test_the_output_is_distills_teacher(trained, runs, tmp_path, monkeypatch):
    """distill --teacher SFT_OUT: the adapter (base ../lm, relative to it) is merged into its base,
    with the trained weights, and a distillation step runs with it."""
    from transformers import AutoModelForCausalLM

    from speechsum_cli.stages.distill import DistillConfig
    from speechsum_cli.stages.distill.teacher import LocalTeacher
    from speechsum_cli.teacher import load_teacher_tokenizer
    from tests.test_compose import save_tiny_whisper
    from tests.test_distill import ROWS as AUDIO_ROWS
    from tests.test_distill import write_rows

    out, _ = trained
    monkeypatch.chdir(tmp_path)  # the relative base resolves against the adapter, not the cwd
    cfg = DistillConfig(data=Path("unused"), model="unused", teacher=str(out), out=Path("unused"), teacher_device="cpu")
    tok = load_teacher_tokenizer(str(out))
    teacher = LocalTeacher.load(cfg, tok, len(tok))
    base = AutoModelForCausalLM.from_pretrained(runs / "lm")
    ids = torch.tensor([teacher.prompt_ids(ROWS[0][1], QUERY)])
    with torch.inference_mode():
        assert not torch.allclose(teacher.model(ids).logits, base(ids).logits, atol=1e-4)

    whisper = save_tiny_whisper(tmp_path / "whisper", positions=250)
    student = tmp_path / "student"
    made = runner.invoke(
        app,
        [
            "compose",
            "--family",
            "qwen2_audio",
            "--encoder",
            str(whisper),
            "--llm",
            str(runs / "lm"),
            "--out",
            str(student),
        ],
    )
    assert made.exit_code == 0, made.output
    (tmp_path / "audio").mkdir()
    data = write_rows(tmp_path / "audio", AUDIO_ROWS[:2])
    result = runner.invoke(
        app,
        [
            "distill",
            "--data",
            str(data),
            "--student",
            str(student),
            "--teacher",
            str(out),
            "--teacher-system",
            SYSTEM,
            "--out",
            str(tmp_path / "kd"),
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "was fine-tuned by 'speechsum sft'" not in result.output  # asked with the trained system turn
    payload = json.loads(result.stdout)
    assert payload["metrics"]["global_step"] == 1 and payload["counts"]["samples_drawn"] == 2
    manifest = json.loads((tmp_path / "kd" / "speechsum.json").read_text())
    assert manifest["teacher"]["source"] == str(out)


def test_the_output_answers_in_the_mini_baselines_and_in_pairs(trained, runs, tmp_path, monkeypatch):
    """recipes/mini/baselines.py --tuned-teacher and pairs --teacher load the adapter (its base
    named relative to it) into the same weights distill's teacher has."""
    import importlib.util

    from speechsum_cli.stages.distill import DistillConfig
    from speechsum_cli.stages.distill.teacher import LocalTeacher
    from speechsum_cli.teacher import load_teacher, load_teacher_tokenizer

    out, _ = trained
    monkeypatch.chdir(tmp_path)
    tok = load_teacher_tokenizer(str(out))
    cfg = DistillConfig(data=Path("x"), model="x", teacher=str(out), out=Path("x"), teacher_device="cpu")
    distilled = LocalTeacher.load(cfg, tok, len(tok)).model
    # as pairs loads it (its --device cpu, --dtype float32)
    paired = load_teacher(str(out), tok, device="cpu", dtype="float32", system=None).model
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        assert torch.allclose(paired(ids).logits, distilled(ids).logits, atol=1e-6)

    path = Path(__file__).resolve().parents[1] / "recipes" / "mini" / "baselines.py"
    spec = importlib.util.spec_from_file_location("mini_baselines", path)
    baselines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baselines)
    answers = baselines.summarize_text(
        str(out), SYSTEM, [(ROWS[0][1], QUERY), (ROWS[1][1], QUERY)], max_new_tokens=4, batch_size=2
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_distill_warns_when_asked_without_the_trained_system_turn(trained, capsys):
    from speechsum_cli.stages.distill.checks import warn_system_mismatch
    from speechsum_cli.teacher import trained_system

    out, _ = trained
    assert trained_system(str(out)) == (True, SYSTEM)
    warn_system_mismatch(str(out), SYSTEM)
    assert "fine-tuned" not in capsys.readouterr().err
    warn_system_mismatch(str(out), None)
    text = " ".join(capsys.readouterr().err.split())
    assert f"with --system '{SYSTEM}', but distill asks it with no --teacher-system" in text


def test_merge_writes_a_causal_lm_that_plain_transformers_loads(runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from speechsum_cli.families import load

    out = tmp_path / "merged"
    result = sft(
        "--data",
        str(runs / "rows.jsonl"),
        "--model",
        str(runs / "lm"),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "1e-2",
        "--merge",
    )
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    assert AutoTokenizer.from_pretrained(out).chat_template
    assert json.loads((out / "speechsum.json").read_text())["output"] == "merged"
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        merged_logits = model(ids).logits
        assert torch.allclose(merged_logits, load(str(out), device="cpu", text=True).model(ids).logits, atol=1e-5)
        base = AutoModelForCausalLM.from_pretrained(runs / "lm").eval()
        assert not torch.allclose(merged_logits, base(ids).logits, atol=1e-4)


def test_missing_transcript_column_is_named_before_any_model_loads(runs, tmp_path):
    rows = write_text_rows(tmp_path / "rows.jsonl", drop="transcript")
    result = sft("--data", str(rows), "--model", str(runs / "lm"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"data '{rows}' has no column 'transcript' (found: id, query, summary)" in text
    assert "sft of a text LM (text mode: the model has no audio family) needs transcript, query and summary" in text
    assert "--transcript-column" in text
    assert "Parameters" not in result.output and not (tmp_path / "out").exists()


def test_empty_summaries_are_named(runs, tmp_path):
    rows = write_text_rows(tmp_path / "rows.jsonl", [("a", "Alice spoke.", "Alice spoke."), ("b", "Bob spoke.", " ")])
    result = sft("--data", str(rows), "--model", str(runs / "lm"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "1 row(s) with an empty 'summary': ids 'b'" in " ".join(result.output.split())


def test_system_is_refused_for_an_audio_llm(tiny_models, tmp_path):
    rows = write_text_rows(tmp_path / "rows.jsonl")
    result = sft(
        "--data",
        str(rows),
        "--model",
        str(tiny_models("qwen2_audio")),
        "--out",
        str(tmp_path / "out"),
        "--system",
        SYSTEM,
    )
    assert result.exit_code == 1
    assert "--system applies to text mode" in " ".join(result.output.split())


def test_a_template_that_refuses_the_system_turn_is_named(runs, tmp_path):
    from transformers import AutoTokenizer

    strict = tmp_path / "strict"
    shutil.copytree(runs / "lm", strict)
    tok = AutoTokenizer.from_pretrained(strict)
    tok.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
        "supported') }}{% endif %}" + tok.chat_template
    )
    tok.save_pretrained(strict)
    result = sft(
        "--data", str(runs / "rows.jsonl"), "--model", str(strict), "--out", str(tmp_path / "out"), "--system", SYSTEM
    )
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "--model" in text and "System role not supported" in text and "drop --system" in text
