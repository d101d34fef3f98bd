"""Qwen3-Omni thinker: the released (full) layout loads as the thinker alone, 13 audio tokens per
second counted as transformers' own processor counts them, audio past 30 s taken whole (never
cut, ms-swift#9113), the real window, the chat template and LoRA on the MoE LM's attention. The
shared contract is in test_family_conformance.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from speechsum_cli.errors import ModelError
from speechsum_cli.families import FAMILIES, Prompt, get_family, load
from speechsum_cli.families.bundle import WINDOW_ATTRIBUTE
from speechsum_cli.families.qwen3_omni_moe import REAL_WINDOW_SECONDS, Qwen3OmniMoeFamily
from speechsum_cli.training.model import prepare_model
from speechsum_cli.training.settings import TrainSettings

QUERY = "Summarize the recording."


@pytest.fixture(scope="module")
def lm(tiny_models):
    return load(str(tiny_models("qwen3_omni_moe")), device="cpu", dtype="float32")


def test_registered_under_both_model_types(lm):
    assert isinstance(FAMILIES["qwen3_omni_moe"], Qwen3OmniMoeFamily)
    assert get_family("qwen3_omni_moe_thinker") is FAMILIES["qwen3_omni_moe"]
    assert lm.config.model_type == "qwen3_omni_moe_thinker"
    assert type(lm.model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"


def test_a_full_checkpoint_loads_its_thinker_only(tiny_models, tmp_path):
    """Released repos hold the full model (model_type qwen3_omni_moe, weights under thinker.*)."""
    from transformers import AutoConfig, Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    tiny = tiny_models("qwen3_omni_moe")
    config = Qwen3OmniMoeConfig(thinker_config=AutoConfig.from_pretrained(tiny).to_dict(), enable_audio_output=False)
    torch.manual_seed(1)
    full = Qwen3OmniMoeForConditionalGeneration(config)
    full.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny / name, tmp_path / name)

    loaded = load(str(tmp_path), device="cpu", dtype="float32")
    assert type(loaded.model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    expected = full.thinker.state_dict()
    got = loaded.model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)


def test_thirteen_tokens_per_second_as_the_reference_processor_counts(lm):
    """Features and counts equal what Qwen3OmniMoeProcessor's audio path makes (its feature
    extractor with its audio_kwargs, its _get_feat_extract_output_lengths)."""
    from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import (
        Qwen3OmniMoeProcessor,
        _get_feat_extract_output_lengths,
    )

    sr, fe = lm.sampling_rate, lm.processor.feature_extractor
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (sr, 2 * sr, 4 * sr + 37, 800)]
    ours = lm.family.audio_features(lm.processor, lm.config, waves)
    assert ours.num_tokens[:2] == [13, 26]
    kwargs = {**Qwen3OmniMoeProcessor.audio_kwargs, "return_tensors": "pt"}
    for row, wave in enumerate(waves):
        ref = fe([wave], **kwargs)
        frames = int(ref["attention_mask"].sum())
        assert int(ours.tensors["feature_attention_mask"][row].sum()) == frames
        assert torch.equal(ours.tensors["input_features"][row, :, :frames], ref["input_features"][0])
        expected = int(_get_feat_extract_output_lengths(torch.tensor([frames]), Qwen3OmniMoeProcessor.n_window))
        assert ours.num_tokens[row] == expected


def test_audio_past_thirty_seconds_is_taken_whole_up_to_the_real_window(lm):
    """A released checkpoint (no window override) hears 45 s in one clip: 45 * 13 embeddings, all
    made by the model — the 30 s of the feature extractor's n_samples is not the limit."""
    fe = lm.processor.feature_extractor
    sr = lm.sampling_rate
    saved = getattr(fe, WINDOW_ATTRIBUTE)
    delattr(fe, WINDOW_ATTRIBUTE)  # what a released preprocessor_config.json gives
    try:
        assert lm.window_seconds == REAL_WINDOW_SECONDS == 2400.0
        assert fe.n_samples / sr == 30.0
        features = lm.family.audio_features(lm.processor, lm.config, [np.zeros(45 * sr, np.float32)])
        assert features.num_tokens == [45 * 13]
        assert lm.family.embedding_counts(lm.model, features.tensors) == [45 * 13]
        with pytest.raises(ValueError, match="exceeds the 2400 s window; chunk it first"):
            lm.family.audio_features(lm.processor, lm.config, [np.zeros(2400 * sr + 1, np.float32)])
    finally:
        setattr(fe, WINDOW_ATTRIBUTE, saved)


def test_chat_template_has_a_system_turn_and_wraps_the_audio(lm):
    family, processor = lm.family, lm.processor
    audio = np.zeros(1600, np.float32)
    default = family.render(processor, Prompt(QUERY, audio=audio), with_answer=False)
    assert default == (
        f"<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>{QUERY}<|im_end|>\n<|im_start|>assistant\n"
    )
    own = family.render(processor, Prompt(QUERY, audio=audio, system="Be brief.", answer="Ok."), with_answer=True)
    assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert own.endswith("<|im_start|>assistant\nOk.<|im_end|>\n")


def test_lora_adapts_the_moe_lms_attention_not_its_experts_nor_the_encoders(tiny_models):
    lm = load(str(tiny_models("qwen3_omni_moe")), device="cpu", dtype="float32")
    model = prepare_model(lm.model, lm.family, TrainSettings(), "tiny")
    wrapped = {
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and len(module.lora_A)
    }
    layers = lm.config.text_config.num_hidden_layers
    assert wrapped == {
        f"model.language_model.layers.{i}.self_attn.{p}"
        for i in range(layers)
        for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    }
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not [n for n in trainable if ".experts." in n or ".mlp.gate." in n]


def test_a_tokenizer_without_the_audio_tokens_is_refused(tmp_path, tiny_text_lm):
    shutil.copytree(tiny_text_lm, tmp_path / "text")
    with pytest.raises(ModelError, match="lacks the Qwen3-Omni audio tokens <\\|audio_pad\\|>"):
        get_family("qwen3_omni_moe").load_processor(str(tmp_path / "text"))
