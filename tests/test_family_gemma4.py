"""Gemma 4: 25 audio tokens per second wrapped in <|audio>...<audio|>, the window, the turn
template with a system turn. The shared contract is in test_family_conformance.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from speechsum_cli.families import FAMILIES, Prompt, load
from speechsum_cli.families.bundle import AudioTextProcessor
from speechsum_cli.families.gemma4 import REAL_WINDOW_SECONDS, WINDOW_ATTRIBUTE, Gemma4Family

QUERY = "Summarize the recording."


@pytest.fixture(scope="module")
def lm(tiny_models):
    return load(str(tiny_models("gemma4")), device="cpu", dtype="float32")


def test_registered_with_a_five_second_window_and_thirty_for_released_checkpoints(lm):
    assert isinstance(FAMILIES["gemma4"], Gemma4Family)
    assert type(lm.model).__name__ == "Gemma4ForConditionalGeneration"
    assert (lm.sampling_rate, lm.window_seconds) == (16000, 5.0)
    fe = copy.deepcopy(lm.processor.feature_extractor)
    delattr(fe, WINDOW_ATTRIBUTE)  # a released preprocessor_config.json has no such key
    released = AudioTextProcessor(lm.processor.tokenizer, fe)
    assert lm.family.window_seconds(lm.config, released) == REAL_WINDOW_SECONDS == 30.0


def test_twenty_five_tokens_per_second_and_one_for_a_click(lm):
    sr = lm.sampling_rate
    waves = [np.zeros(s * sr, np.float32) for s in (1, 2, 5)] + [np.zeros(80, np.float32)]
    features = lm.family.audio_features(lm.processor, lm.config, waves)
    assert features.num_tokens == [25, 50, 125, 1]
    assert lm.family.embedding_counts(lm.model, features.tensors) == features.num_tokens


def test_the_audio_run_is_wrapped_in_begin_and_end_of_audio(lm):
    tok = lm.tokenizer
    batch = lm.encode([Prompt(QUERY, audio=np.zeros(16000, np.float32))], padding_side="right")
    ids = batch.inputs["input_ids"][0].tolist()
    begin, audio, end = tok.convert_tokens_to_ids(["<|audio>", "<|audio|>", "<audio|>"])
    start = ids.index(begin) + 1
    assert ids[start : start + 25] == [audio] * 25
    assert ids[start + 25] == end
    assert set(lm.family.placeholder_token_ids(lm.processor)) >= {begin, audio, end}


def test_chat_template_has_a_system_turn(lm):
    family, processor = lm.family, lm.processor
    audio = np.zeros(1600, np.float32)
    assert family.render(processor, Prompt(QUERY, audio=audio), with_answer=False) == (
        f"<bos><|turn>user\n<|audio><|audio|><audio|>{QUERY}<turn|>\n<|turn>model\n"
    )
    own = family.render(processor, Prompt(QUERY, system="Be brief.", answer="Ok."), with_answer=True)
    assert own == f"<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\n{QUERY}<turn|>\n<|turn>model\nOk.<turn|>\n"
