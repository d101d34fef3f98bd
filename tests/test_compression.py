"""CTC-guided compression: ``align --compress`` makes every later stage read only speaking frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families.compression import COMPRESSION_FILE, SELECTOR_FILE, keep_mask
from speechsum_cli.families.ctc_head import BLANK, HEAD_FILE

runner = CliRunner()


def aligned(rows: Path, model: Path, out: Path, *extra: str) -> Path:
    result = runner.invoke(
        app,
        [
            "align",
            "--data",
            str(rows),
            "--model",
            str(model),
            "--out",
            str(out),
            "--heldout-rows",
            "4",
            "--batch-size",
            "4",
            "--evals",
            "1",
            "--max-steps",
            "40",
            "--lr",
            "3e-3",
            "--no-progress",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def compressed(asr_rows, tiny_models, tmp_path_factory) -> Path:
    """A tiny voxtral aligned with --compress, its blank bias set so about half the frames speak
    (a random tiny LM's alignment barely leaves the blank; the selection logic is what is tested)."""
    from safetensors.torch import load_file, save_file

    out = aligned(asr_rows, tiny_models("voxtral"), tmp_path_factory.mktemp("c") / "aligned", "--compress")
    head = load_file(str(out / HEAD_FILE))
    head["blank_bias"] = torch.tensor(-1e4)  # never blank: every frame that differs from its neighbour
    save_file(head, str(out / HEAD_FILE))
    return out


def manual_keep(log_probs: torch.Tensor) -> list[list[int]]:
    """Indices of the frames to read, by the definition: not blank, not the class of the frame before."""
    best = log_probs.argmax(-1).tolist()
    out = []
    for row in best:
        kept = [t for t, c in enumerate(row) if c != BLANK and (t == 0 or row[t - 1] != c)]
        out.append(kept or [0])
    return out


def test_keep_mask_drops_blanks_merges_repeats_and_never_empties_a_clip():
    classes = [[1, 1, BLANK, 1, 3, 3, BLANK], [BLANK] * 7]
    log_probs = torch.full((2, 7, 4), -9.0)
    for i, row in enumerate(classes):
        for t, c in enumerate(row):
            log_probs[i, t, c] = 0.0
    keep = keep_mask(log_probs)
    assert keep.tolist()[0] == [True, False, False, True, True, False, False]
    assert keep.tolist()[1] == [True] + [False] * 6


def test_align_compress_writes_the_selector_and_only_then(compressed, asr_rows, tiny_models, tmp_path):
    spec = json.loads((compressed / COMPRESSION_FILE).read_text())
    assert spec["model_type"] == "voxtral" and spec["rows_per_clip"] == 50  # 5 s at 10 tokens/s
    assert (compressed / SELECTOR_FILE).is_file()
    manifest = json.loads((compressed / "speechsum.json").read_text())
    assert manifest["compressed"] is True and manifest["metrics"]["kept_tokens_per_clip"] > 0

    plain = aligned(asr_rows, tiny_models("voxtral"), tmp_path / "plain")
    assert not (plain / COMPRESSION_FILE).exists()
    from speechsum_cli.families import load

    assert load(str(plain), device="cpu", dtype="float32").compressor is None


def test_placeholders_match_the_selected_frames_and_the_forward_reads_exactly_them(compressed, speech_wav):
    from speechsum_cli.data.audio import load_audio
    from speechsum_cli.families import Prompt, load
    from speechsum_cli.families.ctc_head import load_head

    lm = load(str(compressed), device="cpu", dtype="float32")
    assert lm.compressor is not None
    sr = lm.sampling_rate
    wave = load_audio(speech_wav, sr)
    clips = [wave[: 5 * sr], wave[2 * sr : 4 * sr]]
    prompts = [
        Prompt("summarize", audio=clips[0], answer="a"),
        Prompt("no audio here", answer="b"),
        Prompt("summarize", audio=clips[1], answer="c"),
    ]
    batch = lm.encode(prompts, padding_side="right")
    ids = batch.inputs["input_ids"]
    audio_id = lm.config.audio_token_id

    # the selection, recomputed from the saved files by its definition
    features = lm.family.audio_features(lm.processor, lm.config, clips)
    lm.compressor.remove()  # the projector's own output, every frame (== the selector's: untrained since)
    with torch.no_grad():
        states = lm.family.encoder_states(lm.model, features.tensors)
        full = lm.family.project(lm.model, states)
    lm.compressor.install(lm.model)
    with torch.no_grad():
        head, _ = load_head(compressed, lm.model.get_input_embeddings().weight)
        kept = manual_keep(head(full))
    assert full.shape[1] == 50 and 1 < len(kept[0]) < 50, kept
    assert batch.audio_tokens == [len(kept[0]), 0, len(kept[1])]
    assert (ids == audio_id).sum(dim=1).tolist() == batch.audio_tokens
    assert (batch.inputs["labels"][ids == audio_id] == -100).all()

    with torch.no_grad():
        logits = lm.model(**batch.inputs).logits
        embeds = lm.model.get_input_embeddings()(ids).clone()
        rows = torch.cat([full[i, kept[i]] for i in range(2)])
        embeds[ids == audio_id] = rows
        manual = lm.model.get_submodule("model.language_model")(
            inputs_embeds=embeds, attention_mask=batch.inputs["attention_mask"]
        ).last_hidden_state
        manual = lm.model.lm_head(manual)
    torch.testing.assert_close(logits, manual)


def test_sft_on_a_compressed_model_carries_it_on_and_summarize_runs(compressed, speech_wav, tmp_path):
    from speechsum_cli.families import load

    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": f"s{i}",
                    "audio": str(speech_wav),
                    "query": "summarize",
                    "summary": "alice opened the budget review",
                }
            )
            for i in range(4)
        )
        + "\n"
    )
    out = tmp_path / "sft"
    result = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(rows),
            "--model",
            str(compressed),
            "--out",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--on-long-audio",
            "chunk",
            "--logging-steps",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / COMPRESSION_FILE).is_file() and (out / HEAD_FILE).is_file()
    assert load(str(out), device="cpu", dtype="float32").compressor is not None
    merged = tmp_path / "merged"
    again = runner.invoke(
        app,
        [
            "sft",
            "--data",
            str(rows),
            "--model",
            str(out),
            "--out",
            str(merged),
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--on-long-audio",
            "chunk",
            "--merge",
        ],
    )
    assert again.exit_code == 0, again.output
    assert (merged / COMPRESSION_FILE).is_file()
    summary = runner.invoke(
        app, ["summarize", str(speech_wav), "--model", str(merged), "--max-new-tokens", "4", "--no-progress"]
    )
    assert summary.exit_code == 0, summary.output


def test_compress_is_refused_for_a_family_whose_clips_vary(asr_rows, tiny_models, tmp_path):
    result = runner.invoke(
        app,
        [
            "align",
            "--data",
            str(asr_rows),
            "--model",
            str(tiny_models("qwen2_audio")),
            "--out",
            str(tmp_path / "o"),
            "--compress",
            "--max-steps",
            "1",
            "--heldout-rows",
            "4",
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    assert "--compress" in result.output and "qwen2_audio" in result.output
    assert not (tmp_path / "o").exists()
