"""Qwen2-Audio (``model_type: qwen2_audio``): Whisper encoder + linear projector + Qwen2 LM.

The stock processor silently truncates audio beyond 30 s; we never hand it more than one window
(callers chunk) and expand ``<|AUDIO|>`` ourselves from the feature mask, so the token count
always equals the encoder's output length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.families.base import (
    AudioFamily,
    AudioFeatures,
    Prompt,
    check_within_window,
    messages_for,
    pad_short_clips,
)

CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2-Audio-7B-Instruct's template (used for tiny models; real checkpoints ship their own)."""

MIN_FEATURE_FRAMES = 4
"""Feature frames of the shortest clip the Whisper-window families read (one audio token after
the two strided stages)."""
MIN_AUDIO_TOKENS = 2
"""Audio tokens of Qwen2-Audio's shortest clip: its forward takes a prompt whose audio is one
lone ``<|AUDIO|>`` for text its processor never expanded (the legacy path) and fails there
(``attention_mask[:, 0]`` of None in generate), so a clip must make two."""


def output_tokens(feature_frames: int) -> int:
    """Audio tokens the encoder + pooling produce from ``feature_frames`` mel frames."""
    after_conv = (feature_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def frames_for_tokens(tokens: int) -> int:
    """Fewest mel frames :func:`output_tokens` turns into ``tokens`` audio tokens."""
    frames = 1
    while output_tokens(frames) < tokens:
        frames += 1
    return frames


def whisper_min_samples(fe: Any, frames: int) -> int:
    """Fewest samples whose Whisper feature mask has ``frames`` frames (one per ``hop_length``)."""
    return (frames - 1) * int(fe.hop_length) + 1


def whisper_window_features(fe: Any, waveforms: list[np.ndarray], min_samples: int) -> tuple[Any, Any, list[int]]:
    """Whisper log-mel features of ``waveforms`` with every clip padded to ``fe``'s one window
    (``n_samples``; a longer clip is refused), their frame mask, and each clip's audio tokens.

    A clip shorter than ``min_samples`` (the family's
    :meth:`~speechsum_cli.families.base.AudioFamily.min_clip_samples`) is read followed by silence
    up to it: its mask then covers enough frames for the family's fewest tokens.
    """
    check_within_window(waveforms, fe.n_samples / fe.sampling_rate, fe.sampling_rate)
    out = fe(
        pad_short_clips(waveforms, min_samples),
        sampling_rate=fe.sampling_rate,
        padding="max_length",
        return_attention_mask=True,
        return_tensors="pt",
    )
    mask = out["attention_mask"]
    return out["input_features"], mask, [output_tokens(int(n)) for n in mask.sum(-1)]


class Qwen2AudioFamily(AudioFamily):
    model_type = "qwen2_audio"
    audio_placeholder = "<|AUDIO|>"
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.audio_tower",)
    projector_prefixes = ("model.multi_modal_projector",)
    encoder_output_per_window = True  # every clip is padded to one full window
    compose_tokens = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
    compose_template_tokens = ("<|im_start|>", "<|im_end|>")
    audio_content = "<|audio_bos|><|AUDIO|><|audio_eos|>\n"
    chat_template = CHAT_TEMPLATE
    end_of_turn = "<|im_end|>"

    def model_class(self) -> type:
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration

    def compose_config(self, encoder: dict[str, Any], text_config: Any, audio_token_id: int) -> Any:
        """Whisper's encoder fields are Qwen2-Audio's ``audio_config`` fields, name for name."""
        from transformers import Qwen2AudioConfig

        return Qwen2AudioConfig(audio_config=dict(encoder), text_config=text_config, audio_token_id=audio_token_id)

    def compose_processor(self, feature_extractor: Any, tokenizer: Any, chat_template: str) -> Any:
        from transformers import Qwen2AudioProcessor

        tokenizer.chat_template = chat_template  # plain AutoTokenizer loads render audio too
        return Qwen2AudioProcessor(
            feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=chat_template
        )

    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        from transformers import Qwen2AudioForConditionalGeneration

        model = Qwen2AudioForConditionalGeneration.from_pretrained(source, dtype=dtype)
        return model.to(device).eval()

    def load_processor(self, source: str) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source)

    def window_seconds(self, model_config: Any, processor: Any) -> float:
        fe = processor.feature_extractor
        return fe.n_samples / fe.sampling_rate

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """:data:`MIN_AUDIO_TOKENS` tokens' worth (61 ms at 16 kHz)."""
        return whisper_min_samples(processor.feature_extractor, frames_for_tokens(MIN_AUDIO_TOKENS))

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        features, mask, tokens = whisper_window_features(
            processor.feature_extractor, waveforms, self.min_clip_samples(processor, model_config)
        )
        return AudioFeatures({"input_features": features, "feature_attention_mask": mask}, tokens)

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """The rows of the projector's output the forward keeps per clip: its own output lengths
        of the feature mask, bounded by what the tower really made."""
        import torch

        tower = model.get_submodule(self.audio_encoder_prefixes[0])
        mask = features["feature_attention_mask"]
        _, kept = tower._get_feat_extract_output_lengths(mask.sum(-1))
        with torch.inference_mode():
            made = self.encoder_states(model, features).shape[1]
        return [min(int(n), made) for n in kept]

    def encoder_states(self, model: Any, features: dict[str, Any]) -> Any:
        """The tower's pooled output under the padding mask Qwen2-Audio's forward builds."""
        import torch
        from transformers.masking_utils import create_bidirectional_mask

        tower = model.get_submodule(self.audio_encoder_prefixes[0])
        input_features = features["input_features"]
        feat_lengths, _ = tower._get_feat_extract_output_lengths(features["feature_attention_mask"].sum(-1))
        batch, _, mel_frames = input_features.shape
        frames = (mel_frames - 2) // 2 + 1
        positions = torch.arange(frames, dtype=feat_lengths.dtype, device=feat_lengths.device)
        mask_2d = (positions[None, :] < feat_lengths[:, None]).to(torch.long)
        dummy = torch.zeros((batch, frames, 1), dtype=input_features.dtype, device=input_features.device)
        mask = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=mask_2d)
        return tower(input_features, attention_mask=mask).last_hidden_state

    def project(self, model: Any, states: Any) -> Any:
        return model.get_submodule(self.projector_prefixes[0])(states)

    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        messages = messages_for(prompt, with_answer=with_answer)
        return self.render_messages(processor, messages, with_answer=with_answer)

    def placeholder_token_ids(self, processor: Any) -> list[int]:
        tok = self.tokenizer(processor)
        return tok.convert_tokens_to_ids(["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"])

    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        from transformers import (
            GenerationConfig,
            Qwen2AudioConfig,
            Qwen2AudioForConditionalGeneration,
            Qwen2AudioProcessor,
            WhisperFeatureExtractor,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"]
        tok = tiny_tokenizer(specials, chat_template=CHAT_TEMPLATE, eos_token="<|im_end|>", pad_token="<|endoftext|>")
        mel_bins = 80
        fe = WhisperFeatureExtractor(feature_size=mel_bins, chunk_length=int(window_seconds))
        processor = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=CHAT_TEMPLATE)
        config = Qwen2AudioConfig(
            audio_config={
                "d_model": 32,
                "encoder_layers": 1,
                "encoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "num_mel_bins": mel_bins,
                "max_source_positions": fe.nb_max_frames // 2,
            },
            text_config={
                "model_type": "qwen2",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "vocab_size": len(tok),
                "max_position_embeddings": 4096,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            audio_token_id=tok.convert_tokens_to_ids("<|AUDIO|>"),
        )
        seed_everything(seed)
        model = Qwen2AudioForConditionalGeneration(config)
        model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        return out_dir
