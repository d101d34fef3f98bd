"""Voxtral (``model_type: voxtral``): Whisper-style encoder + 2-layer projector + Llama LM.

Real checkpoints ship a tekken tokenizer (``tekken.json``) and build audio prompts with
mistral-common, which this package does not require. We encode by hand, the way mistral-common
does it:

* every clip is padded to one full window (30 s for the real model) and turned into log-mel
  ``input_features`` of shape ``[clips, n_mels, 2 * max_source_positions]``; the encoder takes
  no feature mask, so a clip of any length (up to one window) costs a whole window;
* the projector reshapes the encoder output into groups of ``intermediate_size / d_model``
  consecutive frames, so each window yields ``max_source_positions * d_model /
  intermediate_size`` embeddings (375 per 30 s for Voxtral-Mini: 12.5 per second);
* the prompt is ``<s>[INST][BEGIN_AUDIO][AUDIO]...[AUDIO]{query}[/INST]{answer}</s>``, with one
  ``[AUDIO]`` per embedding.

The tekken vocabulary is read by transformers' own converter (``TokenizersBackend``), never by
the mistral-common backend, so special tokens written in text (``[INST]``) tokenize the same
with or without mistral-common installed.
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
)

AUDIO_TOKEN = "[AUDIO]"
BEGIN_AUDIO_TOKEN = "[BEGIN_AUDIO]"
BEGIN_INST, END_INST = "[INST]", "[/INST]"
BEGIN_SYSTEM, END_SYSTEM = "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"

SPECIAL_TOKENS = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
    "[BBOX]",
    "[/BBOX]",
    "[STEP]",
    "[/STEP]",
    "[AUDIO]",
    "[BEGIN_AUDIO]",
)
"""Tekken's first special tokens in rank order, so tiny models share the real ids ([AUDIO] = 24)."""

DEFAULT_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
"""Tokenizer roles a tekken.json does not declare; set when the tokens exist in the vocabulary."""

REQUIRED_TOKENS = (BEGIN_INST, END_INST, AUDIO_TOKEN, BEGIN_AUDIO_TOKEN)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ message['content'] }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}[BEGIN_AUDIO][AUDIO]"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "[/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
"""mistral-common's instruct format (v7+) with one ``[AUDIO]`` per clip, for tiny checkpoints."""

MEL_FRAMES_PER_ENCODER_FRAME = 2
"""The encoder's second convolution has stride 2: two mel frames per encoder frame."""

REAL_FEATURE_DEFAULTS = {"feature_size": 128, "sampling_rate": 16000, "chunk_length": 30}
"""WhisperFeatureExtractor settings of the released checkpoints, if a checkpoint lacks them."""


def frames_per_token(audio_config: Any) -> int:
    """Encoder frames the projector folds into one embedding (4 for the real model)."""
    width, group = audio_config.hidden_size, audio_config.intermediate_size
    if group % width:
        raise ModelError(
            f"Voxtral audio_config.intermediate_size ({group}) is not a multiple of its "
            f"hidden_size ({width}); the projector cannot group encoder frames. Fix the "
            "checkpoint's config.json."
        )
    return group // width


def tokens_per_window(audio_config: Any) -> int:
    """Audio embeddings (and ``[AUDIO]`` tokens) per window: 375 for 30 s of Voxtral-Mini."""
    frames, group = audio_config.max_source_positions, frames_per_token(audio_config)
    if frames % group:
        raise ModelError(
            f"Voxtral audio_config.max_source_positions ({frames}) is not a multiple of the "
            f"projector's frame group ({group}); embeddings would straddle windows."
        )
    return frames // group


def window_samples(audio_config: Any, feature_extractor: Any) -> int:
    """Samples in one encoder window (the encoder only accepts exactly this many mel frames)."""
    mel_frames = audio_config.max_source_positions * MEL_FRAMES_PER_ENCODER_FRAME
    return mel_frames * feature_extractor.hop_length


def render_mistral(prompt: Prompt, *, with_answer: bool, bos: str, eos: str, system_token: bool) -> str:
    """The conversation in mistral-common's instruct format, one ``[AUDIO]`` for the clip."""
    text, query = bos, prompt.query
    if prompt.system:
        if system_token:
            text += f"{BEGIN_SYSTEM}{prompt.system}{END_SYSTEM}"
        else:  # tokenizers before v7 fold the system prompt into the user turn
            query = f"{prompt.system}\n\n{query}"
    audio = f"{BEGIN_AUDIO_TOKEN}{AUDIO_TOKEN}" if prompt.audio is not None else ""
    text += f"{BEGIN_INST}{audio}{query}{END_INST}"
    if with_answer:
        text += f"{prompt.answer or ''}{eos}"
    return text


def template_fits(text: str, *, has_audio: bool) -> bool:
    """Whether a chat-template rendering carries the clip the way the model was trained on it."""
    if not has_audio:
        return AUDIO_TOKEN not in text
    return text.count(AUDIO_TOKEN) == 1 and f"{BEGIN_AUDIO_TOKEN}{AUDIO_TOKEN}" in text


def has_token(tok: Any, token: str) -> bool:
    """Whether ``token`` is in the vocabulary (unknown tokens map to None or to ``<unk>``)."""
    token_id = tok.convert_tokens_to_ids(token)
    return token_id is not None and (token_id != tok.unk_token_id or token == tok.unk_token)


class VoxtralFamily(AudioFamily):
    model_type = "voxtral"
    audio_placeholder = AUDIO_TOKEN
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.audio_tower",)
    projector_prefixes = ("model.multi_modal_projector",)
    encoder_output_per_window = True  # every clip is padded to one full window
    compose_tokens = REQUIRED_TOKENS
    compose_template_tokens = (BEGIN_SYSTEM, END_SYSTEM)
    audio_content = f"{BEGIN_AUDIO_TOKEN}{AUDIO_TOKEN}"
    chat_template = CHAT_TEMPLATE

    def template_renders_audio(self, text: str) -> bool:
        return template_fits(text, has_audio=True)

    # --- composition -----------------------------------------------------------------------
    def model_class(self) -> type:
        from transformers import VoxtralForConditionalGeneration

        return VoxtralForConditionalGeneration

    def compose_config(self, encoder: dict[str, Any], text_config: Any, audio_token_id: int) -> Any:
        """Voxtral's encoder is Whisper's; its ``intermediate_size`` is both the FFN width and
        the projector's input (``intermediate_size / hidden_size`` frames per embedding)."""
        from transformers import VoxtralConfig

        audio_config = {
            "hidden_size": encoder["d_model"],
            "intermediate_size": encoder["encoder_ffn_dim"],
            "num_hidden_layers": encoder["encoder_layers"],
            "num_attention_heads": encoder["encoder_attention_heads"],
            "num_mel_bins": encoder["num_mel_bins"],
            "max_source_positions": encoder["max_source_positions"],
            "scale_embedding": encoder["scale_embedding"],
            "activation_function": encoder["activation_function"],
        }
        config = VoxtralConfig(audio_config=audio_config, text_config=text_config, audio_token_id=audio_token_id)
        tokens_per_window(config.audio_config)  # the window must hold whole frame groups
        return config

    def compose_processor(self, feature_extractor: Any, tokenizer: Any, chat_template: str) -> Any:
        from transformers import VoxtralProcessor

        tokenizer.chat_template = chat_template  # VoxtralProcessor takes no template of its own
        return VoxtralProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)

    # --- loading ---------------------------------------------------------------------------
    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        from transformers import VoxtralForConditionalGeneration

        model = VoxtralForConditionalGeneration.from_pretrained(source, dtype=dtype)
        return model.to(device).eval()

    def load_processor(self, source: str) -> Any:
        """A ``VoxtralProcessor`` whose tokenizer is transformers' own (never mistral-common's).

        Tries ``AutoProcessor`` (tiny and re-saved checkpoints; released ones with a
        ``preprocessor_config.json``), else assembles one from the tokenizer and a
        ``WhisperFeatureExtractor`` sized from the checkpoint's encoder config.
        """
        from transformers import AutoProcessor, VoxtralProcessor

        try:
            processor = AutoProcessor.from_pretrained(source)
        except ImportError as exc:
            if not _needs_mistral_common(exc):
                raise
            raise ModelError(_mistral_common_message(source)) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            processor = VoxtralProcessor(
                feature_extractor=self._feature_extractor(source), tokenizer=self._tokenizer(source)
            )
        if type(processor.tokenizer).__name__ == "MistralCommonBackend":
            # It does not parse special tokens written in text; render-then-tokenize needs that.
            processor.tokenizer = self._tokenizer(source)
        tok = processor.tokenizer
        for role, token in DEFAULT_SPECIALS.items():
            if getattr(tok, role) is None and has_token(tok, token):
                setattr(tok, role, token)
        missing = [t for t in REQUIRED_TOKENS if not has_token(tok, t)]
        if missing:
            raise ModelError(
                f"the tokenizer of '{source}' lacks the Voxtral control tokens "
                f"{', '.join(missing)}; is it a Voxtral checkpoint? Re-save it from a Voxtral "
                "tokenizer (tekken.json)."
            )
        return processor

    def _tokenizer(self, source: str) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(source, mistral_format=False)
        except ImportError as exc:
            if not _needs_mistral_common(exc):
                raise
            raise ModelError(_mistral_common_message(source)) from None

    def _feature_extractor(self, source: str) -> Any:
        from transformers import AutoConfig, WhisperFeatureExtractor

        try:
            return WhisperFeatureExtractor.from_pretrained(source)
        except OSError:
            pass
        settings = dict(REAL_FEATURE_DEFAULTS)
        audio_config = AutoConfig.from_pretrained(source).audio_config
        settings["feature_size"] = audio_config.num_mel_bins
        fe = WhisperFeatureExtractor(**settings)
        seconds = window_samples(audio_config, fe) / fe.sampling_rate
        if seconds != int(seconds):
            raise ModelError(
                f"'{source}' has no preprocessor_config.json and its encoder window ({seconds} s)"
                " is not a whole number of seconds; add a preprocessor_config.json for it."
            )
        return WhisperFeatureExtractor(**{**settings, "chunk_length": int(seconds)})

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        fe = processor.feature_extractor
        return window_samples(model_config.audio_config, fe) / fe.sampling_rate

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        fe = processor.feature_extractor
        audio_config = model_config.audio_config
        if fe.feature_size != audio_config.num_mel_bins:
            raise ModelError(
                f"the feature extractor makes {fe.feature_size} mel bins but the Voxtral encoder "
                f"expects {audio_config.num_mel_bins}; the processor does not belong to this model."
            )
        placeholder_id = self.tokenizer(processor).convert_tokens_to_ids(AUDIO_TOKEN)
        if placeholder_id != model_config.audio_token_id:
            raise ModelError(
                f"the tokenizer's {AUDIO_TOKEN} id is {placeholder_id} but the model's "
                f"audio_token_id is {model_config.audio_token_id}; the processor does not belong "
                "to this model."
            )
        n_samples = window_samples(audio_config, fe)
        check_within_window(waveforms, n_samples / fe.sampling_rate, fe.sampling_rate)
        # Like mistral-common: every clip is padded to one full window (the encoder has no mask).
        out = fe(
            [np.asarray(w, dtype=np.float32) for w in waveforms],
            sampling_rate=fe.sampling_rate,
            padding="max_length",
            max_length=n_samples,
            return_attention_mask=False,
            return_tensors="pt",
        )
        features = out["input_features"]
        expected_frames = audio_config.max_source_positions * MEL_FRAMES_PER_ENCODER_FRAME
        if features.shape[-1] != expected_frames:  # the encoder would refuse them anyway
            raise ModelError(
                f"the feature extractor made {features.shape[-1]} mel frames per window; the "
                f"Voxtral encoder needs exactly {expected_frames} (hop_length {fe.hop_length})."
            )
        n_tokens = tokens_per_window(audio_config)
        return AudioFeatures({"input_features": features}, [n_tokens] * len(waveforms))

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Rows of ``get_audio_features`` for each clip alone (it flattens a batch of clips)."""
        import torch

        clips = features["input_features"]
        with torch.inference_mode():
            return [
                int(model.get_audio_features(clips[i : i + 1]).pooler_output.shape[0]) for i in range(clips.shape[0])
            ]

    def encoder_states(self, model: Any, features: dict[str, Any]) -> Any:
        tower = model.get_submodule(self.audio_encoder_prefixes[0])
        return tower(features["input_features"], return_dict=True).last_hidden_state

    def projector_input(self, model_config: Any, states: Any) -> Any:
        """Groups of ``intermediate_size / hidden_size`` frames, one row per embedding (as the model does)."""
        return states.reshape(states.shape[0], -1, model_config.audio_config.intermediate_size)

    def project(self, model: Any, states: Any) -> Any:
        projector = model.get_submodule(self.projector_prefixes[0])
        return projector(self.projector_input(model.config, states))

    def compression_rows(self, model_config: Any) -> int:
        return tokens_per_window(model_config.audio_config)  # every clip is one padded window

    # --- text ------------------------------------------------------------------------------
    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        """The checkpoint's chat template if it renders audio as ``[BEGIN_AUDIO][AUDIO]``, else
        mistral-common's format by hand (released checkpoints ship no template)."""
        if self.chat_template_of(processor):
            text = self.render_messages(
                processor, messages_for(prompt, with_answer=with_answer), with_answer=with_answer
            )
            if template_fits(text, has_audio=prompt.audio is not None):
                return text
        tok = self.tokenizer(processor)
        return render_mistral(
            prompt,
            with_answer=with_answer,
            bos=tok.bos_token or "<s>",
            eos=tok.eos_token or "</s>",
            system_token=has_token(tok, BEGIN_SYSTEM) and has_token(tok, END_SYSTEM),
        )

    def placeholder_token_ids(self, processor: Any) -> list[int]:
        tok = self.tokenizer(processor)
        tokens = [t for t in (AUDIO_TOKEN, BEGIN_AUDIO_TOKEN, "[OUTPUT_AUDIO]") if has_token(tok, t)]
        return tok.convert_tokens_to_ids(tokens)

    # --- tests -----------------------------------------------------------------------------
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        from transformers import (
            GenerationConfig,
            VoxtralConfig,
            VoxtralForConditionalGeneration,
            VoxtralProcessor,
            WhisperFeatureExtractor,
        )

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        if window_seconds != int(window_seconds) or window_seconds <= 0:
            raise ValueError(f"tiny Voxtral windows are whole seconds, got {window_seconds}")
        tok = tiny_tokenizer(
            list(SPECIAL_TOKENS),
            chat_template=CHAT_TEMPLATE,
            eos_token="</s>",
            pad_token="<pad>",
            bos_token="<s>",
            unk_token="<unk>",
        )
        mel_bins = 128
        fe = WhisperFeatureExtractor(feature_size=mel_bins, chunk_length=int(window_seconds))
        processor = VoxtralProcessor(feature_extractor=fe, tokenizer=tok)
        encoder_width, frame_group = 32, 5  # 50 encoder frames per second -> 10 tokens per second
        config = VoxtralConfig(
            audio_config={
                "hidden_size": encoder_width,
                "intermediate_size": encoder_width * frame_group,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_mel_bins": mel_bins,
                "max_source_positions": fe.nb_max_frames // MEL_FRAMES_PER_ENCODER_FRAME,
            },
            text_config={
                "model_type": "llama",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "vocab_size": len(tok),
                "max_position_embeddings": 4096,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            audio_token_id=tok.convert_tokens_to_ids(AUDIO_TOKEN),
        )
        tokens_per_window(config.audio_config)  # fail here, not in a test, if the shape is off
        seed_everything(seed)
        model = VoxtralForConditionalGeneration(config)
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        return out_dir


def _needs_mistral_common(exc: ImportError) -> bool:
    return "mistral-common" in str(exc) or "mistral_common" in str(exc)


def _mistral_common_message(source: str) -> str:
    return (
        f"cannot load the tokenizer of '{source}': its tekken.json is in a format only "
        "mistral-common can read, and mistral-common is not installed. Run "
        "'pip install mistral-common' and retry."
    )
