"""Qwen2.5-Omni thinker: the released (full) layout loads as the thinker alone, 25 audio tokens per
second, the window and chat template. The shared contract is in test_family_conformance.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from speechsum_cli.errors import ModelError
from speechsum_cli.families import FAMILIES, Prompt, get_family, load
from speechsum_cli.families.qwen2_5_omni import DEFAULT_SYSTEM, Qwen2_5OmniFamily

QUERY = "Summarize the recording."


@pytest.fixture(scope="module")
def lm(tiny_models):
    return load(str(tiny_models("qwen2_5_omni")), device="cpu", dtype="float32")


def test_registered_under_both_model_types(lm):
    assert isinstance(FAMILIES["qwen2_5_omni"], Qwen2_5OmniFamily)
    assert get_family("qwen2_5_omni_thinker") is FAMILIES["qwen2_5_omni"]
    assert lm.config.model_type == "qwen2_5_omni_thinker"  # what a tiny or trained thinker saves as
    assert type(lm.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"


def test_a_full_checkpoint_loads_its_thinker_only(tiny_models, tmp_path):
    """Released repos hold the full model (model_type qwen2_5_omni, weights under thinker.*)."""
    from transformers import AutoConfig, Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    tiny = tiny_models("qwen2_5_omni")
    config = Qwen2_5OmniConfig(thinker_config=AutoConfig.from_pretrained(tiny).to_dict(), enable_audio_output=False)
    torch.manual_seed(1)
    full = Qwen2_5OmniForConditionalGeneration(config)
    full.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny / name, tmp_path / name)

    loaded = load(str(tmp_path), device="cpu", dtype="float32")
    assert type(loaded.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    expected = full.thinker.state_dict()
    got = loaded.model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)


def test_twenty_five_audio_tokens_per_second_up_to_the_window(lm):
    sr = lm.sampling_rate
    assert (sr, lm.window_seconds) == (16000, 5.0)
    counts = lm.family.audio_features(
        lm.processor, lm.config, [np.zeros(s * sr, np.float32) for s in (1, 2, 5)]
    ).num_tokens
    assert counts == [25, 50, 125]
    with pytest.raises(ValueError, match="exceeds the 5 s window; chunk it first"):
        lm.family.audio_features(lm.processor, lm.config, [np.zeros(5 * sr + 160, np.float32)])


def test_chat_template_has_a_system_turn_and_wraps_the_audio(lm):
    family, processor = lm.family, lm.processor
    audio = np.zeros(1600, np.float32)
    default = family.render(processor, Prompt(QUERY, audio=audio), with_answer=False)
    assert default == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n"
        f"<|audio_bos|><|AUDIO|><|audio_eos|>{QUERY}<|im_end|>\n<|im_start|>assistant\n"
    )
    own = family.render(processor, Prompt(QUERY, audio=audio, system="Be brief.", answer="Ok."), with_answer=True)
    assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert own.endswith("<|im_start|>assistant\nOk.<|im_end|>\n")


def test_a_tokenizer_without_the_audio_tokens_is_refused(tmp_path, tiny_text_lm):
    shutil.copytree(tiny_text_lm, tmp_path / "text")
    with pytest.raises(ModelError, match="lacks the Qwen2.5-Omni audio tokens <\\|AUDIO\\|>"):
        get_family("qwen2_5_omni").load_processor(str(tmp_path / "text"))
