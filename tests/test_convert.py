"""``speechsum convert`` and the loader's chat formats: ms-swift / LLaMA-Factory jsonl round trips,
relative audio paths, refused rows (file:line, nothing written), and sft / dpo reading a swift
jsonl directly on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from speechsum_cli.app import app
from tests.conftest import espeak

runner = CliRunner()

SENTENCES = (
    "Alice opened the budget review at nine.",
    "Bob will send the contract by Friday.",
    "The launch moves to March fourteenth.",
    "We decided to hire three engineers.",
)
QUERY = "Summarize in one sentence."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A data folder with ``audio/clip{i}.wav`` (espeak-ng speech)."""
    root = tmp_path_factory.mktemp("convert-data")
    (root / "audio").mkdir()
    for i, text in enumerate(SENTENCES):
        espeak(text, root / "audio" / f"clip{i}.wav", speed=200)
    return root


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def swift_sft_rows(corpus: Path) -> list[dict]:
    """ms-swift's SFT rows as its docs show them: absolute audio paths, one <audio> tag each."""
    return [
        {
            "messages": [{"role": "user", "content": f"<audio>{QUERY}"}, {"role": "assistant", "content": text}],
            "audios": [str(corpus / "audio" / f"clip{i}.wav")],
            "id": f"row{i}",
        }
        for i, text in enumerate(SENTENCES)
    ]


def swift_dpo_rows(corpus: Path) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "system", "content": "Only state what was said."},
                {"role": "user", "content": f"<audio>{QUERY}"},
                {"role": "assistant", "content": text},
            ],
            "rejected_response": f"{text} Also, the moon is made of cheese.",
            "audios": [str(corpus / "audio" / f"clip{i}.wav")],
            "id": f"row{i}",
        }
        for i, text in enumerate(SENTENCES)
    ]


def convert(*args: str):
    return runner.invoke(app, ["convert", *args])


def load(path: Path):
    from datasets import load_from_disk

    return load_from_disk(str(path))


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [swift_sft_rows, swift_dpo_rows], ids=["sft", "dpo"])
def test_swift_to_speechsum_to_swift_round_trips(rows, corpus, tmp_path):
    source = write_jsonl(tmp_path / "swift.jsonl", rows(corpus))
    middle = tmp_path / "speechsum"
    there = convert(str(source), str(middle), "--json")
    assert there.exit_code == 0, there.output
    assert json.loads(there.stdout)["from"] == "swift" and json.loads(there.stdout)["to"] == "speechsum"
    ds = load(middle)
    assert ds[0]["audio"] == str(corpus / "audio" / "clip0.wav") and ds[0]["query"] == QUERY
    manifest = json.loads((middle / "speechsum.json").read_text())
    assert manifest["stage"] == "convert" and manifest["counts"]["rows_out"] == 4

    back = tmp_path / "back.jsonl"
    again = convert(str(middle), str(back))  # --to defaults to swift for a speechsum SRC
    assert again.exit_code == 0, again.output
    assert read_jsonl(back) == read_jsonl(source)


def test_llamafactory_sharegpt_and_alpaca_become_speechsum_rows(corpus, tmp_path):
    data = corpus / "lf"
    data.mkdir(exist_ok=True)
    sharegpt = write_jsonl(
        data / "prefs.jsonl",
        [
            {
                "conversations": [{"from": "human", "value": f"{QUERY}\n<audio>"}],
                "chosen": {"from": "gpt", "value": text},
                "rejected": {"from": "gpt", "value": "Nothing happened."},
                "audios": [f"../audio/clip{i}.wav"],
            }
            for i, text in enumerate(SENTENCES)
        ],
    )
    out = tmp_path / "pairs"
    result = convert(str(sharegpt), str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["from"] == "llamafactory" and json.loads(result.stdout)["kind"] == "preference"
    ds = load(out)
    assert ds["query"] == [QUERY] * 4 and ds["chosen"] == list(SENTENCES)
    assert ds["rejected"] == ["Nothing happened."] * 4
    assert ds["audio"] == [str(corpus / "audio" / f"clip{i}.wav") for i in range(4)], (
        "resolved against the file's folder"
    )
    assert ds["id"] == [f"{i:07d}" for i in range(4)]

    alpaca = write_jsonl(
        data / "alpaca.jsonl",
        [
            {"instruction": f"<audio>{QUERY}", "input": "", "output": text, "audios": [f"../audio/clip{i}.wav"]}
            for i, text in enumerate(SENTENCES)
        ],
    )
    result = convert(str(alpaca), str(tmp_path / "sft"), "--from", "llamafactory")
    assert result.exit_code == 0, result.output
    assert load(tmp_path / "sft")["summary"] == list(SENTENCES)


def test_speechsum_to_llamafactory_writes_paths_relative_to_the_output_and_its_dataset_info(corpus, tmp_path):
    source = write_jsonl(tmp_path / "swift.jsonl", swift_dpo_rows(corpus))
    assert convert(str(source), str(tmp_path / "pairs")).exit_code == 0
    out = corpus / "lf-out" / "dpo.jsonl"
    result = convert(str(tmp_path / "pairs"), str(out), "--to", "llamafactory", "--json")
    assert result.exit_code == 0, result.output
    first = read_jsonl(out)[0]
    assert first["messages"][-1] == {"role": "user", "content": f"<audio>{QUERY}"}
    assert first["chosen"] == {"role": "assistant", "content": SENTENCES[0]}
    assert first["audios"] == [str(corpus / "audio" / "clip0.wav")], "outside the output's folder: absolute"
    entry = json.loads(result.stdout)["dataset_info"]["dpo"]
    assert entry["ranking"] is True and entry["columns"]["audios"] == "audios"

    inside = corpus / "dpo.jsonl"  # the audio lies under the output's folder: relative
    assert convert(str(tmp_path / "pairs"), str(inside), "--to", "llamafactory").exit_code == 0
    assert read_jsonl(inside)[0]["audios"] == ["audio/clip0.wav"]
    assert convert(str(inside), str(tmp_path / "again")).exit_code == 0
    assert load(tmp_path / "again")["audio"][0] == str(corpus / "audio" / "clip0.wav")


def test_relative_paths_resolve_against_the_data_file_not_the_working_directory(corpus, tmp_path, monkeypatch):
    rows = swift_sft_rows(corpus)
    for i, row in enumerate(rows):
        row["audios"] = [f"audio/clip{i}.wav"]
    source = write_jsonl(corpus / "relative.jsonl", rows)
    monkeypatch.chdir(tmp_path)
    assert convert(str(source), "out").exit_code == 0
    assert load(tmp_path / "out")["audio"][3] == str(corpus / "audio" / "clip3.wav")


# --- refused input ------------------------------------------------------------------------------


def test_a_row_whose_audio_tags_and_audios_differ_is_refused_by_line_and_nothing_is_written(corpus, tmp_path):
    rows = swift_sft_rows(corpus)
    rows[2]["messages"][0]["content"] = f"<audio><audio>{QUERY}"
    source = tmp_path / "swift.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + "\n" + json.dumps(rows[2]) + "\n")
    out = tmp_path / "out"
    result = convert(str(source), str(out))
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert f"{source}:4: 2 <audio> tag(s) but 1 entry in 'audios' (they must match one to one)" in message
    assert "Fix or remove those lines" in message and "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [source]

    for target in (str(tmp_path / "x.jsonl"), str(tmp_path / "sft")):  # the loader refuses it for every stage
        assert f"{source}:4:" in " ".join(
            runner.invoke(app, ["sft", "--data", str(source), "--model", "unused", "--out", target]).stderr.split()
        )


def test_wrong_flags_and_destinations_say_what_to_do(corpus, tmp_path):
    source = write_jsonl(tmp_path / "swift.jsonl", swift_sft_rows(corpus))
    result = convert(str(source), str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1
    assert "a speechsum dataset is written as a directory" in " ".join(result.stderr.split())
    result = convert(str(source), str(tmp_path / "out"), "--from", "speechsum")
    assert "--from speechsum: " in result.stderr and "reads as swift" in " ".join(result.stderr.split())
    result = convert(str(tmp_path / "missing.jsonl"), str(tmp_path / "out"))
    assert result.exit_code == 1 and "does not exist" in result.stderr
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"id": "a", "audio": "x.wav", "transcript": "hi"}])
    result = convert(str(plain), str(tmp_path / "chat.jsonl"))
    assert result.exit_code == 1
    assert "has no column 'query', 'summary'" in " ".join(result.stderr.split())
    assert not (tmp_path / "chat.jsonl").exists()


# --- the training stages read chat jsonl directly --------------------------------------------------


def lora_b_norm(adapter: Path) -> float:
    from safetensors.torch import load_file

    tensors = load_file(adapter / "adapter_model.safetensors")
    return sum(float(t.abs().sum()) for name, t in tensors.items() if "lora_B" in name)


def test_sft_trains_from_a_swift_jsonl(corpus, tiny_models, tmp_path):
    source = write_jsonl(tmp_path / "swift.jsonl", swift_sft_rows(corpus))
    out = tmp_path / "sft"
    result = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(source),
            "--model",
            str(tiny_models("qwen2_audio")),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--lr",
            "1e-2",
            "--batch-size",
            "2",
            "--warmup",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["train_rows"] == 4
    assert lora_b_norm(out) > 0, "LoRA B starts at zero: the adapter trained"


def test_dpo_trains_from_a_swift_dpo_jsonl(corpus, tiny_models, tmp_path):
    source = write_jsonl(tmp_path / "swift-dpo.jsonl", swift_dpo_rows(corpus))
    out = tmp_path / "dpo"
    result = runner.invoke(
        app,
        [
            "dpo",
            "--data",
            str(source),
            "--model",
            str(tiny_models("qwen2_audio")),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--lr",
            "1e-2",
            "--batch-size",
            "2",
            "--warmup",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["train_pairs"] == 4
    assert lora_b_norm(out) > 0


def test_a_llamafactory_json_array_is_read_and_its_bad_rows_named_by_position(corpus, tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "<audio>What was decided?"},
                {"role": "assistant", "content": text},
            ],
            "audios": [str(corpus / "audio" / f"clip{i}.wav")],
        }
        for i, text in enumerate(SENTENCES)
    ]
    source = tmp_path / "mllm_audio.json"  # LLaMA-Factory's demos are .json arrays
    source.write_text(json.dumps(rows, indent=2))
    assert convert(str(source), str(tmp_path / "ok")).exit_code == 0
    assert load(tmp_path / "ok")["summary"] == list(SENTENCES)

    rows[1]["audios"] = []
    source.write_text(json.dumps(rows, indent=2))
    result = convert(str(source), str(tmp_path / "bad"))
    assert result.exit_code == 1 and not (tmp_path / "bad").exists()
    assert f"{source} row 2: 1 <audio> tag(s) but 0 entries in 'audios'" in " ".join(result.stderr.split())
