"""Qwen3-Omni, the thinker only (``model_type: qwen3_omni_moe``; a saved thinker is
``qwen3_omni_moe_thinker``): the AuT audio encoder (three stride-2 convs over 1 s chunks, block
attention, a two-layer output MLP inside the tower) + a Qwen3 MoE LM. Text out; the talker and
code2wav are never loaded.

* ``Qwen3OmniMoeThinkerForConditionalGeneration`` loads a released checkpoint's ``thinker.*``
  weights from the full model's ``thinker_config``.
* ``Qwen3OmniMoeProcessor`` needs image and video processors (torchvision): we keep its audio half
  (:class:`~speechsum_cli.families.bundle.AudioTextProcessor`) and do what it does — Whisper log-mel
  features with ``padding=True, truncation=False`` (each clip whole: we extract one clip at a time,
  so a clip's features never depend on its batch), and ``<|audio_pad|>`` repeated
  ``_get_feat_extract_output_lengths(frames, n_window)`` times: 13 per second (each ``2 * n_window``
  = 100-frame chunk gives 13 embeddings, a partial chunk fewer).
* The window is *not* the feature extractor's ``n_samples`` (30 s in the released
  ``preprocessor_config.json``): the encoder takes any length in 1 s chunks, and cutting at 30 s is
  the silent truncation ms-swift#9113 reported. A clip is taken whole up to
  :data:`REAL_WINDOW_SECONDS` (40 minutes, the length the Qwen3-Omni report gives for AuT) and
  refused beyond it, so callers window only what the model cannot hear at once. Tiny test models
  set a shorter window in ``preprocessor_config.json`` (``speechsum_window_seconds``).
* The audio tower's output MLP (``proj1`` -> GELU -> ``proj2``, into the LM's width) is the
  projector group (trainable); the rest of the tower is the encoder (frozen).
* LoRA targets the LM's attention (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) only. The
  experts are fused 3-D parameters (``experts.gate_up_proj``/``down_proj``, one slice per expert),
  not ``nn.Linear`` modules, so ``target_modules`` cannot reach them; adapting them (peft's
  ``target_parameters``) multiplies the adapter by the expert count and interacts with routing,
  and the router (``mlp.gate``) stays frozen so training does not reshuffle which experts fire.
  Dense MLP layers (``mlp_only_layers``; none in the released 30B-A3B) are not targeted either —
  pass ``--lora-targets`` to add ``gate_proj,up_proj,down_proj`` there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.families.base import (
    AudioFamily,
    AudioFeatures,
    check_within_window,
)
from speechsum_cli.families.bundle import (
    WINDOW_ATTRIBUTE,
    AudioTextProcessor,
    load_audio_text_processor,
    window_seconds_of,
)
from speechsum_cli.families.qwen2_5_omni import (  # the same thinker layout
    ThinkerText,
    load_thinker,
)

AUDIO_TOKEN = "<|audio_pad|>"
AUDIO_BOS, AUDIO_EOS = "<|audio_start|>", "<|audio_end|>"
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
THINKER_MODEL_TYPE = "qwen3_omni_moe_thinker"

REAL_WINDOW_SECONDS = 40 * 60.0
"""Longest audio one prompt carries: 40 minutes, what the Qwen3-Omni technical report gives for
its AuT encoder (block attention keeps it linear; ~31k audio tokens at 13 per second)."""

MIN_SAMPLES = 400
"""Whisper's n_fft: a shorter clip is zero-padded to it (the STFT's reflection padding needs
it); 25 ms of silence, one embedding."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen3-Omni's ChatML (no default system turn; a prompt's system goes first) with audio as
``<|audio_start|><|audio_pad|><|audio_end|>`` — for tiny checkpoints and tokenizers saved without a
template; released ones ship their own."""


def output_tokens(frames: int, n_window: int) -> int:
    """Audio embeddings the AuT encoder makes of ``frames`` mel frames: 13 per full
    ``2 * n_window`` chunk, and the three stride-2 convs' output of the remainder
    (``_get_feat_extract_output_lengths`` of the processor and the model)."""
    chunk = 2 * n_window
    rest = (frames % chunk - 1) // 2 + 1
    return ((rest - 1) // 2 + 1 - 1) // 2 + 1 + (frames // chunk) * 13


class Qwen3OmniMoeFamily(ThinkerText, AudioFamily):
    default_template = CHAT_TEMPLATE
    blocked_tokens = (AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS, *VISION_TOKENS)
    model_type = "qwen3_omni_moe"
    also_model_types = (THINKER_MODEL_TYPE,)
    audio_placeholder = AUDIO_TOKEN
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.audio_tower",)
    projector_prefixes = ("model.audio_tower.proj1", "model.audio_tower.proj2")

    # --- loading ---------------------------------------------------------------------------
    def model_class(self) -> type:
        from transformers import Qwen3OmniMoeThinkerForConditionalGeneration

        return Qwen3OmniMoeThinkerForConditionalGeneration

    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        """The thinker alone: from a saved thinker, or the ``thinker.*`` weights of a full
        Qwen3-Omni checkpoint (its talker and code2wav are skipped, never built)."""
        return load_thinker(self.model_class(), source, dtype=dtype, device=device)

    def load_processor(self, source: str) -> Any:
        from transformers import WhisperFeatureExtractor

        return load_audio_text_processor(
            source,
            WhisperFeatureExtractor,
            audio_tokens=(AUDIO_TOKEN, AUDIO_BOS, AUDIO_EOS),
            family_name="Qwen3-Omni",
            chat_template=CHAT_TEMPLATE,
        )

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        return window_seconds_of(processor.feature_extractor, REAL_WINDOW_SECONDS)

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        import torch

        self.check_audio_token_id(processor, model_config)
        fe = processor.feature_extractor
        sr = int(fe.sampling_rate)
        window = self.window_seconds(model_config, processor)
        check_within_window(waveforms, window, sr)
        clips = []
        for wave in waveforms:
            wave = np.asarray(wave, dtype=np.float32)
            wave = np.pad(wave, (0, max(0, MIN_SAMPLES - len(wave))))
            # as Qwen3OmniMoeProcessor's audio_kwargs: the whole clip, never cut at n_samples
            out = fe([wave], sampling_rate=sr, padding=True, truncation=False, return_tensors="pt")
            clips.append(out["input_features"][0])
        frames = [clip.shape[-1] for clip in clips]
        width = max(frames)
        features = torch.zeros((len(clips), clips[0].shape[0], width), dtype=clips[0].dtype)
        mask = torch.zeros((len(clips), width), dtype=torch.long)
        for row, clip in enumerate(clips):
            features[row, :, : clip.shape[-1]] = clip
            mask[row, : clip.shape[-1]] = 1
        n_window = model_config.audio_config.n_window
        return AudioFeatures(
            {"input_features": features, "feature_attention_mask": mask},
            [output_tokens(n, n_window) for n in frames],
        )

    # --- tests -----------------------------------------------------------------------------
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        from transformers import (
            GenerationConfig,
            Qwen3OmniMoeThinkerConfig,
            Qwen3OmniMoeThinkerForConditionalGeneration,
            WhisperFeatureExtractor,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        specials = [END_OF_TEXT, "<|im_start|>", END_OF_TURN, AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS, *VISION_TOKENS]
        tok = tiny_tokenizer(specials, chat_template=CHAT_TEMPLATE, eos_token=END_OF_TURN, pad_token=END_OF_TEXT)
        mel_bins, hidden = 128, 32
        fe = WhisperFeatureExtractor(feature_size=mel_bins, **{WINDOW_ATTRIBUTE: float(window_seconds)})
        ids = dict(zip(specials, tok.convert_tokens_to_ids(specials)))
        config = Qwen3OmniMoeThinkerConfig(
            audio_config={
                "d_model": 32,
                "encoder_layers": 1,
                "encoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "num_mel_bins": mel_bins,
                "output_dim": hidden,
                "downsample_hidden_size": 8,
                "max_source_positions": 64,
                "initializer_range": 0.2,
                # released: 1 s chunks, 8 s attention blocks; here 2 s blocks so 5 s spans several
                "n_window": 50,
                "n_window_infer": 200,
                # 0.02 leaves a random tower's embeddings too faint to move the LM's logits
            },
            vision_config={
                "depth": 1,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_heads": 2,
                "out_hidden_size": hidden,
                "deepstack_visual_indexes": [0],
            },
            text_config={
                "hidden_size": hidden,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "vocab_size": len(tok),
                "max_position_embeddings": 4096,
                "moe_intermediate_size": 32,
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 1e6,
                    "mrope_section": [2, 3, 3],
                    "interleaved": True,
                },
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            audio_token_id=ids[AUDIO_TOKEN],
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            audio_start_token_id=ids[AUDIO_BOS],
            # not a declared field, but the rope index reads it (released configs carry it)
            vision_start_token_id=ids["<|vision_start|>"],
        )
        seed_everything(seed)
        model = Qwen3OmniMoeThinkerForConditionalGeneration(config)
        end_ids = [ids[END_OF_TURN], ids[END_OF_TEXT]]
        model.generation_config = GenerationConfig(eos_token_id=end_ids, pad_token_id=tok.pad_token_id)
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        AudioTextProcessor(tok, fe, CHAT_TEMPLATE).save_pretrained(out_dir)
        return out_dir
