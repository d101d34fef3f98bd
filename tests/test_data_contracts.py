"""Input loading with column mapping, speechsum.json lineage/redaction, atomic output dirs."""

from __future__ import annotations

import json

import pytest

from speechsum_cli.data.dataset import ColumnMap, load_rows, require_columns, rows_with_empty
from speechsum_cli.errors import InputError
from speechsum_cli.manifest import atomic_output_dir, read_manifest, write_manifest


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_other_column_names_is_mapped_and_paths_resolved(tmp_path):
    data = write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"file": "clips/a.wav", "text": "Alice spoke."},
            {"file": "clips/b.wav", "text": ""},
        ],
    )
    ds = load_rows(data, columns=ColumnMap(audio="file", transcript="text"))
    assert set(ds.column_names) == {"id", "audio", "transcript"}
    assert ds["id"] == ["0000000", "0000001"]
    assert ds[0]["audio"] == str((tmp_path / "clips" / "a.wav").resolve())
    assert rows_with_empty(ds, "transcript") == ["0000001"]


def test_loading_a_saved_dataset_never_writes_into_its_directory(tmp_path):
    """A stage's input is read-only: resolving relative audio paths of a saved dataset (e.g. the
    pairs that dpo reads) must not leave datasets' cache-*.arrow files in the input's folder."""
    from datasets import Dataset

    saved = tmp_path / "pairs"
    Dataset.from_list([{"id": 1, "audio": "clips/a.wav"}, {"id": 2, "audio": "clips/b.wav"}]).save_to_disk(str(saved))
    before = sorted(p.name for p in saved.iterdir())
    ds = load_rows(saved)
    assert ds["id"] == ["1", "2"]
    assert ds[1]["audio"] == str((saved / "clips" / "b.wav").resolve())
    assert sorted(p.name for p in saved.iterdir()) == before


def test_missing_mapped_column_names_the_flag_and_what_was_found(tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", [{"file": "a.wav", "text": "x"}])
    with pytest.raises(InputError, match=r"no column 'wav' \(--audio-column\) \(found: file, text\)"):
        load_rows(data, columns=ColumnMap(audio="wav"))


def test_folder_of_audio_with_sidecar_transcripts(tmp_path, speech_wav):
    (tmp_path / "talks").mkdir()
    for name in ("one", "two"):
        (tmp_path / "talks" / f"{name}.wav").write_bytes(speech_wav.read_bytes())
    (tmp_path / "talks" / "one.txt").write_text("Alice opened the meeting.\n")
    ds = load_rows(tmp_path / "talks")
    assert ds["id"] == ["one", "two"]
    assert ds["transcript"] == ["Alice opened the meeting.", None]


def test_duplicate_ids_and_empty_data_are_refused(tmp_path):
    with pytest.raises(InputError, match="1 duplicate id"):
        load_rows(write_jsonl(tmp_path / "d.jsonl", [{"id": "a"}, {"id": "a"}]))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(InputError):
        load_rows(tmp_path / "e.jsonl")


def test_require_columns_lists_every_missing_column(tmp_path):
    ds = load_rows(write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "query": "q", "chosen": "c"}]))
    with pytest.raises(InputError, match=r"no column 'rejected', 'audio' \(found: id, query, chosen\)\. Run"):
        require_columns(ds, ["rejected", "audio"], "p.jsonl", "Run 'speechsum pairs' first.")


def test_manifest_keeps_lineage_and_never_writes_secrets(tmp_path):
    upstream = tmp_path / "synth"
    upstream.mkdir()
    write_manifest(upstream, stage="synth", config={"n": 2}, counts={"written": 2})
    write_manifest(
        tmp_path / "sft",
        stage="sft",
        config={
            "api_key": "sk-secret",
            "api_key_env": "OPENAI_API_KEY",
            "nested": {"token": "t"},
            "lr": 1e-4,
            "max_tokens": 512,
            "hf_token": "hf_x",
        },
        inputs=[upstream],
        counts={"rows_in": 2},
    )
    text = (tmp_path / "sft" / "speechsum.json").read_text()
    assert "sk-secret" not in text and '"t"' not in text and "hf_x" not in text
    manifest = read_manifest(tmp_path / "sft")
    assert manifest["config"] == {"api_key_env": "OPENAI_API_KEY", "nested": {}, "lr": 1e-4, "max_tokens": 512}
    assert manifest["inputs"][0]["manifest"]["stage"] == "synth"


def test_atomic_output_dir_leaves_nothing_on_failure_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(out) as tmp:
        (tmp / "done.txt").write_text("done")
    assert (out / "done.txt").read_text() == "done"
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        with atomic_output_dir(out):
            pass
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


# --- data without rows (issue 28) ---------------------------------------------------------------


def empty_inputs(tmp_path):
    """A zero-row save_to_disk dataset, a zero-row parquet, a jsonl of blank lines, an empty JSON
    list: what each holds instead of rows."""
    from datasets import Dataset

    columns = {name: [] for name in ("id", "audio", "transcript", "query", "summary")}
    Dataset.from_dict(columns).save_to_disk(str(tmp_path / "saved"))
    Dataset.from_dict(columns).to_parquet(str(tmp_path / "rows.parquet"))
    (tmp_path / "blank.jsonl").write_text("\n  \n\n")
    (tmp_path / "empty.json").write_text("[]\n")
    return {
        "saved": "a saved dataset with no data files",
        "rows.parquet": "a parquet file of 0 rows",
        "blank.jsonl": "only blank lines",
        "empty.json": "an empty JSON list",
    }


def test_data_without_rows_is_refused_by_name(tmp_path):
    for name, found in empty_inputs(tmp_path).items():
        with pytest.raises(InputError) as refused:
            load_rows(tmp_path / name)
        expected = f"data '{tmp_path / name}' has no rows (found {found}); a stage needs at least"
        assert str(refused.value).startswith(expected), refused.value


def test_an_empty_split_is_refused_and_the_other_splits_still_load(tmp_path):
    from datasets import Dataset, DatasetDict

    splits = {
        "train": Dataset.from_dict({"id": ["a"], "transcript": ["x"]}),
        "test": Dataset.from_dict({"id": [], "transcript": []}),
    }
    DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    assert load_rows(tmp_path / "dd", split="train")["id"] == ["a"]
    with pytest.raises(InputError, match=r"data '.*dd/test' has no rows \(found a saved dataset"):
        load_rows(tmp_path / "dd", split="test")


STAGE_ARGS = {
    "sft": ["--model", "{model}"],
    "distill": ["--student", "{model}", "--teacher", "{model}"],
    "dpo": ["--model", "{model}"],
    "pairs": ["--model", "{model}", "--judge", "offline"],
    "eval": ["--model", "{model}", "--no-judge"],
}


@pytest.mark.parametrize("stage", sorted(STAGE_ARGS))
def test_every_training_and_eval_stage_names_an_empty_saved_dataset(stage, tmp_path, tiny_models):
    """A zero-row save_to_disk dataset was a raw IndexError from datasets in all five stages."""
    from typer.testing import CliRunner

    from speechsum_cli.app import app

    empty_inputs(tmp_path)
    model = str(tiny_models("qwen2_audio"))
    args = [a.format(model=model) for a in STAGE_ARGS[stage]]
    result = CliRunner().invoke(app, [stage, "--data", str(tmp_path / "saved"), *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, IndexError)
    message = " ".join(result.output.split())
    found = "has no rows (found a saved dataset with no data files)"
    assert f"data '{tmp_path / 'saved'}' {found}" in message
