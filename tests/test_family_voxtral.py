"""Voxtral family: placeholder counts, batching, training labels, window, released layout."""

from __future__ import annotations

import base64
import importlib.util
import json

import numpy as np
import pytest
import torch

from speechsum_cli.data.audio import load_audio
from speechsum_cli.errors import ModelError
from speechsum_cli.families import FAMILIES, GenerationSettings, Prompt, load
from speechsum_cli.families.voxtral import SPECIAL_TOKENS, VoxtralFamily, messages_for
from tests.conftest import speech_of_duration

WINDOW = 5.0  # the tiny models' audio window (tests/conftest.py)
QUERY = "Summarize the key points."


@pytest.fixture(scope="module")
def lm(tiny_models):
    return load(str(tiny_models("voxtral")), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def clips(lm, tmp_path_factory):
    """A full-window clip, a 2.3 s clip and a 0.05 s clip of espeak-ng speech at 16 kHz."""
    workdir = tmp_path_factory.mktemp("voxtral-audio")
    out = {}
    for name, seconds in (("full", WINDOW), ("mid", 2.3), ("tiny", 0.05)):
        path = speech_of_duration(workdir / f"{name}.wav", seconds, workdir=workdir)
        out[name] = load_audio(path, lm.sampling_rate)
    assert len(out["full"]) == int(WINDOW * lm.sampling_rate)
    return out


def audio_id(lm) -> int:
    return lm.config.audio_token_id


def test_registered_and_window_is_five_seconds(lm):
    assert isinstance(FAMILIES["voxtral"], VoxtralFamily)
    assert isinstance(lm.family, VoxtralFamily)
    assert lm.window_seconds == WINDOW
    assert lm.sampling_rate == 16000


def test_module_prefixes_exist_in_the_model(lm):
    names = {name for name, _ in lm.model.named_modules()}
    family = lm.family
    lm_prefix = family.language_model_prefix
    for prefix in (lm_prefix, *family.audio_encoder_prefixes, *family.projector_prefixes):
        assert prefix in names, prefix
    lora_hits = {n.rsplit(".", 1)[-1] for n in names if n.startswith(lm_prefix + ".")}
    assert set(family.lora_targets) <= lora_hits


@pytest.mark.parametrize("names", [["full"], ["tiny"], ["full", "mid", "tiny"]])
def test_placeholder_count_equals_audio_embeddings(lm, clips, names):
    prompts = [Prompt(QUERY, audio=clips[n]) for n in names]
    batch = lm.encode(prompts)
    placeholders = (batch.inputs["input_ids"] == audio_id(lm)).sum(-1).tolist()
    assert placeholders == batch.audio_tokens
    assert all(n >= 1 for n in placeholders)

    # Count what the encoder + projector really produce, per clip, through a hook.
    produced: list[int] = []
    hook = lm.model.model.multi_modal_projector.register_forward_hook(
        lambda _module, _args, output: produced.append(output.shape[0])
    )
    try:
        with torch.inference_mode():
            for row in range(len(prompts)):
                lm.model.get_audio_features(batch.inputs["input_features"][row : row + 1])
            lm.model(**batch.inputs)  # the model itself checks tokens == embeddings for the batch
    finally:
        hook.remove()
    assert produced[: len(prompts)] == placeholders
    assert produced[-1] == sum(placeholders)


def test_audio_tokens_sit_between_begin_audio_and_query(lm, clips):
    batch = lm.encode([Prompt(QUERY, audio=clips["mid"])], padding_side="right")
    tok = lm.tokenizer
    ids = batch.inputs["input_ids"][0].tolist()
    n = batch.audio_tokens[0]
    begin = tok.convert_tokens_to_ids("[BEGIN_AUDIO]")
    start = ids.index(begin) + 1
    assert ids[: start - 1] == tok.convert_tokens_to_ids(["<s>", "[INST]"])
    assert ids[start : start + n] == [audio_id(lm)] * n
    assert audio_id(lm) not in ids[start + n :]
    assert tok.decode(ids[start + n :]) == f"{QUERY}[/INST]"


def test_audio_longer_than_window_is_refused(lm):
    too_long = np.zeros(int(WINDOW * lm.sampling_rate) + 1, dtype=np.float32)
    with pytest.raises(ValueError, match="exceeds the 5 s window"):
        lm.encode([Prompt(QUERY, audio=too_long)])


def test_batched_generation_matches_one_by_one(lm, clips):
    settings = GenerationSettings(max_new_tokens=8)
    prompts = [Prompt(QUERY, audio=clips["full"]), Prompt("Who spoke?", audio=clips["mid"])]
    assert lm.generate(prompts, settings) == [lm.generate([p], settings)[0] for p in prompts]


def test_batched_logits_match_and_depend_on_the_audio(lm, clips):
    """Left padding and mixed lengths must not change a row; swapping the audio must."""
    prompts = [Prompt(QUERY, audio=clips["full"]), Prompt("Who spoke?", audio=clips["mid"])]

    def last_logits(batch_prompts):
        inputs = lm.encode(batch_prompts).inputs
        with torch.inference_mode():
            return lm.model(**inputs).logits[:, -1]

    together = last_logits(prompts)
    alone = torch.cat([last_logits([p]) for p in prompts])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
    swapped = last_logits([Prompt(QUERY, audio=clips["mid"])])
    assert (swapped[0] - alone[0]).abs().max() > 1e-3


def test_training_labels_mask_all_but_the_answer(lm, clips):
    answers = ["- Budget review at nine.", "Alice and Bob."]
    prompts = [
        Prompt(QUERY, audio=clips["full"], answer=answers[0]),
        Prompt("Who spoke?", audio=clips["tiny"], answer=answers[1], system="Be brief."),
    ]
    batch = lm.encode(prompts, padding_side="right")
    labels, ids = batch.inputs["labels"], batch.inputs["input_ids"]
    tok = lm.tokenizer
    for row, answer in enumerate(answers):
        kept = labels[row] != -100
        assert tok.decode(labels[row][kept]) == answer + "</s>"
        # the kept positions are exactly the tail of the real tokens after the prompt
        plen, length = batch.prompt_lengths[row], int(batch.inputs["attention_mask"][row].sum())
        assert kept.nonzero().flatten().tolist() == list(range(plen, length))
        assert (ids[row][kept] == labels[row][kept]).all()
        assert audio_id(lm) not in labels[row][kept].tolist()

    lm.model.train()
    try:
        out = lm.model(**batch.inputs)
        assert torch.isfinite(out.loss)
        out.loss.backward()
    finally:
        lm.model.eval()
    projector = lm.model.model.multi_modal_projector.linear_1.weight
    assert projector.grad is not None and projector.grad.abs().sum() > 0
    lm.model.zero_grad(set_to_none=True)


def test_chat_template_and_hand_rendering_agree(lm, clips):
    """The tiny checkpoint's template and the template-less (released-checkpoint) path match."""
    family, processor = lm.family, lm.processor
    prompt = Prompt(QUERY, audio=clips["tiny"], answer="Done.", system="Be brief.")
    with_template = [family.render(processor, prompt, with_answer=a) for a in (False, True)]
    head = f"<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST][BEGIN_AUDIO][AUDIO]{QUERY}[/INST]"
    assert with_template == [head, head + "Done.</s>"]
    tok = lm.tokenizer
    # the saved template itself (what plain transformers users get) renders the same text
    raw = [
        tok.apply_chat_template(messages_for(prompt, with_answer=a), tokenize=False, add_generation_prompt=not a)
        for a in (False, True)
    ]
    assert raw == with_template
    saved = tok.chat_template
    try:
        tok.chat_template = None  # released checkpoints ship none
        by_hand = [family.render(processor, prompt, with_answer=a) for a in (False, True)]
        text_only = family.render(processor, Prompt(QUERY), with_answer=False)
        # a template that drops [BEGIN_AUDIO] (as HF-converted Mistral templates do) is not used
        tok.chat_template = saved.replace("[BEGIN_AUDIO][AUDIO]", "[AUDIO]")
        bare = [family.render(processor, prompt, with_answer=a) for a in (False, True)]
    finally:
        tok.chat_template = saved
    assert by_hand == with_template
    assert bare == with_template
    assert text_only == f"<s>[INST]{QUERY}[/INST]"
    expected_ids = tok.convert_tokens_to_ids(["[AUDIO]", "[BEGIN_AUDIO]"])
    assert family.placeholder_token_ids(processor) == expected_ids


# --- released-checkpoint layout: tekken.json, no chat template, no mistral-common ----------------


def write_tekken(path, *, with_special_tokens: bool = True) -> None:
    """A tiny tekken.json in the released format (byte vocab + a few merges)."""
    pieces = [bytes([i]) for i in range(256)] + [b"th", b"the", b" the", b"in"]
    n_special = 40
    data = {
        "config": {
            "pattern": r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s+(?!\S)|\s+",
            "num_vocab_tokens": len(pieces),
            "default_vocab_size": len(pieces) + n_special,
            "default_num_special_tokens": n_special,
            "version": "v11",
        },
        "vocab": [
            {"rank": r, "token_bytes": base64.b64encode(b).decode(), "token_str": None} for r, b in enumerate(pieces)
        ],
    }
    if with_special_tokens:
        data["special_tokens"] = [{"rank": r, "token_str": t, "is_control": True} for r, t in enumerate(SPECIAL_TOKENS)]
    path.write_text(json.dumps(data))


def real_layout(root, *, with_special_tokens: bool = True, with_preprocessor: bool = True):
    """A checkpoint laid out like mistralai/Voxtral-Mini-3B-2507, with real window geometry
    (max_source_positions 1500, 4 encoder frames per token) and tiny widths."""
    from transformers import VoxtralConfig, WhisperFeatureExtractor

    root.mkdir()
    write_tekken(root / "tekken.json", with_special_tokens=with_special_tokens)
    config = VoxtralConfig(
        audio_config={
            "hidden_size": 16,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_mel_bins": 128,
            "max_source_positions": 1500,
        },
        text_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "vocab_size": 300,
        },
        audio_token_id=24,
    )
    config.save_pretrained(root)
    if with_preprocessor:
        WhisperFeatureExtractor(feature_size=128).save_pretrained(root)
    return root, config


@pytest.mark.parametrize("with_preprocessor", [True, False])
def test_released_layout_loads_without_mistral_common(tmp_path, with_preprocessor):
    from transformers import VoxtralForConditionalGeneration

    root, config = real_layout(tmp_path / "voxtral", with_preprocessor=with_preprocessor)
    family = VoxtralFamily()
    processor = family.load_processor(str(root))
    tok = family.tokenizer(processor)
    assert type(tok).__name__ == "TokenizersBackend"
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert processor.feature_extractor.feature_size == 128
    assert family.window_seconds(config, processor) == 30.0

    prompt = Prompt("the in", audio=np.zeros(16000, dtype=np.float32), answer="the")
    rendered = family.render(processor, prompt, with_answer=True)
    assert rendered == "<s>[INST][BEGIN_AUDIO][AUDIO]the in[/INST]the</s>"
    batch = family.encode(processor, config, [prompt], padding_side="right")
    ids = batch.inputs["input_ids"][0].tolist()
    assert batch.audio_tokens == [375]  # mistral-common: 30 s * 12.5 tokens/s
    assert ids[:3] == [1, 3, 25] and ids.count(24) == 375 and ids[-1] == 2
    assert batch.inputs["input_features"].shape == (1, 128, 3000)

    torch.manual_seed(0)
    model = VoxtralForConditionalGeneration(config).eval()
    with torch.inference_mode():
        embeds = model.get_audio_features(batch.inputs["input_features"]).pooler_output
    assert embeds.shape[0] == 375


@pytest.mark.skipif(importlib.util.find_spec("mistral_common") is not None, reason="mistral-common is installed")
def test_old_tekken_format_asks_for_mistral_common(tmp_path):
    root, _ = real_layout(tmp_path / "voxtral", with_special_tokens=False)
    with pytest.raises(ModelError, match="pip install mistral-common"):
        VoxtralFamily().load_processor(str(root))
