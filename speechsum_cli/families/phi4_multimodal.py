"""Phi-4-multimodal (``model_type: phi4_multimodal``): Conformer speech encoder + 2-layer MLP
projector + Phi-4-mini LM, all inside one ``Phi4MultimodalForCausalLM`` (a SigLIP vision tower is
always built too; we never feed it).

Catches on this stack, and what this module does about each:

* ``Phi4MultimodalProcessor`` insists on an image processor, which needs torchvision (not
  loadable here). We never build it: :class:`Phi4AudioProcessor` holds the tokenizer, the
  ``Phi4MultimodalFeatureExtractor`` and the chat template, which is all audio + text needs.
* The placeholder ``<|audio|>`` is repeated once per audio embedding. The feature extractor's
  ``audio_embed_sizes`` gives that count (~12.5 tokens per second: one per 8 mel frames of
  10 ms); ``config.audio_config.audio_token_id`` must be the tokenizer's id of ``<|audio|>``.
* The stock encoder is not batch-safe: it *adds* its boolean padding mask to the attention bias
  (padding frames keep attention weight, so a clip's embeddings depend on its batch mates), and
  it fails on a batch of two or more clips longer than 40 s (a ``view`` in ``unfold_tensor``).
  :func:`encode_clips_separately` makes the loaded model's encoder run clip by clip, each on its
  own frames, exactly as the official pipeline runs one clip; outputs are re-padded.
* Very short clips are padded with silence to one mel frame (25 ms), so they get one token.
* A random model can emit ``<|audio|>``; :meth:`placeholder_token_ids` lists it (and
  ``<|image|>``) so generation suppresses them.
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
    messages_for,
    pad_short_clips,
)
from speechsum_cli.families.bundle import WINDOW_ATTRIBUTE, AudioTextProcessor, window_seconds_of

AUDIO_TOKEN = "<|audio|>"
IMAGE_TOKEN = "<|image|>"
END_OF_TURN = "<|end|>"
END_OF_TEXT = "<|endoftext|>"

REAL_WINDOW_SECONDS = 1800.0
"""Window of real checkpoints: 30 min, the longest audio the paper trains on.

The Phi-4 encoder handles long audio itself (it splits its input into 40 s blocks internally), so
the window is bounded by what the model was trained to summarize, not by the encoder; 30 min is
~22,500 audio tokens, well inside Phi-4-mini's 128k context. Longer recordings are chunked by the
caller.
"""

SPEECH_LORA_SUBFOLDER = "speech-lora"
"""Where microsoft/Phi-4-multimodal-instruct keeps the speech LoRA adapter (PEFT format)."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
"""Phi-4-multimodal-instruct's template (tools branch dropped): string content only, so the audio
placeholder is written into the user text, exactly like the model card's prompts."""


Phi4AudioProcessor = AudioTextProcessor
"""The audio + text half of ``Phi4MultimodalProcessor``, without the image processor."""


def encode_clips_separately(encoder: Any) -> None:
    """Make ``encoder`` (a ``Phi4MultimodalAudioModel``) encode a batch one clip at a time.

    Each clip runs on its own valid frames (from the feature mask) with no mask, exactly like a
    single clip through the official pipeline, so its embeddings do not depend on the batch; the
    outputs are right-padded with zeros to one tensor, of which the model keeps
    ``audio_embed_sizes[i]`` rows per clip. Only this model instance changes, never the class.
    The patch is a method bound to ``encoder``, so a deep copy (peft's ``modules_to_save`` when
    the encoder is trained) runs its own weights, not the original's.
    """
    import types

    import torch

    if getattr(encoder, "_speechsum_per_clip", False):
        return
    batch_forward = type(encoder).forward

    def forward(self: Any, hidden_states: Any, mask: Any = None, **kwargs: Any) -> Any:
        if mask is None or hidden_states.shape[0] == 1:
            return batch_forward(self, hidden_states, mask, **kwargs)
        frames = mask.sum(-1).tolist()
        outputs = [
            batch_forward(self, hidden_states[i : i + 1, : int(n)], None, **kwargs) for i, n in enumerate(frames)
        ]
        width = max(out.shape[1] for out in outputs)
        return torch.cat([torch.nn.functional.pad(out, (0, 0, 0, width - out.shape[1])) for out in outputs])

    encoder.forward = types.MethodType(forward, encoder)
    encoder._speechsum_per_clip = True


def check_text(prompt: Prompt) -> None:
    """Refuse text that already contains the placeholder (it would get no audio embedding)."""
    for name in ("query", "answer", "system"):
        value = getattr(prompt, name)
        if value and AUDIO_TOKEN in value:
            raise ValueError(f"the prompt's {name} contains the reserved token {AUDIO_TOKEN!r}")


class Phi4MultimodalFamily(AudioFamily):
    model_type = "phi4_multimodal"
    audio_placeholder = AUDIO_TOKEN
    # The decoder's fused projections. The prefix below keeps LoRA off the speech encoder, which
    # has modules of the same names (o_proj, gate_up_proj, down_proj). Microsoft's own speech and
    # vision LoRAs are not in these checkpoints' base weights (the transformers conversion drops
    # them); they ship as PEFT adapters in speech-lora/ and vision-lora/. load_model merges the
    # speech one into the base weights, so our adapters wrap plain Linear layers, never theirs.
    lora_targets = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    language_model_prefix = "model.layers"
    audio_encoder_prefixes = ("model.embed_tokens_extend.audio_embed.encoder",)
    # The speech-only projector; the *_for_vision_speech pair is only used with an image present.
    projector_prefixes = (
        "model.embed_tokens_extend.audio_embed.up_proj_for_speech",
        "model.embed_tokens_extend.audio_embed.down_proj_for_speech",
    )

    # --- loading ---------------------------------------------------------------------------
    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        from transformers import Phi4MultimodalForCausalLM

        model = Phi4MultimodalForCausalLM.from_pretrained(source, dtype=dtype)
        if self._has_speech_lora(source):
            # Microsoft's checkpoint needs its speech LoRA for audio tasks. Merged, the weights
            # are a plain Phi4MultimodalForCausalLM again: training adds our own LoRA on top and
            # saved checkpoints need no adapter folder.
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source, subfolder=SPEECH_LORA_SUBFOLDER)
            model = model.merge_and_unload()
        encode_clips_separately(model.model.embed_tokens_extend.audio_embed.encoder)
        return model.to(device).eval()

    @staticmethod
    def _has_speech_lora(source: str) -> bool:
        path = Path(source)
        if path.exists():
            return (path / SPEECH_LORA_SUBFOLDER / "adapter_config.json").is_file()
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        try:
            hf_hub_download(source, f"{SPEECH_LORA_SUBFOLDER}/adapter_config.json")
        except RemoteEntryNotFoundError:  # the repo has no speech LoRA: nothing to merge
            return False
        except Exception as exc:  # offline and not cached, auth, network
            from speechsum_cli.console import warn

            warn(
                f"could not check '{source}' for a {SPEECH_LORA_SUBFOLDER}/ adapter "
                f"({type(exc).__name__}); loading it without one. Phi-4-multimodal's audio "
                "quality depends on it: go online once, or pass a local checkpoint directory."
            )
            return False
        return True

    def load_processor(self, source: str) -> Any:
        from transformers import AutoTokenizer, Phi4MultimodalFeatureExtractor

        tokenizer = AutoTokenizer.from_pretrained(source)
        feature_extractor = Phi4MultimodalFeatureExtractor.from_pretrained(source)
        return Phi4AudioProcessor(tokenizer, feature_extractor, tokenizer.chat_template)

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        return window_seconds_of(processor.feature_extractor, REAL_WINDOW_SECONDS)

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """One analysis window (25 ms): a shorter clip has no mel frame, hence no token."""
        return int(processor.feature_extractor.win_length)

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        self._check_audio_token(processor, model_config)
        fe = processor.feature_extractor
        sr = int(fe.sampling_rate)
        window = self.window_seconds(model_config, processor)
        check_within_window(waveforms, window, sr)
        padded = pad_short_clips(waveforms, self.min_clip_samples(processor, model_config))
        out = fe(padded, sampling_rate=sr, padding="longest", return_tensors="pt")
        tensors = {
            "audio_input_features": out["audio_input_features"],
            "audio_embed_sizes": out["audio_embed_sizes"],
        }
        if "audio_attention_mask" in out:  # returned for 2+ clips; gives each clip's frames
            tensors["audio_attention_mask"] = out["audio_attention_mask"]
        return AudioFeatures(tensors, [int(n) for n in out["audio_embed_sizes"]])

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Frames the speech encoder outputs for each clip alone, on its own valid frames (the
        model keeps ``audio_embed_sizes[i]`` of them: fewer would drop audio, more cannot fit)."""
        import torch

        encoder = model.get_submodule(self.audio_encoder_prefixes[0])
        clips = features["audio_input_features"]
        mask = features.get("audio_attention_mask")
        frames = mask.sum(-1).tolist() if mask is not None else [clips.shape[1]] * clips.shape[0]
        with torch.inference_mode():
            return [int(encoder(clips[i : i + 1, : int(n)], None).shape[1]) for i, n in enumerate(frames)]

    def _check_audio_token(self, processor: Any, model_config: Any) -> None:
        tok = self.tokenizer(processor)
        token_id = tok.convert_tokens_to_ids(AUDIO_TOKEN)
        expected = model_config.audio_config.audio_token_id
        if token_id != expected:
            raise ModelError(
                f"the tokenizer maps {AUDIO_TOKEN} to id {token_id}, but the model's "
                f"audio_config.audio_token_id is {expected}. Use a Phi-4-multimodal checkpoint in "
                "transformers format whose tokenizer defines the <|audio|> token."
            )

    # --- text ------------------------------------------------------------------------------
    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        check_text(prompt)
        messages = messages_for(prompt, with_answer=with_answer, audio_text=AUDIO_TOKEN)
        if not self.chat_template_of(processor):
            return render_by_hand(messages, add_generation_prompt=not with_answer)
        return self.render_messages(processor, messages, with_answer=with_answer)

    def placeholder_token_ids(self, processor: Any) -> list[int]:
        tok = self.tokenizer(processor)
        return tok.convert_tokens_to_ids([AUDIO_TOKEN, IMAGE_TOKEN])

    # --- tests -----------------------------------------------------------------------------
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        import torch
        from transformers import (
            GenerationConfig,
            Phi4MultimodalConfig,
            Phi4MultimodalFeatureExtractor,
            Phi4MultimodalForCausalLM,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        specials = [
            END_OF_TEXT,
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            END_OF_TURN,
            IMAGE_TOKEN,
            AUDIO_TOKEN,
        ]
        tok = tiny_tokenizer(
            specials,
            chat_template=CHAT_TEMPLATE,
            eos_token=END_OF_TEXT,
            pad_token=END_OF_TEXT,
            bos_token=END_OF_TEXT,
            unk_token=END_OF_TEXT,
            extra={"extra_special_tokens": {"image_token": IMAGE_TOKEN, "audio_token": AUDIO_TOKEN}},
        )
        fe = Phi4MultimodalFeatureExtractor(**{WINDOW_ATTRIBUTE: float(window_seconds)})
        end_ids = tok.convert_tokens_to_ids([END_OF_TURN, END_OF_TEXT])
        config = Phi4MultimodalConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=4096,
            original_max_position_embeddings=4096,
            bos_token_id=tok.bos_token_id,
            eos_token_id=end_ids,
            pad_token_id=tok.pad_token_id,
            audio_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_blocks": 1,
                "num_attention_heads": 2,
                "ext_pw_out_channel": 16,
                "depthwise_separable_out_channel": 16,
                "nemo_conv_channels": 16,
                "bias_max_distance": 64,
                "input_size": fe.feature_size,
                "audio_token_id": tok.convert_tokens_to_ids(AUDIO_TOKEN),
            },
            vision_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 28,
                "patch_size": 14,
                "crop_size": 28,
                "image_token_id": tok.convert_tokens_to_ids(IMAGE_TOKEN),
            },
        )
        seed_everything(seed)
        model = Phi4MultimodalForCausalLM(config)
        # With std-0.02 weights the tiny Conformer's activations collapse (~1e-5) and the audio
        # embeddings could not move the LM at all; PyTorch's fan-in init keeps them O(1).
        for module in model.model.embed_tokens_extend.audio_embed.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
                module.reset_parameters()
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=end_ids, pad_token_id=tok.pad_token_id
        )
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        Phi4AudioProcessor(tok, fe, CHAT_TEMPLATE).save_pretrained(out_dir)
        return out_dir


def render_by_hand(messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """Phi-4's chat format as :data:`CHAT_TEMPLATE` renders it, for tokenizers with no template."""
    text = "".join(f"<|{m['role']}|>{m['content']}{END_OF_TURN}" for m in messages)
    return text + ("<|assistant|>" if add_generation_prompt else END_OF_TEXT)
