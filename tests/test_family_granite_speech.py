"""Granite Speech (and Plus): features without torchaudio, held to the reference extractor's own
code; 10 audio tokens per second as it counts them; a clip's embeddings independent of its batch;
the bundled audio LoRA merged on load; the window and chat template. The shared contract is in
test_family_conformance.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from speechsum_cli.data.audio import load_audio
from speechsum_cli.errors import ModelError
from speechsum_cli.families import FAMILIES, Prompt, get_family, load
from speechsum_cli.families.granite_speech import (
    PAD_VALUE,
    REAL_WINDOW_SECONDS,
    GraniteSpeechFamily,
    GraniteSpeechFeatures,
    GraniteSpeechPlusFamily,
)

QUERY = "Summarize the recording."
GRANITES = ["granite_speech", "granite_speech_plus"]


# --- the reference extractor, with torchaudio's MelSpectrogram where torchaudio cannot load -----


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + freq / 700.0)


class TorchaudioMelSpectrogram(torch.nn.Module):
    """``torchaudio.transforms.MelSpectrogram`` at the arguments Granite passes (the rest at their
    defaults: Hann window, power 2, centred reflect padding, HTK mel scale, no filter norm),
    written from torchaudio's definition (``Spectrogram`` + ``MelScale`` + ``melscale_fbanks``)
    independently of our implementation (which takes transformers' numpy filters)."""

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int):
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer("window", torch.hann_window(win_length))
        all_freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)
        m_pts = torch.linspace(_hz_to_mel(0.0), _hz_to_mel(float(sample_rate // 2)), n_mels + 2)
        f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
        f_diff = f_pts[1:] - f_pts[:-1]
        slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
        down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
        up = slopes[:, 2:] / f_diff[1:]
        self.register_buffer("fb", torch.max(torch.zeros(1), torch.min(down, up)))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = (
            torch.stft(
                waveform,
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window,
                center=True,
                pad_mode="reflect",
                normalized=False,
                onesided=True,
                return_complex=True,
            )
            .abs()
            .pow(2.0)
        )
        return torch.matmul(spec.transpose(-1, -2), self.fb).transpose(-1, -2)


@pytest.fixture
def reference(monkeypatch):
    """transformers' GraniteSpeechFeatureExtractor, running its own code; torchaudio's
    MelSpectrogram is the real one where torchaudio loads, else the definition above."""
    from transformers.models.granite_speech import feature_extraction_granite_speech as module

    try:
        import torchaudio  # noqa: F401  (does not load beside this torch)
    except Exception:  # noqa: BLE001  (ImportError, or OSError from its C++ extension)
        from types import SimpleNamespace

        monkeypatch.setattr(module, "requires_backends", lambda *args, **kwargs: None)
        monkeypatch.setattr(
            module,
            "torchaudio",
            SimpleNamespace(transforms=SimpleNamespace(MelSpectrogram=TorchaudioMelSpectrogram)),
            raising=False,
        )
    return module.GraniteSpeechFeatureExtractor()


def test_the_stock_extractor_needs_torchaudio_which_does_not_load_here():
    """Why the family computes its own features (if this fails, torchaudio loads: use it)."""
    from transformers import GraniteSpeechFeatureExtractor

    with pytest.raises(ImportError, match="torchaudio"):
        GraniteSpeechFeatureExtractor()


def test_features_and_counts_equal_the_reference_extractors_on_speech(reference, speech_wav):
    ours = GraniteSpeechFeatures()
    speech = load_audio(speech_wav, 16000)
    clips = [speech, speech[: 16000 * 3 + 77], speech[:16000], speech[:640]]
    for clip in clips:
        expected = reference([clip])
        got = ours.features(clip)
        assert got.shape == expected["input_features"][0].shape
        torch.testing.assert_close(got, expected["input_features"][0], atol=2e-4, rtol=0)
        assert ours.tokens(got.shape[0]) == expected["audio_embed_sizes"][0]
    assert speech.std() > 0.01 and len(speech) > 16000 * 8  # real speech, several seconds


def test_ten_tokens_per_second_and_the_mask_as_the_reference_makes_them(reference, tiny_models):
    lm = load(str(tiny_models("granite_speech")), device="cpu", dtype="float32")
    seconds = [1.0, 3.0, 4.5]
    waves = [np.full(int(s * 16000), 0.01, np.float32) for s in seconds]
    ours = lm.family.audio_features(lm.processor, lm.config, waves)
    assert ours.num_tokens == [12, 30, 45]  # 0.3 s projector windows of 3 queries each
    expected = reference(waves)
    assert ours.num_tokens == expected["audio_embed_sizes"]
    assert torch.equal(ours.tensors["input_features_mask"], expected["input_features_mask"])
    # padding frames, and only they, hold PAD_VALUE
    frames = [(row != PAD_VALUE).any(-1).sum().item() for row in ours.tensors["input_features"]]
    assert frames == [reference([w])["input_features"].shape[1] for w in waves]


@pytest.mark.parametrize("model_type", GRANITES)
def test_a_clips_embeddings_do_not_depend_on_its_batch(model_type, tiny_models, speech_wav):
    lm = load(str(tiny_models(model_type)), device="cpu", dtype="float32")
    speech = load_audio(speech_wav, 16000)
    short, long = speech[: int(1.3 * 16000)], speech[16000 : 16000 * 5]
    features = lm.family.audio_features(lm.processor, lm.config, [short, long]).tensors["input_features"]
    alone = lm.family.audio_features(lm.processor, lm.config, [short]).tensors["input_features"]
    with torch.inference_mode():
        batched = lm.model.model.get_audio_features(features).pooler_output[0, :15]
        single = lm.model.model.get_audio_features(alone).pooler_output[0]
        # the stock path runs the short clip's padding (here: silence-level frames) through its
        # last attention block, its convolutions and its last projector window
        stock = type(lm.model.model).get_audio_features(lm.model.model, features.clamp(min=-3.5))
        stock = stock.pooler_output[0, :15]
    assert single.shape[0] == 15  # 1.3 s: 65 stacked frames, 5 projector windows
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert (stock - single).abs().max() > 1e-4  # ten times the tolerance ours meets


def test_the_bundled_audio_lora_is_merged_on_load(tiny_models, tmp_path, speech_wav):
    """Released checkpoints carry their audio LoRA beside the weights (has_lora_adapter); we load
    it merged: the same logits on an audio prompt as the model with the adapter applied."""
    import shutil

    from peft import LoraConfig, get_peft_model

    tiny = tiny_models("granite_speech")
    shutil.copytree(tiny, tmp_path, dirs_exist_ok=True)
    model = load(str(tiny), device="cpu", dtype="float32").model
    adapted = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(tmp_path)  # adapter_config.json + adapter_model.safetensors beside the weights
    assert (tmp_path / "config.json").is_file() and (tmp_path / "adapter_config.json").is_file()

    ours = load(str(tmp_path), device="cpu", dtype="float32")
    assert not any("lora" in name for name, _ in ours.model.named_modules())
    batch = ours.encode([Prompt(QUERY, audio=load_audio(speech_wav, 16000)[: 16000 * 2])])
    with torch.inference_mode():
        got = ours.model(**batch.inputs).logits
        expected = adapted(**batch.inputs).logits
        with adapted.disable_adapter():
            without = adapted(**batch.inputs).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, without, atol=1e-3)


def test_window_default_and_refusal(tiny_models):
    lm = load(str(tiny_models("granite_speech")), device="cpu", dtype="float32")
    assert lm.window_seconds == 5.0
    saved = json.loads((tiny_models("granite_speech") / "preprocessor_config.json").read_text())
    assert saved["feature_extractor_type"] == "GraniteSpeechFeatureExtractor"
    released = GraniteSpeechFeatures(
        **{
            k: v
            for k, v in saved.items()
            if k
            in ("n_fft", "win_length", "hop_length", "n_mels", "projector_window_size", "projector_downsample_rate")
        }
    )
    lm.processor.feature_extractor = released  # what a released preprocessor_config.json gives
    assert lm.window_seconds == REAL_WINDOW_SECONDS
    with pytest.raises(ValueError, match="exceeds the 600 s window; chunk it first"):
        lm.family.audio_features(lm.processor, lm.config, [np.zeros(600 * 16000 + 1, np.float32)])


def test_registered_and_plus_is_its_own_model_class(tiny_models):
    assert isinstance(FAMILIES["granite_speech"], GraniteSpeechFamily)
    assert isinstance(FAMILIES["granite_speech_plus"], GraniteSpeechPlusFamily)
    plus = load(str(tiny_models("granite_speech_plus")), device="cpu", dtype="float32")
    assert type(plus.model).__name__ == "GraniteSpeechPlusForConditionalGeneration"
    assert plus.config.encoder_config.cat_hidden_layers == [1]


def test_chat_template_has_a_system_turn_and_puts_the_audio_in_the_user_text(tiny_models):
    lm = load(str(tiny_models("granite_speech")), device="cpu", dtype="float32")
    audio = np.zeros(1600, np.float32)
    default = lm.family.render(lm.processor, Prompt(QUERY, audio=audio), with_answer=False)
    assert default == (
        "<|start_of_role|>system<|end_of_role|>You are Granite, developed by IBM. You are a helpful "
        "AI assistant.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|><|audio|>"
        f"{QUERY}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"
    )
    own = lm.family.render(lm.processor, Prompt(QUERY, audio=audio, system="Be brief.", answer="Ok."), with_answer=True)
    assert own.startswith("<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>\n")
    assert own.endswith("<|start_of_role|>assistant<|end_of_role|>Ok.<|end_of_text|>\n")


def test_a_tokenizer_without_the_audio_token_is_refused(tmp_path, tiny_text_lm):
    import shutil

    shutil.copytree(tiny_text_lm, tmp_path / "text")
    with pytest.raises(ModelError, match="has no <\\|audio\\|> token"):
        get_family("granite_speech").load_processor(str(tmp_path / "text"))
