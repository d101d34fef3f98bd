"""Gemma 4 (``model_type: gemma4``; the audio-capable E2B/E4B checkpoints): USM-style conformer
audio tower + audio embedder (the projector) + Gemma 4 LM, in ``Gemma4ForConditionalGeneration``.

* ``Gemma4Processor`` insists on image and video processors (torchvision); we keep its audio half
  (:class:`~speechsum_cli.families.bundle.AudioTextProcessor`: tokenizer + the
  ``Gemma4AudioFeatureExtractor``, which loads here) and expand the audio the way it does:
  ``<|audio>`` + one ``<|audio|>`` per embedding + ``<audio|>``, the count being the valid mel
  frames after the tower's two stride-2 convolutions — 25 per second (10 ms frames, 4x reduction).
* Window: 30 s for released checkpoints — the processor caps one clip at ``audio_seq_length`` =
  750 tokens of 40 ms and the feature extractor truncates at 480,000 samples by default, both
  silently. We refuse longer audio (callers window it); every clip is padded to one full window
  with its feature mask, so a clip's embeddings never depend on its batch mates.
* The tokenizer names its audio tokens (``audio_token``, ``boa_token``, ``eoa_token``); released
  ones use the strings below, which tiny checkpoints share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.errors import ModelError
from speechsum_cli.families.base import (
    AudioFamily,
    AudioFeatures,
    Prompt,
    check_within_window,
    count_per_clip,
    messages_for,
    pad_short_clips,
    vocab_token_ids,
)
from speechsum_cli.families.bundle import (
    WINDOW_ATTRIBUTE,
    AudioTextProcessor,
    load_audio_text_processor,
    window_seconds_of,
)

AUDIO_TOKEN, BEGIN_AUDIO, END_AUDIO = "<|audio|>", "<|audio>", "<audio|>"
IMAGE_TOKENS = ("<|image|>", "<|image>", "<image|>", "<|video|>")
BEGIN_TURN, END_TURN = "<|turn>", "<turn|>"

EXTRA_SPECIAL_TOKENS = {
    "audio_token": AUDIO_TOKEN,
    "boa_token": BEGIN_AUDIO,
    "eoa_token": END_AUDIO,
    "image_token": "<|image|>",
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "sot_token": BEGIN_TURN,
    "eot_token": END_TURN,
}
"""The tokenizer roles ``Gemma4Processor`` reads, as released Gemma 4 tokenizers name them."""

REAL_WINDOW_SECONDS = 30.0
"""750 audio tokens (``Gemma4Processor.audio_seq_length``) of 40 ms each."""


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<|audio|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<turn|>\n{% endfor %}{% if add_generation_prompt %}<|turn>model\n{% endif %}"
)
"""Gemma 4's turn format with a system turn and one ``<|audio|>`` per clip (for tiny checkpoints;
released ones ship their own)."""

CONV_LAYERS = 2
"""Stride-2 convolutions in the tower's subsampling front end (4x fewer frames)."""


def tokens_of_mask(mask: Any) -> int:
    """Audio tokens of one clip's mel-frame mask: ``Gemma4Processor.replace_audio_token``."""
    for _ in range(CONV_LAYERS):
        frames = (len(mask) + 2 - 3) // 2 + 1
        mask = mask[::2][:frames]
    return int(mask.sum())


class Gemma4Family(AudioFamily):
    model_type = "gemma4"
    audio_placeholder = AUDIO_TOKEN
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.audio_tower",)
    projector_prefixes = ("model.embed_audio",)
    # Per clip the output would be cacheable, but the tower also returns the output mask the
    # forward selects with, which the feature cache does not keep: no cache for this family.
    encoder_output_per_window = False

    # --- loading ---------------------------------------------------------------------------
    def model_class(self) -> type:
        from transformers import Gemma4ForConditionalGeneration

        return Gemma4ForConditionalGeneration

    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        model = self.model_class().from_pretrained(source, dtype=dtype)
        if model.model.audio_tower is None:
            raise ModelError(
                f"'{source}' is a Gemma 4 checkpoint without an audio tower (no audio_config); "
                "use an audio-capable one (google/gemma-4-E2B-it, google/gemma-4-E4B-it)."
            )
        return model.to(device).eval()

    def load_processor(self, source: str) -> Any:
        from transformers import Gemma4AudioFeatureExtractor

        return load_audio_text_processor(
            source,
            Gemma4AudioFeatureExtractor,
            audio_tokens=(AUDIO_TOKEN, BEGIN_AUDIO, END_AUDIO),
            family_name="Gemma 4",
            chat_template=CHAT_TEMPLATE,
        )

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        return window_seconds_of(processor.feature_extractor, REAL_WINDOW_SECONDS)

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """A frame and a hop: a shorter clip has no valid frame left after the convolutions."""
        fe = processor.feature_extractor
        return int(fe.frame_length + fe.hop_length)

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        self._check_audio_token(processor, model_config)
        fe = processor.feature_extractor
        sr = int(fe.sampling_rate)
        window = self.window_seconds(model_config, processor)
        check_within_window(waveforms, window, sr)
        n_samples = round(window * sr)
        waves = pad_short_clips(waveforms, self.min_clip_samples(processor, model_config))
        out = fe(
            waves, sampling_rate=sr, padding="max_length", max_length=n_samples, truncation=False, return_tensors="pt"
        )
        mask = out["input_features_mask"]
        return AudioFeatures(
            {"input_features": out["input_features"], "input_features_mask": mask},
            [tokens_of_mask(row) for row in mask],
        )

    def _check_audio_token(self, processor: Any, model_config: Any) -> None:
        tok = self.tokenizer(processor)
        expected = {
            AUDIO_TOKEN: model_config.audio_token_id,
            BEGIN_AUDIO: model_config.boa_token_id,
            END_AUDIO: model_config.eoa_token_index,
        }
        wrong = [
            f"{t} is {tok.convert_tokens_to_ids(t)}, the model's {i}"
            for t, i in expected.items()
            if tok.convert_tokens_to_ids(t) != i
        ]
        if wrong:
            raise ModelError(
                f"the tokenizer's audio token ids do not match the model's ({'; '.join(wrong)}); "
                "the processor does not belong to this model."
            )

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Valid positions of the tower's output mask (the forward keeps exactly those) per clip."""
        return count_per_clip(
            features["input_features"],
            features["input_features_mask"],
            lambda clip, mask: model.model.get_audio_features(clip, mask).attention_mask.sum(),
        )

    # --- text ------------------------------------------------------------------------------
    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        """The chat template's text with the clip's ``<|audio|>`` wrapped in ``<|audio>``/``<audio|>``
        (what ``Gemma4Processor`` turns the template's bare placeholder into)."""
        messages = messages_for(prompt, with_answer=with_answer)
        text = self.render_messages(processor, messages, with_answer=with_answer, default_template=CHAT_TEMPLATE)
        if prompt.audio is not None and BEGIN_AUDIO not in text:
            text = text.replace(AUDIO_TOKEN, BEGIN_AUDIO + AUDIO_TOKEN + END_AUDIO, 1)
        return text

    def placeholder_token_ids(self, processor: Any) -> list[int]:
        return vocab_token_ids(self.tokenizer(processor), (AUDIO_TOKEN, BEGIN_AUDIO, END_AUDIO, *IMAGE_TOKENS))

    # --- tests -----------------------------------------------------------------------------
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        from transformers import (
            Gemma4AudioFeatureExtractor,
            Gemma4Config,
            Gemma4ForConditionalGeneration,
            GenerationConfig,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        specials = [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            BEGIN_TURN,
            END_TURN,
            BEGIN_AUDIO,
            AUDIO_TOKEN,
            END_AUDIO,
            *IMAGE_TOKENS,
        ]
        tok = tiny_tokenizer(
            specials,
            chat_template=CHAT_TEMPLATE,
            eos_token="<eos>",
            pad_token="<pad>",
            bos_token="<bos>",
            unk_token="<unk>",
            extra={"extra_special_tokens": EXTRA_SPECIAL_TOKENS},
        )
        ids = dict(zip(specials, tok.convert_tokens_to_ids(specials)))
        fe = Gemma4AudioFeatureExtractor(**{WINDOW_ATTRIBUTE: float(window_seconds)})
        end_ids = [ids["<eos>"], ids[END_TURN]]
        config = Gemma4Config(
            text_config={
                "vocab_size": len(tok),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "global_head_dim": 16,
                "hidden_size_per_layer_input": 8,
                "vocab_size_per_layer_input": len(tok),
                "max_position_embeddings": 4096,
                "sliding_window": 64,
                "layer_types": ["sliding_attention", "full_attention"],
                "pad_token_id": ids["<pad>"],
                "bos_token_id": ids["<bos>"],
                "eos_token_id": end_ids,
            },
            audio_config={
                # the front end flattens (mel bins / 4) x channels[1] features: channels[0] = mel bins
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "subsampling_conv_channels": [fe.feature_size, 4],
                "output_proj_dims": 32,
            },
            vision_config=None,
            audio_token_id=ids[AUDIO_TOKEN],
            boa_token_id=ids[BEGIN_AUDIO],
            eoa_token_index=ids[END_AUDIO],
            image_token_id=ids["<|image|>"],
            boi_token_id=ids["<|image>"],
            eoi_token_id=ids["<image|>"],
            video_token_id=ids["<|video|>"],
        )
        seed_everything(seed)
        model = Gemma4ForConditionalGeneration(config)
        model.generation_config = GenerationConfig(
            bos_token_id=ids["<bos>"], eos_token_id=end_ids, pad_token_id=ids["<pad>"]
        )
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        AudioTextProcessor(tok, fe, CHAT_TEMPLATE).save_pretrained(out_dir)
        return out_dir
