"""`speechsum summarize` end to end on espeak-ng speech with a tiny model of every family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from speechsum_cli.app import app
from speechsum_cli.families import FAMILIES, Prompt, load
from speechsum_cli.inference import recordings
from tests.conftest import speech_of_duration

FAMILY_TYPES = sorted(FAMILIES)
WINDOW = 5.0  # the tiny models' audio window (tests/conftest.py)
runner = CliRunner()


def summarize_json(*args: str) -> dict:
    result = runner.invoke(app, ["summarize", *args, "--format", "json", "--no-progress"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_three_and_a_half_windows_give_four_chunks_and_every_sample_reaches_the_model(
    model_type, tiny_models, tmp_path
):
    """Window by window (--windows-per-prompt 1): four prompts, then one combine round."""
    model = tiny_models(model_type)
    audio = speech_of_duration(tmp_path / "long.wav", 3.5 * WINDOW, workdir=tmp_path)

    report = summarize_json(
        str(audio), "--model", str(model), "--max-new-tokens", "4", "--style", "bullets", "--windows-per-prompt", "1"
    )

    duration = sf.info(audio).duration
    frame = 1 / 16000
    chunks = report["chunks"]
    assert len(chunks) == 4 and [c["windows"] for c in chunks] == [1, 1, 1, 1]
    assert chunks[0]["start"] == 0.0
    assert all(abs(a["end"] - b["start"]) < 1e-9 for a, b in zip(chunks, chunks[1:]))
    assert all(c["end"] - c["start"] <= WINDOW + frame for c in chunks)
    assert abs(chunks[-1]["end"] - duration) <= frame
    assert abs(report["encoded_seconds"] - duration) <= frame
    assert report["reduce_rounds"] == 1
    assert report["style"] == "bullets"
    assert report["real_time_factor"] > 0


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_recording_that_fits_the_context_is_read_in_one_prompt(model_type, tiny_models, tmp_path):
    """By default the four windows fill one prompt (as training reads a long row): one answer, no
    combine step whose scaffold a small model could copy."""
    model = tiny_models(model_type)
    audio = speech_of_duration(tmp_path / "long.wav", 3.5 * WINDOW, workdir=tmp_path)

    report = summarize_json(str(audio), "--model", str(model), "--max-new-tokens", "4")

    duration = sf.info(audio).duration
    (chunk,) = report["chunks"]
    assert chunk["windows"] == 4 and chunk["start"] == 0.0 and abs(chunk["end"] - duration) <= 1 / 16000
    assert report["reduce_rounds"] == 0 and report["summary"] == chunk["summary"]
    assert abs(report["encoded_seconds"] - duration) <= 1 / 16000


def test_the_prompt_of_a_long_recording_is_the_one_training_reads(tiny_models, tmp_path):
    """summarize's windows of a recording are exactly the windows sft/distill/pairs put in one prompt."""
    from speechsum_cli.data.audio import iter_chunks
    from speechsum_cli.data.rows import decode_row_audio
    from speechsum_cli.inference.reading import group_audio, window_groups

    audio = speech_of_duration(tmp_path / "long.wav", 2.6 * WINDOW, workdir=tmp_path)
    (group,) = window_groups(iter_chunks(audio, 16000, WINDOW), per_prompt=8)
    trained = decode_row_audio({"id": "r", "audio": str(audio)}, 16000, WINDOW, chunk=True)
    read = group_audio(group)
    assert len(read) == len(trained) == 3
    assert all(np.array_equal(a, b) for a, b in zip(read, trained))


@pytest.mark.parametrize("model_type", ["qwen2_audio", "voxtral"])
def test_windows_per_prompt_is_what_the_context_holds(model_type, tiny_models):
    """The planned windows fit beside the query and the generation budget; one more would not."""
    from speechsum_cli.inference.reading import windows_per_prompt

    lm = load(str(tiny_models(model_type)), device="cpu", dtype="float32")
    lm.model.config.get_text_config().max_position_embeddings = 1000
    window = np.zeros(int(WINDOW * lm.sampling_rate), dtype=np.float32)
    query, budget = "Summarize the recording as bullets.", 100
    n = windows_per_prompt(lm, [query], budget)
    length = lambda k: lm.encode([Prompt(query, [window] * k)]).inputs["input_ids"].shape[1]  # noqa: E731
    assert n >= 2
    assert length(n) + budget <= 1000 < length(n + 1) + budget + 32
    assert windows_per_prompt(lm, [query], budget, limit=2) == 2
    assert windows_per_prompt(lm, [query], 990) == 1  # never fewer than one window


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_padding_in_a_batch_does_not_change_what_the_model_sees(model_type, tiny_models, tmp_path):
    """Two clips of different lengths: batched logits equal single-clip logits (left padding)."""
    lm = load(str(tiny_models(model_type)), device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    short = (0.1 * rng.standard_normal(int(1.7 * lm.sampling_rate))).astype(np.float32)
    full = (0.1 * rng.standard_normal(int(WINDOW * lm.sampling_rate))).astype(np.float32)
    prompts = [Prompt("Summarize the recording.", short), Prompt("Give a one-sentence TL;DR.", full)]

    def last_logits(batch_prompts):
        batch = lm.encode(batch_prompts)
        with torch.inference_mode():
            return lm.model(**lm.to_model(batch.inputs)).logits[:, -1, :]

    together = last_logits(prompts)
    alone = torch.cat([last_logits([p]) for p in prompts])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    # The comparison is meaningful only if audio reaches the logits at all.
    other = last_logits([Prompt("Summarize the recording.", short[::-1].copy())])
    assert not torch.allclose(other[0], alone[0], atol=1e-5)


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_batch_of_two_files_gives_the_same_summaries_as_one_at_a_time(model_type, tiny_models, tmp_path):
    model = str(tiny_models(model_type))
    a = speech_of_duration(tmp_path / "a.wav", 2.5, workdir=tmp_path)
    b = speech_of_duration(tmp_path / "b.wav", 4.5, workdir=tmp_path)
    args = ["--model", model, "--max-new-tokens", "6"]

    both = summarize_json(str(a), str(b), *args, "--batch-size", "2")
    one_a = summarize_json(str(a), *args, "--batch-size", "1")
    one_b = summarize_json(str(b), *args, "--batch-size", "1")

    assert [r["audio"] for r in both] == [str(a), str(b)]
    assert both[0]["summary"] == one_a["summary"]
    assert both[1]["summary"] == one_b["summary"]


@pytest.mark.slow
@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_ten_minute_recording_is_summarized_whole(model_type, tiny_models, tmp_path):
    audio = speech_of_duration(tmp_path / "ten.wav", 600.0, workdir=tmp_path)
    report = summarize_json(
        str(audio),
        "--model",
        str(tiny_models(model_type)),
        "--max-new-tokens",
        "2",
        "--batch-size",
        "8",
        "--windows-per-prompt",
        "1",
    )
    assert len(report["chunks"]) >= 120
    assert abs(report["encoded_seconds"] - 600.0) <= 1 / 16000
    # 120+ parts, at most REDUCE_FAN_IN per combine prompt: more than one round.
    assert report["reduce_rounds"] >= 2


def test_directory_input_text_md_and_output_file(tiny_models, tmp_path):
    model = str(tiny_models("qwen2_audio"))
    folder = tmp_path / "recordings"
    folder.mkdir()
    speech_of_duration(folder / "b.wav", 2.0, workdir=tmp_path)
    speech_of_duration(folder / "a.wav", 3.0, workdir=tmp_path)
    (folder / "notes.txt").write_text("not audio, ignored by extension")
    out = tmp_path / "out" / "summary.md"

    result = runner.invoke(
        app,
        [
            "summarize",
            str(folder),
            "--model",
            model,
            "--format",
            "md",
            "-o",
            str(out),
            "--max-new-tokens",
            "3",
            "--no-progress",
        ],
    )

    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.index("## a.wav") < text.index("## b.wav")
    assert result.stdout == ""


def test_reduce_packs_parts_within_the_context(tiny_models):
    lm = load(str(tiny_models("qwen2_audio")), device="cpu", dtype="float32")
    parts = [(i * 5.0, i * 5.0 + 5.0, f"Part {i} said the budget is {i} million.") for i in range(30)]
    budget = 200
    groups = recordings.group_parts(lm, parts, "Summarize.", budget)
    assert [p for g in groups for p in g] == parts  # order kept, nothing lost
    assert all(len(g) <= recordings.REDUCE_FAN_IN for g in groups)
    for group in groups:
        tokens = recordings.text_tokens(lm, recordings.combine_query(group, "Summarize."))
        assert tokens <= budget or len(group) == 1


# --- errors -------------------------------------------------------------------------------


def run_cli(*args: str):
    return runner.invoke(app, ["summarize", *args, "--no-progress"])


def assert_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Error:" in result.stderr
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file(tiny_models, tmp_path):
    assert_error(
        run_cli(str(tmp_path / "nope.wav"), "--model", str(tiny_models("qwen2_audio"))), "nope.wav", "does not exist"
    )


def test_text_file_renamed_wav(tiny_models, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("Meeting notes: Alice will send the budget.")
    assert_error(run_cli(str(fake), "--model", str(tiny_models("qwen2_audio"))), "notes.wav", "text, not audio")


def test_empty_wav(tiny_models, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert_error(run_cli(str(empty), "--model", str(tiny_models("qwen2_audio"))), "empty.wav", "0 bytes")


def test_zero_length_wav(tiny_models, tmp_path):
    silent = tmp_path / "zero.wav"
    sf.write(silent, np.zeros(0, dtype=np.float32), 16000)
    assert_error(run_cli(str(silent), "--model", str(tiny_models("qwen2_audio"))), "zero.wav", "zero length")


def test_all_bad_files_are_reported_at_once(tiny_models, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    assert_error(
        run_cli(str(tmp_path / "gone.wav"), str(empty), "--model", str(tiny_models("qwen2_audio"))),
        "2 audio inputs are unusable",
        "gone.wav",
        "empty.wav",
    )


def test_unknown_model_type_lists_supported_families(speech_wav, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    assert_error(
        run_cli(str(speech_wav), "--model", str(ckpt)), "model_type 'wav2vec2' is not supported", *FAMILY_TYPES
    )


def test_style_not_a_preset(speech_wav, tiny_models):
    assert_error(
        run_cli(str(speech_wav), "--model", str(tiny_models("qwen2_audio")), "--style", "haiku"),
        "--style 'haiku' is not a preset",
        "bullets",
        "--query",
    )


def test_style_and_query_together(speech_wav, tiny_models):
    assert_error(
        run_cli(
            str(speech_wav), "--model", str(tiny_models("qwen2_audio")), "--style", "bullets", "--query", "who spoke?"
        ),
        "--style and --query",
    )


def test_chunk_seconds_beyond_the_window(speech_wav, tiny_models):
    assert_error(
        run_cli(str(speech_wav), "--model", str(tiny_models("qwen2_audio")), "--chunk-seconds", "30"),
        "--chunk-seconds 30 exceeds the model's audio window of 5 s",
    )


def test_on_long_audio_error_refuses_instead_of_truncating(speech_wav, tiny_models):
    assert_error(
        run_cli(str(speech_wav), "--model", str(tiny_models("qwen2_audio")), "--on-long-audio", "error"),
        "longer than the 5 s window",
        "speech.wav",
        "--on-long-audio chunk",
    )


def test_default_model_unavailable_offline_names_the_flag(speech_wav, monkeypatch):
    monkeypatch.delenv("SPEECHSUM_MODEL", raising=False)
    result = run_cli(str(speech_wav))
    assert_error(result, "microsoft/Phi-4-multimodal-instruct", "--model", "SPEECHSUM_MODEL")


def test_model_from_environment_variable(speech_wav, tiny_models, monkeypatch):
    monkeypatch.setenv("SPEECHSUM_MODEL", str(tiny_models("qwen2_audio")))
    result = run_cli(str(speech_wav), "--max-new-tokens", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == str(tiny_models("qwen2_audio"))


def test_remote_code_phi4_checkpoint_points_to_the_transformers_revision(speech_wav, tmp_path):
    ckpt = tmp_path / "phi4mm"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "phi4mm"}))
    assert_error(
        run_cli(str(speech_wav), "--model", str(ckpt)),
        "model_type 'phi4mm' is not supported",
        "microsoft/Phi-4-multimodal-instruct@refs/pr/70",
    )


def test_unreachable_hub_revision_names_the_flag(speech_wav):
    assert_error(
        run_cli(str(speech_wav), "--model", "nobody/no-such-model@main"),
        "cannot load model 'nobody/no-such-model@main'",
        "--model",
        "SPEECHSUM_MODEL",
    )


# --- the shared option vocabulary (issue 17) ---------------------------------------------------


def test_json_is_format_json_and_ckpt_is_model(tiny_models, tmp_path):
    audio = speech_of_duration(tmp_path / "short.wav", 3.0, workdir=tmp_path)
    model = str(tiny_models("qwen2_audio"))
    by_format = summarize_json(str(audio), "--model", model, "--max-new-tokens", "3")
    result = runner.invoke(
        app, ["summarize", str(audio), "--ckpt", model, "--max-new-tokens", "3", "--json", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    by_flag = json.loads(result.stdout)
    assert by_flag["summary"] == by_format["summary"] and by_flag["chunks"] == by_format["chunks"]


def test_json_and_format_md_conflict(speech_wav):
    result = run_cli(str(speech_wav), "--json", "--format", "md")
    assert result.exit_code == 2
    assert "--json is --format json" in result.output


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_on_long_audio_offers_only_chunk_and_error(speech_wav, policy):
    result = run_cli(str(speech_wav), "--on-long-audio", policy)
    assert result.exit_code == 2
    assert f"'{policy}' is not a policy summarize supports; use chunk or error" in " ".join(
        result.output.replace("│", " ").split()
    )
    help_line = next(
        x
        for x in runner.invoke(app, ["summarize", "--help"], env={"COLUMNS": "200"}).stdout.splitlines()
        if "--on-long-audio" in x
    )
    assert "[chunk|error]" in help_line and "truncate|" not in help_line


def test_dtype_speaks_the_shared_vocabulary(tiny_models, tmp_path):
    audio = speech_of_duration(tmp_path / "short.wav", 2.0, workdir=tmp_path)
    args = [
        "summarize",
        str(audio),
        "--model",
        str(tiny_models("qwen2_audio")),
        "--max-new-tokens",
        "2",
        "--no-progress",
        "--dtype",
    ]
    refused = runner.invoke(app, [*args, "fp32"])  # the pre-release short spelling is gone
    assert refused.exit_code == 2
    assert "'fp32' is not one of 'auto', 'float32', 'bfloat16', 'float16'" in " ".join(
        refused.output.replace("│", " ").split()
    )
    result = runner.invoke(app, [*args, "float32"])
    assert result.exit_code == 0, result.output
    assert "Error" not in result.output


# --- audio shorter than the encoder reads (issue 28) -------------------------------------------


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_clip_of_ten_samples_is_padded_to_the_encoders_shortest_and_generates(model_type, tiny_models):
    """Qwen2-Audio's forward failed on a clip of one audio token (10-960 samples): TypeError
    'NoneType' object is not subscriptable. Every family pads such a clip with silence to its
    shortest and says how much (Batch.padded_seconds)."""
    from speechsum_cli.families import GenerationSettings

    lm = load(str(tiny_models(model_type)), device="cpu", dtype="float32")
    sr = lm.sampling_rate
    for n in (10, 960):
        texts, batch = lm.generate_batch(
            [Prompt("Summarize.", np.full(n, 0.1, np.float32))], GenerationSettings(max_new_tokens=2)
        )
        assert len(texts) == 1 and batch.audio_seconds == [n / sr] and batch.audio_tokens[0] >= 1
        shortest = lm.family.min_clip_samples(lm.processor, lm.config)
        assert batch.padded_seconds == [pytest.approx(max(0, shortest - n) / sr)]
    long_enough = lm.encode([Prompt("Summarize.", np.zeros(shortest, np.float32))])
    assert long_enough.padded_seconds == [0.0]


def test_summarize_of_clips_shorter_than_the_encoder_reads_says_so(tiny_models, tmp_path):
    """10 samples, 960 samples and a wav cut to 100 bytes: summarized, with a warning naming each
    file and 'padded_seconds' in the JSON; a normal file beside them is not padded. One file per
    batch: a short clip batched with a longer one did not fail before, alone it did."""
    model = tiny_models("qwen2_audio")
    ten, most = tmp_path / "ten.wav", tmp_path / "most.wav"
    sf.write(ten, np.full(10, 0.1, np.float32), 16000)
    sf.write(most, np.full(960, 0.1, np.float32), 16000)
    normal = speech_of_duration(tmp_path / "normal.wav", 1.0, workdir=tmp_path)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(normal.read_bytes()[:100])
    files = [ten, most, cut, normal]

    result = runner.invoke(
        app,
        [
            "summarize",
            *map(str, files),
            "--model",
            str(model),
            "--format",
            "json",
            "--no-progress",
            "--max-new-tokens",
            "3",
            "--batch-size",
            "1",
        ],
    )

    assert result.exit_code == 0, result.output
    lm = load(str(model), device="cpu", dtype="float32")
    shortest = lm.family.min_clip_samples(lm.processor, lm.config) / 16000
    by_file = {r["audio"]: r for r in json.loads(result.stdout)}
    for path in (ten, most, cut):
        report = by_file[str(path)]
        assert report["encoded_seconds"] == pytest.approx(report["duration"], abs=1e-4)
        assert report["padded_seconds"] == pytest.approx(shortest - report["duration"], abs=1e-4)
    assert by_file[str(normal)]["padded_seconds"] == 0.0
    warning = " ".join(result.stderr.split())
    assert (
        f"Warning: 3 recordings shorter than the {shortest:.3f} s the model's audio encoder "
        "reads, so each was summarized with silence after it up to that length:"
    ) in warning
    assert all(f"'{path}'" in warning for path in (ten, most, cut)) and str(normal) not in warning
