"""Phi-4-multimodal family: placeholder counts, batch invariance, training encode, window."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from speechsum_cli.data.audio import load_audio
from speechsum_cli.families import GenerationSettings, Prompt, SpeechLM, get_family, load
from speechsum_cli.families.phi4_multimodal import (
    AUDIO_TOKEN,
    IMAGE_TOKEN,
    REAL_WINDOW_SECONDS,
    SPEECH_LORA_SUBFOLDER,
    WINDOW_ATTRIBUTE,
    Phi4AudioProcessor,
    Phi4MultimodalFamily,
)
from tests.conftest import speech_of_duration

WINDOW = 5.0
QUERY = "Summarize the recording."


@pytest.fixture(scope="module")
def lm(tiny_models) -> SpeechLM:
    return load(str(tiny_models("phi4_multimodal")), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, lm) -> dict[str, np.ndarray]:
    """espeak-ng speech at 16 kHz: a full window, a short clip, and a 3.3 s clip."""
    work = tmp_path_factory.mktemp("phi4-audio")
    sr = lm.sampling_rate
    full = load_audio(speech_of_duration(work / "full.wav", WINDOW, workdir=work), sr)
    medium = load_audio(speech_of_duration(work / "medium.wav", 3.3, workdir=work), sr)
    return {"full": full[: int(WINDOW * sr)], "short": full[: int(0.3 * sr)], "medium": medium}


def audio_embeddings(lm: SpeechLM, prompts: list[Prompt]):
    """(batch, input_ids, projector output) of one forward pass over ``prompts``."""
    captured = []
    projector = lm.model.model.embed_tokens_extend.audio_embed.down_proj_for_speech
    handle = projector.register_forward_hook(lambda module, args, out: captured.append(out.detach()))
    try:
        batch = lm.encode(prompts)
        with torch.inference_mode():
            lm.model(**lm.to_model(batch.inputs))
    finally:
        handle.remove()
    assert len(captured) == 1
    return batch, captured[0]


def count_placeholders(lm: SpeechLM, input_ids: torch.Tensor) -> list[int]:
    return (input_ids == lm.config.audio_config.audio_token_id).sum(-1).tolist()


# --- placeholder count == audio embeddings ---------------------------------------------------


@pytest.mark.parametrize("name", ["full", "short"])
def test_placeholders_equal_the_embeddings_the_encoder_produces(lm, clips, name):
    audio = clips[name]
    batch, embeddings = audio_embeddings(lm, [Prompt(QUERY, audio)])

    placeholders = count_placeholders(lm, batch.inputs["input_ids"])[0]
    assert placeholders == embeddings.shape[1] == batch.audio_tokens[0]
    # ~12.5 tokens per second: one per 8 mel frames of 10 ms.
    assert abs(placeholders - 12.5 * len(audio) / lm.sampling_rate) <= 1.5


def test_a_clip_shorter_than_one_frame_still_gets_one_token(lm):
    tiny = np.full(100, 0.01, dtype=np.float32)  # 6 ms: less than one 25 ms analysis window
    batch, embeddings = audio_embeddings(lm, [Prompt(QUERY, tiny)])
    assert count_placeholders(lm, batch.inputs["input_ids"]) == [1]
    assert embeddings.shape[1] == 1


def test_batched_placeholder_counts_match_each_clip_alone(lm, clips):
    prompts = [Prompt(QUERY, clips["full"]), Prompt(QUERY, clips["short"]), Prompt(QUERY)]
    batch, _ = audio_embeddings(lm, prompts)
    alone = [lm.encode([p]).audio_tokens[0] for p in prompts]
    assert batch.audio_tokens == alone
    assert count_placeholders(lm, batch.inputs["input_ids"]) == alone
    assert alone[2] == 0


# --- batches ---------------------------------------------------------------------------------


def test_batch_of_two_lengths_generates_what_each_clip_generates_alone(lm, clips):
    settings = GenerationSettings(max_new_tokens=8)
    prompts = [Prompt(QUERY, clips["full"]), Prompt(QUERY, clips["short"])]

    together = lm.generate(prompts, settings)
    alone = [lm.generate([p], settings)[0] for p in prompts]

    assert together == alone
    # Same query, different audio, different text: the comparison is about the audio.
    assert together[0] != together[1]


def assert_embeddings_batch_invariant(lm: SpeechLM, prompts: list[Prompt]) -> None:
    """Each clip's audio embeddings in the batch equal its embeddings alone (padding ignored)."""
    batch, together = audio_embeddings(lm, prompts)
    for row, prompt in enumerate(prompts):
        _, alone = audio_embeddings(lm, [prompt])
        n = batch.audio_tokens[row]
        assert alone.shape[1] == n
        # The stock encoder lets padding frames leak into a clip's attention, which moves the
        # tiny model's embeddings by about their own size; numerical noise is ~1e-7.
        torch.testing.assert_close(together[row, :n], alone[0], rtol=1e-4, atol=1e-9)


def test_padding_does_not_leak_into_a_shorter_clips_audio_embeddings(lm, clips):
    assert_embeddings_batch_invariant(lm, [Prompt(QUERY, clips["full"]), Prompt(QUERY, clips["medium"])])


def test_clips_over_40_seconds_batch_like_single_clips(lm, clips):
    """The encoder splits audio over 40 s into blocks; the stock batch path fails on those."""
    processor = lm.processor
    fe = copy.deepcopy(processor.feature_extractor)
    setattr(fe, WINDOW_ATTRIBUTE, 60.0)
    long_lm = SpeechLM(lm.family, lm.model, Phi4AudioProcessor(processor.tokenizer, fe), lm.source)
    assert long_lm.window_seconds == 60.0
    speech = np.tile(clips["medium"], 20)
    sr = lm.sampling_rate
    prompts = [Prompt(QUERY, speech[: 55 * sr]), Prompt(QUERY, speech[: 43 * sr + 777])]
    assert_embeddings_batch_invariant(long_lm, prompts)


# --- training --------------------------------------------------------------------------------


def test_training_batch_masks_all_but_the_answer_and_backpropagates(lm, clips):
    prompts = [
        Prompt(QUERY, clips["full"], answer="Alice presented the budget."),
        Prompt("Who spoke?", clips["short"], answer="Bob.", system="Be brief."),
    ]
    batch = lm.encode(prompts, padding_side="right")
    ids, labels = batch.inputs["input_ids"], batch.inputs["labels"]
    tok = lm.tokenizer

    for row, prompt in enumerate(prompts):
        kept = labels[row] != -100
        start = batch.prompt_lengths[row]
        assert not kept[:start].any()
        assert torch.equal(labels[row][kept], ids[row][start : start + int(kept.sum())])
        answer = tok.decode(labels[row][kept])
        assert answer == f"{prompt.answer}<|end|><|endoftext|>"
        assert AUDIO_TOKEN not in tok.decode(labels[row][kept])

    model = lm.model
    model.train()
    try:
        model.zero_grad()
        out = model(**batch.inputs)
        assert torch.isfinite(out.loss)
        out.loss.backward()
        audio_embed = model.model.embed_tokens_extend.audio_embed
        for module in (audio_embed.up_proj_for_speech, model.model.layers[0].self_attn.qkv_proj):
            assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    finally:
        model.zero_grad()
        model.eval()


def test_render_is_the_phi4_chat_format_and_the_prompt_is_a_prefix(lm, clips):
    family = lm.family
    prompt = Prompt("What was decided?", clips["short"], answer="Hire three engineers.", system="Be brief.")
    without = family.render(lm.processor, prompt, with_answer=False)
    with_answer = family.render(lm.processor, prompt, with_answer=True)
    assert without == "<|system|>Be brief.<|end|><|user|><|audio|>What was decided?<|end|><|assistant|>"
    assert with_answer == without + "Hire three engineers.<|end|><|endoftext|>"
    text_only = family.render(lm.processor, Prompt("Hi."), with_answer=False)
    assert text_only == "<|user|>Hi.<|end|><|assistant|>"


def test_placeholder_and_image_tokens_are_suppressed_and_match_the_config(lm):
    ids = lm.family.placeholder_token_ids(lm.processor)
    tok = lm.tokenizer
    assert ids == tok.convert_tokens_to_ids([AUDIO_TOKEN, IMAGE_TOKEN])
    assert ids == [lm.config.audio_config.audio_token_id, lm.config.vision_config.image_token_id]


def test_lora_targets_and_prefixes_name_modules_of_the_model(lm):
    family = lm.family
    names = [name for name, _ in lm.model.named_modules()]
    lm_targets = [
        n
        for n in names
        if n.startswith(family.language_model_prefix + ".") and n.rsplit(".", 1)[-1] in family.lora_targets
    ]
    assert len(lm_targets) == len(family.lora_targets) * lm.config.num_hidden_layers
    # The speech encoder has modules with the same names: the prefix is what keeps LoRA off it.
    encoder = family.audio_encoder_prefixes[0]
    assert any(n.startswith(encoder) and n.endswith("gate_up_proj") for n in names)
    for prefix in (*family.audio_encoder_prefixes, *family.projector_prefixes):
        assert prefix in names


# --- window ----------------------------------------------------------------------------------


def test_window_is_five_seconds_for_the_tiny_model_and_thirty_minutes_for_real_ones(lm):
    assert lm.window_seconds == WINDOW
    assert REAL_WINDOW_SECONDS == 1800.0
    plain_fe = copy.deepcopy(lm.processor.feature_extractor)
    delattr(plain_fe, WINDOW_ATTRIBUTE)  # what a real checkpoint's preprocessor_config.json gives
    real_like = Phi4AudioProcessor(lm.tokenizer, plain_fe)
    assert lm.family.window_seconds(lm.config, real_like) == REAL_WINDOW_SECONDS


def test_audio_longer_than_the_window_is_refused(lm):
    too_long = np.zeros(int(WINDOW * lm.sampling_rate) + 1, dtype=np.float32)
    with pytest.raises(ValueError, match="exceeds the 5 s window"):
        lm.encode([Prompt(QUERY, too_long)])


# --- real-checkpoint layout ------------------------------------------------------------------


def test_speech_lora_folder_is_merged_into_the_base_weights(tiny_models, tmp_path):
    """microsoft/Phi-4-multimodal-instruct ships its speech LoRA in speech-lora/ (PEFT)."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import Phi4MultimodalForCausalLM

    source = tmp_path / "with-lora"
    shutil.copytree(tiny_models("phi4_multimodal"), source)
    base = Phi4MultimodalForCausalLM.from_pretrained(source)
    before = base.model.layers[0].self_attn.qkv_proj.weight.detach().clone()
    adapter = get_peft_model(
        base,
        LoraConfig(
            r=4,
            target_modules=r"model\.layers\.\d+\..*(qkv_proj|o_proj|gate_up_proj|down_proj)",
            init_lora_weights=False,
        ),
    )
    adapter.save_pretrained(source / SPEECH_LORA_SUBFOLDER)

    model = Phi4MultimodalFamily().load_model(str(source), dtype=torch.float32, device="cpu")

    assert type(model) is Phi4MultimodalForCausalLM
    after = model.model.layers[0].self_attn.qkv_proj.weight
    assert not torch.allclose(before, after)
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_mismatched_audio_token_id_is_a_clear_error(lm, clips):
    from speechsum_cli.errors import ModelError

    config = copy.deepcopy(lm.config)
    config.audio_config.audio_token_id = 0
    with pytest.raises(ModelError, match="audio_token_id"):
        get_family("phi4_multimodal").audio_features(lm.processor, config, [clips["short"]])
