"""Qwen2.5-Omni, the thinker only (``model_type: qwen2_5_omni``; a saved thinker is
``qwen2_5_omni_thinker``): Whisper-style audio encoder (chunked attention, pooling and projection
inside the tower) + Qwen2.5 LM. Text out; the talker and token2wav are never loaded.

* ``Qwen2_5OmniThinkerForConditionalGeneration`` loads a released checkpoint's ``thinker.*``
  weights (transformers drops the prefix) from the full model's ``thinker_config``.
* ``Qwen2_5OmniProcessor`` needs image and video processors (torchvision): we keep its audio half
  (:class:`~speechsum_cli.families.bundle.AudioTextProcessor`) and expand ``<|AUDIO|>`` the way it
  does — every clip padded to the feature extractor's ``n_samples`` (its only padding mode), one
  placeholder per output of ``_get_feat_extract_output_lengths`` of the valid mel frames: 25 per
  second (100 mel frames/s, a stride-2 conv, a stride-2 pool).
* The encoder attends within ``2 * n_window`` mel-frame chunks (2 s), so it takes a clip of any
  length; the window is what the checkpoint's feature extractor takes (``n_samples``: 30 s for
  Whisper's default) — the stock processor truncates longer audio silently, we refuse it and
  callers window it.
* The audio projection (``audio_tower.proj``) sits inside the tower: it is the projector group
  (trainable), the rest of the tower the encoder (frozen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.families.base import (
    AudioFamily,
    AudioFeatures,
    Prompt,
    count_per_clip,
    messages_for,
    vocab_token_ids,
)
from speechsum_cli.families.bundle import (
    AudioTextProcessor,
    load_audio_text_processor,
)
from speechsum_cli.families.qwen2_audio import (  # the same Whisper window, conv + pool
    MIN_FEATURE_FRAMES,
    whisper_min_samples,
    whisper_window_features,
)

AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS, AUDIO_EOS = "<|audio_bos|>", "<|audio_eos|>"
VISION_TOKENS = ("<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>", "<|VIDEO|>")
END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
THINKER_MODEL_TYPE = "qwen2_5_omni_thinker"

DEFAULT_SYSTEM = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech."
)
"""The system prompt Qwen2.5-Omni's model card uses; the template's default."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    + DEFAULT_SYSTEM
    + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2.5-Omni's ChatML with audio as ``<|audio_bos|><|AUDIO|><|audio_eos|>`` (for tiny
checkpoints and tokenizers saved without a template; released ones ship their own)."""


def load_thinker(model_class: type, source: str, *, dtype: Any, device: str) -> Any:
    """An omni model's thinker alone (eval mode), as ``model_class``: from a saved thinker, or the
    ``thinker.*`` weights of a full checkpoint (its ``thinker_config``; the talker and the
    waveform decoder are skipped, never built)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    config = getattr(config, "thinker_config", config)
    model = model_class.from_pretrained(source, config=config, dtype=dtype)
    return model.to(device).eval()


def thinker_embedding_counts(model: Any, features: dict[str, Any]) -> list[int]:
    """Rows of the thinker's ``get_audio_features`` for each clip alone."""
    return count_per_clip(
        features["input_features"],
        features["feature_attention_mask"],
        lambda clip, mask: model.get_audio_features(clip, mask).last_hidden_state.shape[0],
    )


class ThinkerText:
    """What the Qwen Omni thinkers share beside their constants: embedding counts per clip, the
    ChatML render and the blocked placeholders (``default_template`` / ``blocked_tokens`` per family)."""

    default_template: str
    blocked_tokens: tuple[str, ...]

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Rows of the thinker's ``get_audio_features`` for each clip alone."""
        return thinker_embedding_counts(model, features)

    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        messages = messages_for(prompt, with_answer=with_answer)
        return self.render_messages(
            processor, messages, with_answer=with_answer, default_template=self.default_template
        )

    def placeholder_token_ids(self, processor: Any) -> list[int]:
        return vocab_token_ids(self.tokenizer(processor), self.blocked_tokens)


class Qwen2_5OmniFamily(ThinkerText, AudioFamily):
    default_template = CHAT_TEMPLATE
    blocked_tokens = (AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS, *VISION_TOKENS)
    model_type = "qwen2_5_omni"
    also_model_types = (THINKER_MODEL_TYPE,)
    audio_placeholder = AUDIO_TOKEN
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.audio_tower",)
    projector_prefixes = ("model.audio_tower.proj",)

    # --- loading ---------------------------------------------------------------------------
    def model_class(self) -> type:
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration

    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        """The thinker alone: from a saved thinker, or the ``thinker.*`` weights of a full
        Qwen2.5-Omni checkpoint (its talker and token2wav are skipped, never built)."""
        return load_thinker(self.model_class(), source, dtype=dtype, device=device)

    def load_processor(self, source: str) -> Any:
        from transformers import WhisperFeatureExtractor

        return load_audio_text_processor(
            source,
            WhisperFeatureExtractor,
            audio_tokens=(AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS),
            family_name="Qwen2.5-Omni",
            chat_template=CHAT_TEMPLATE,
        )

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        fe = processor.feature_extractor
        return fe.n_samples / fe.sampling_rate

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        self.check_audio_token_id(processor, model_config)
        # as Qwen2_5OmniProcessor: every clip one padded window
        features, mask, tokens = whisper_window_features(
            processor.feature_extractor, waveforms, self.min_clip_samples(processor, model_config)
        )
        return AudioFeatures({"input_features": features, "feature_attention_mask": mask}, tokens)

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """:data:`MIN_FEATURE_FRAMES` frames: one audio token."""
        return whisper_min_samples(processor.feature_extractor, MIN_FEATURE_FRAMES)

    # --- tests -----------------------------------------------------------------------------
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        from transformers import (
            GenerationConfig,
            Qwen2_5OmniThinkerConfig,
            Qwen2_5OmniThinkerForConditionalGeneration,
            WhisperFeatureExtractor,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        if window_seconds != int(window_seconds) or window_seconds <= 0:
            raise ValueError(f"tiny Qwen2.5-Omni windows are whole seconds, got {window_seconds}")
        specials = [END_OF_TEXT, "<|im_start|>", END_OF_TURN, AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS, *VISION_TOKENS]
        tok = tiny_tokenizer(specials, chat_template=CHAT_TEMPLATE, eos_token=END_OF_TURN, pad_token=END_OF_TEXT)
        mel_bins, hidden = 128, 32
        fe = WhisperFeatureExtractor(feature_size=mel_bins, chunk_length=int(window_seconds))
        ids = dict(zip(specials, tok.convert_tokens_to_ids(specials)))
        config = Qwen2_5OmniThinkerConfig(
            audio_config={
                "d_model": 32,
                "encoder_layers": 1,
                "encoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "num_mel_bins": mel_bins,
                "n_window": 100,
                "output_dim": hidden,
            },
            vision_config={
                "depth": 1,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_heads": 2,
                "out_hidden_size": hidden,
                "fullatt_block_indexes": [0],
            },
            text_config={
                "hidden_size": hidden,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "vocab_size": len(tok),
                "max_position_embeddings": 4096,
                "tie_word_embeddings": False,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            audio_token_index=ids[AUDIO_TOKEN],
            image_token_index=ids["<|IMAGE|>"],
            video_token_index=ids["<|VIDEO|>"],
            audio_start_token_id=ids[AUDIO_BOS],
            audio_end_token_id=ids[AUDIO_EOS],
            # not a declared field, but the rope index reads it (released configs carry it)
            vision_start_token_id=ids["<|vision_bos|>"],
            vision_end_token_id=ids["<|vision_eos|>"],
        )
        seed_everything(seed)
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
        end_ids = [ids[END_OF_TURN], ids[END_OF_TEXT]]
        model.generation_config = GenerationConfig(eos_token_id=end_ids, pad_token_id=tok.pad_token_id)
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        AudioTextProcessor(tok, fe, CHAT_TEMPLATE).save_pretrained(out_dir)
        return out_dir
