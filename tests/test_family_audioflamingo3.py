"""Audio Flamingo 3: 25 audio tokens per second per window, a long recording as consecutive
windows of one prompt, the chat template. The shared contract is in test_family_conformance.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechsum_cli.errors import ModelError
from speechsum_cli.families import FAMILIES, Prompt, load
from speechsum_cli.families.audioflamingo3 import AudioFlamingo3Family

QUERY = "Summarize the recording."


@pytest.fixture(scope="module")
def lm(tiny_models):
    return load(str(tiny_models("audioflamingo3")), device="cpu", dtype="float32")


def test_registered_with_a_five_second_window(lm):
    assert isinstance(FAMILIES["audioflamingo3"], AudioFlamingo3Family)
    assert type(lm.model).__name__ == "AudioFlamingo3ForConditionalGeneration"
    assert (lm.sampling_rate, lm.window_seconds) == (16000, 5.0)


def test_twenty_five_tokens_per_second_and_one_for_a_click(lm):
    sr = lm.sampling_rate
    waves = [np.zeros(s * sr, np.float32) for s in (1, 2, 5)] + [np.zeros(80, np.float32)]
    features = lm.family.audio_features(lm.processor, lm.config, waves)
    assert features.num_tokens == [25, 50, 125, 1]
    assert lm.family.embedding_counts(lm.model, features.tensors) == features.num_tokens


def test_a_long_recording_fills_one_prompt_with_its_windows(lm):
    """What --on-long-audio chunk does: 12 s = 5 s + 5 s + 2 s, 300 placeholders, one prompt."""
    rng = np.random.default_rng(0)
    sr = lm.sampling_rate
    recording = (0.1 * rng.standard_normal(12 * sr)).astype(np.float32)
    windows = [recording[i : i + 5 * sr] for i in range(0, len(recording), 5 * sr)]
    batch = lm.encode([Prompt(QUERY, audio=windows), Prompt("Anything else?")])
    audio_id = lm.config.audio_token_id
    assert batch.audio_tokens == [300, 0]
    assert (batch.inputs["input_ids"] == audio_id).sum(-1).tolist() == [300, 0]
    with torch.inference_mode():
        assert torch.isfinite(lm.model(**batch.inputs).logits).all()


def test_chat_template_has_a_system_turn(lm):
    family, processor = lm.family, lm.processor
    audio = np.zeros(1600, np.float32)
    assert family.render(processor, Prompt(QUERY, audio=audio), with_answer=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<sound>{QUERY}<|im_end|>\n<|im_start|>assistant\n"
    )
    own = family.render(processor, Prompt(QUERY, system="Be brief.", answer="Ok."), with_answer=True)
    assert own == (
        f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{QUERY}<|im_end|>\n"
        "<|im_start|>assistant\nOk.<|im_end|>\n"
    )


def test_a_feature_extractor_of_another_window_is_refused(lm):
    from transformers import WhisperFeatureExtractor

    processor = lm.processor
    saved = processor.feature_extractor
    processor.feature_extractor = WhisperFeatureExtractor(feature_size=128, chunk_length=30)
    try:
        with pytest.raises(
            ModelError, match="128 x 3000 mel features per window but the Audio Flamingo 3 encoder takes 128 x 500"
        ):
            lm.family.audio_features(processor, lm.config, [np.zeros(1600, np.float32)])
    finally:
        processor.feature_extractor = saved
