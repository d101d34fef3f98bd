"""Audio Flamingo 3 (``model_type: audioflamingo3``): Whisper-large-v3-style encoder (+ stride-2
average pool) + 2-layer MLP projector + Qwen2.5 LM, NVIDIA's long-audio reasoning model.

* The encoder takes one 30 s window (``max_source_positions`` positions, every clip padded to the
  full window with a feature mask); each window yields 25 embeddings per second of real audio
  (100 mel frames/s, a stride-2 conv, a stride-2 pool): 750 per full window.
* ``AudioFlamingo3Processor`` splits a recording into up to ``max_audio_len`` (600 s) of 30 s
  windows for one prompt and *truncates beyond it with only a log line*, and gives a clip under
  ~20 ms zero placeholders. We encode by hand: one clip = one window, counted the way the model
  masks each window (a very short clip padded to one token); a longer recording is windowed by the
  caller — map-reduce in ``summarize``, or all its windows in one prompt with
  ``--on-long-audio chunk`` when training, which is how AF3 itself hears up to 10 minutes.
* Audio is ``<sound>`` repeated once per embedding.
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
    count_per_clip,
    messages_for,
)
from speechsum_cli.families.qwen2_audio import (  # the same Whisper window, conv + pool
    MIN_FEATURE_FRAMES,
    whisper_min_samples,
    whisper_window_features,
)

AUDIO_TOKEN = "<sound>"
END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<sound>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML with one ``<sound>`` per clip (for tiny checkpoints; released ones ship their own)."""

MEL_FRAMES_PER_POSITION = 2
"""The encoder's second convolution has stride 2: two mel frames per encoder position."""


class AudioFlamingo3Family(AudioFamily):
    model_type = "audioflamingo3"
    audio_placeholder = AUDIO_TOKEN
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.audio_tower",)
    projector_prefixes = ("model.multi_modal_projector",)
    encoder_output_per_window = True  # every clip is padded to one full window
    compose_tokens = (AUDIO_TOKEN,)
    compose_template_tokens = ("<|im_start|>", END_OF_TURN)
    audio_content = AUDIO_TOKEN
    chat_template = CHAT_TEMPLATE
    end_of_turn = END_OF_TURN

    # --- loading ---------------------------------------------------------------------------
    def model_class(self) -> type:
        from transformers import AudioFlamingo3ForConditionalGeneration

        return AudioFlamingo3ForConditionalGeneration

    def compose_config(self, encoder: dict[str, Any], text_config: Any, audio_token_id: int) -> Any:
        """AF3's encoder is Whisper's, key for key (+ a parameter-free pool); its config takes
        Whisper's field names as aliases; any causal LM's config is its ``text_config``."""
        from transformers import AudioFlamingo3Config

        return AudioFlamingo3Config(audio_config=dict(encoder), text_config=text_config, audio_token_id=audio_token_id)

    def compose_processor(self, feature_extractor: Any, tokenizer: Any, chat_template: str) -> Any:
        from transformers import AudioFlamingo3Processor

        tokenizer.chat_template = chat_template  # plain AutoTokenizer loads render audio too
        return AudioFlamingo3Processor(
            feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=chat_template
        )

    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        model = self.model_class().from_pretrained(source, dtype=dtype)
        return model.to(device).eval()

    def load_processor(self, source: str) -> Any:
        from transformers import AudioFlamingo3Processor

        try:
            processor = AudioFlamingo3Processor.from_pretrained(source)
        except OSError as exc:
            raise ModelError(
                f"cannot load the Audio Flamingo 3 processor of '{source}' ({exc}). Pass the "
                "checkpoint directory as released (tokenizer, preprocessor_config.json and "
                "processor_config.json together)."
            ) from None
        if AUDIO_TOKEN not in processor.tokenizer.get_vocab():
            raise ModelError(
                f"the tokenizer of '{source}' has no {AUDIO_TOKEN} token; is it an Audio Flamingo 3 checkpoint?"
            )
        return processor

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        fe = processor.feature_extractor
        return fe.n_samples / fe.sampling_rate

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        self._check_geometry(processor, model_config)
        features, mask, tokens = whisper_window_features(
            processor.feature_extractor, waveforms, self.min_clip_samples(processor, model_config)
        )
        return AudioFeatures({"input_features": features, "input_features_mask": mask}, tokens)

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """:data:`MIN_FEATURE_FRAMES` frames: one audio token."""
        return whisper_min_samples(processor.feature_extractor, MIN_FEATURE_FRAMES)

    def _check_geometry(self, processor: Any, model_config: Any) -> None:
        """The processor must make exactly the window the encoder takes, with the model's token."""
        fe, audio = processor.feature_extractor, model_config.audio_config
        frames = fe.nb_max_frames
        if frames != audio.max_source_positions * MEL_FRAMES_PER_POSITION or fe.feature_size != audio.num_mel_bins:
            raise ModelError(
                f"the feature extractor makes {fe.feature_size} x {frames} mel features per window but "
                f"the Audio Flamingo 3 encoder takes {audio.num_mel_bins} x "
                f"{audio.max_source_positions * MEL_FRAMES_PER_POSITION}; the processor does not "
                "belong to this model."
            )
        self.check_audio_token_id(processor, model_config)

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Rows of ``get_audio_features`` (already masked to each window's length) per clip."""
        return count_per_clip(
            features["input_features"],
            features["input_features_mask"],
            lambda clip, mask: model.get_audio_features(clip, mask).pooler_output.shape[0],
        )

    # --- text ------------------------------------------------------------------------------
    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        messages = messages_for(prompt, with_answer=with_answer)
        return self.render_messages(processor, messages, with_answer=with_answer, default_template=CHAT_TEMPLATE)

    # --- tests -----------------------------------------------------------------------------
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        from transformers import (
            AudioFlamingo3Config,
            AudioFlamingo3ForConditionalGeneration,
            AudioFlamingo3Processor,
            GenerationConfig,
            WhisperFeatureExtractor,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        if window_seconds != int(window_seconds) or window_seconds <= 0:
            raise ValueError(f"tiny Audio Flamingo 3 windows are whole seconds, got {window_seconds}")
        specials = [END_OF_TEXT, "<|im_start|>", END_OF_TURN, AUDIO_TOKEN]
        tok = tiny_tokenizer(specials, chat_template=CHAT_TEMPLATE, eos_token=END_OF_TURN, pad_token=END_OF_TEXT)
        mel_bins = 128
        fe = WhisperFeatureExtractor(feature_size=mel_bins, chunk_length=int(window_seconds))
        processor = AudioFlamingo3Processor(feature_extractor=fe, tokenizer=tok, chat_template=CHAT_TEMPLATE)
        config = AudioFlamingo3Config(
            audio_config={
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "num_mel_bins": mel_bins,
                "max_source_positions": fe.nb_max_frames // MEL_FRAMES_PER_POSITION,
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
            audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN),
        )
        seed_everything(seed)
        model = AudioFlamingo3ForConditionalGeneration(config)
        end_ids = tok.convert_tokens_to_ids([END_OF_TURN, END_OF_TEXT])
        model.generation_config = GenerationConfig(eos_token_id=end_ids, pad_token_id=tok.pad_token_id)
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        return out_dir
