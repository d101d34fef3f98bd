"""IBM Granite Speech (``model_type: granite_speech``) and Granite Speech Plus
(``granite_speech_plus``, the same code with the projector also reading some intermediate encoder
layers): a Conformer CTC encoder (block attention over ``context_size`` frames) + a windowed
Q-Former projector + a Granite LM.

* ``GraniteSpeechFeatureExtractor`` builds a ``torchaudio.transforms.MelSpectrogram`` in its
  constructor, and torchaudio does not load beside this torch. :class:`GraniteSpeechFeatures`
  computes the same features with ``torch.stft`` and transformers' numpy mel filters
  (``audio_utils.mel_filter_bank``, the same HTK triangles torchaudio builds): power spectrogram
  (n_fft 512, Hann window of 400, hop 160, centred, reflect-padded) -> 80 mel bands -> log10
  (floor 1e-10) -> floored at the clip's max - 8, /4 + 1 -> an odd last frame dropped -> pairs of
  frames stacked: 160 features per 20 ms. tests/test_family_granite_speech.py holds it to the
  reference extractor's own code on espeak-ng speech. It reads and writes the checkpoint's
  ``preprocessor_config.json`` (``feature_extractor_type: GraniteSpeechFeatureExtractor``), so
  saved checkpoints still load in plain transformers where torchaudio does.
* Placeholders: ``<|audio|>`` once per projector output — ``ceil(frames / window_size)`` windows
  of 15 stacked frames (0.3 s), ``window_size // downsample_rate`` = 3 queries each: 10 per
  second, the extractor's ``_get_num_audio_features``.
* The stock model runs a batch's clips through the encoder together, so a short clip's last
  attention block, its convolutions and its last projector window see the next clip's padding.
  The model is patched (this instance only) to encode each clip alone on its own frames; padding
  frames hold :data:`PAD_VALUE`, which no real feature can take.
* The window: neither encoder (relative positions inside 4 s blocks) nor projector bounds the
  length, and the processor never truncates. We take a clip whole up to
  :data:`REAL_WINDOW_SECONDS` (our choice: 6,000 audio tokens; IBM trained on ASR/AST utterances
  and publishes no long-audio limit) and refuse longer, so callers window it.
* Released checkpoints carry a LoRA adapter beside the weights that transformers enables only
  for prompts with audio. Our stages always pass audio to the summarizer, so it is merged into
  the LM on load with peft (like Phi-4-multimodal's speech LoRA); text-only prompts (summarize's
  reduce step) then also run the merged weights. (transformers 5.24 would attach it itself only
  with peft >= 0.22.)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
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
from speechsum_cli.families.bundle import WINDOW_ATTRIBUTE, AudioTextProcessor

AUDIO_TOKEN = "<|audio|>"
START_ROLE, END_ROLE, END_OF_TEXT = "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"
PREPROCESSOR_CONFIG = "preprocessor_config.json"

PAD_VALUE = -1000.0
"""Feature value of padding frames. A real feature is at least (log10(1e-10) - 8) / 4 + 1 = -3.5
(the floor at the clip's max - 8 decades), so a frame of PAD_VALUE is padding, never audio."""

REAL_WINDOW_SECONDS = 600.0
"""Longest clip taken whole (10 minutes = 6,000 audio tokens): our cap, not the model's — see the
module docstring."""

DEFAULT_SYSTEM = "You are Granite, developed by IBM. You are a helpful AI assistant."

CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|start_of_role|>system<|end_of_role|>"
    + DEFAULT_SYSTEM
    + "<|end_of_text|>\n{% endif %}"
    "{% for message in messages %}<|start_of_role|>{{ message['role'] }}<|end_of_role|>"
    "{{ message['content'] }}<|end_of_text|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start_of_role|>assistant<|end_of_role|>{% endif %}"
)
"""Granite 3.3's chat format, string contents with ``<|audio|>`` written into the user text as
the model card's prompts do (for tiny checkpoints; released ones ship their own, whose default
system turn also carries today's date)."""


@dataclass
class GraniteSpeechFeatures:
    """``GraniteSpeechFeatureExtractor``'s parameters and math, without torchaudio."""

    sampling_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    projector_window_size: int = 15
    projector_downsample_rate: int = 5
    window_seconds: float | None = None
    """Our window override (``speechsum_window_seconds``; tiny test models set it)."""

    @classmethod
    def from_pretrained(cls, source: str) -> GraniteSpeechFeatures:
        path = Path(source) / PREPROCESSOR_CONFIG
        if not path.is_file():
            try:
                from huggingface_hub import hf_hub_download

                path = Path(hf_hub_download(source, PREPROCESSOR_CONFIG))
            except Exception:  # offline, unknown repo, no such file: all "cannot get it"  # noqa: BLE001
                raise ModelError(
                    f"'{source}' has no {PREPROCESSOR_CONFIG} for its GraniteSpeechFeatureExtractor; "
                    "pass the checkpoint directory as released (or as a speechsum stage wrote it)."
                ) from None
        saved = json.loads(path.read_text())
        fields = {
            k: saved[k]
            for k in (
                "n_fft",
                "win_length",
                "hop_length",
                "n_mels",
                "projector_window_size",
                "projector_downsample_rate",
            )
            if k in saved
        }
        rate = saved.get("sampling_rate", saved.get("sample_rate"))
        if rate is not None:
            fields["sampling_rate"] = int(rate)
        return cls(**fields, window_seconds=saved.get(WINDOW_ATTRIBUTE))

    def save_pretrained(self, save_directory: str | Path) -> None:
        fields = asdict(self)
        window = fields.pop("window_seconds")
        config = {
            "feature_extractor_type": "GraniteSpeechFeatureExtractor",
            **fields,
            "feature_size": self.n_mels,
            "padding_value": 0.0,
            "processor_class": "GraniteSpeechProcessor",
        }
        if window:
            config[WINDOW_ATTRIBUTE] = window
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / PREPROCESSOR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")

    def mel_filters(self) -> Any:
        """``[n_fft // 2 + 1, n_mels]`` HTK triangles, unnormalised (torchaudio's defaults)."""
        import torch
        from transformers.audio_utils import mel_filter_bank

        bank = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=self.n_mels,
            min_frequency=0.0,
            max_frequency=self.sampling_rate / 2,
            sampling_rate=self.sampling_rate,
            norm=None,
            mel_scale="htk",
        )
        return torch.from_numpy(bank).float()

    def features(self, wave: np.ndarray) -> Any:
        """``[frames, 2 * n_mels]`` stacked log-mel features of one clip (at least ``n_fft`` samples)."""
        import torch

        audio = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        spec = (
            torch.stft(
                audio,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=torch.hann_window(self.win_length),
                center=True,
                pad_mode="reflect",
                normalized=False,
                onesided=True,
                return_complex=True,
            )
            .abs()
            .pow(2)
        )
        logmel = (spec.T @ self.mel_filters()).clamp(min=1e-10).log10()
        logmel = torch.maximum(logmel, logmel.max() - 8.0) / 4 + 1
        if logmel.shape[0] % 2 == 1:
            logmel = logmel[:-1]
        return logmel.reshape(-1, 2 * self.n_mels)

    def tokens(self, frames: int) -> int:
        """Projector outputs for ``frames`` stacked frames (``_get_num_audio_features``)."""
        per_window = self.projector_window_size // self.projector_downsample_rate
        return math.ceil(frames / self.projector_window_size) * per_window


def encode_clips_separately(model: Any) -> None:
    """Make ``model`` (a ``GraniteSpeechModel``) run encoder + projector one clip at a time, each on
    its own frames (the frames before its :data:`PAD_VALUE` padding), so a clip's embeddings never depend on its
    batch; outputs are right-padded to one tensor, of which ``input_features_mask`` keeps each
    clip's rows. Only this instance changes, never the class."""
    import types

    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if getattr(model, "_speechsum_per_clip", False):
        return
    batch_features = type(model).get_audio_features

    def get_audio_features(self: Any, input_features: Any, **kwargs: Any) -> Any:
        padding = (input_features == PAD_VALUE).all(-1)
        if input_features.shape[0] == 1 and not padding.any():
            return batch_features(self, input_features, **kwargs)
        frames = (~padding).sum(-1).tolist()
        outputs = [
            batch_features(self, input_features[i : i + 1, : int(n)], **kwargs).pooler_output
            for i, n in enumerate(frames)
        ]
        width = max(out.shape[1] for out in outputs)
        pooled = torch.cat([torch.nn.functional.pad(out, (0, 0, 0, width - out.shape[1])) for out in outputs])
        return BaseModelOutputWithPooling(pooler_output=pooled)

    model.get_audio_features = types.MethodType(get_audio_features, model)
    model._speechsum_per_clip = True


NO_ADAPTER_SUBFOLDER = "speechsum-loads-the-adapter-itself"
"""A subfolder no checkpoint has: passed as ``adapter_kwargs`` so ``from_pretrained`` does not
attach the checkpoint's own adapter (transformers 5.24 insists on peft >= 0.22 for that)."""


def has_bundled_adapter(source: str) -> bool:
    """Whether checkpoint ``source`` carries an ``adapter_config.json`` beside its weights."""
    path = Path(source)
    if path.exists():
        return (path / "adapter_config.json").is_file()
    try:
        from huggingface_hub import file_exists

        return file_exists(source, "adapter_config.json")
    except Exception:  # offline: then from_pretrained fails with the clear error  # noqa: BLE001
        return False


class GraniteSpeechFamily(AudioFamily):
    model_type = "granite_speech"
    audio_placeholder = AUDIO_TOKEN
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    language_model_prefix = "model.language_model"
    audio_encoder_prefixes = ("model.encoder",)
    projector_prefixes = ("model.projector",)

    # --- loading ---------------------------------------------------------------------------
    def model_class(self) -> type:
        from transformers import GraniteSpeechForConditionalGeneration

        return GraniteSpeechForConditionalGeneration

    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        model = self.model_class().from_pretrained(
            source, dtype=dtype, adapter_kwargs={"subfolder": NO_ADAPTER_SUBFOLDER}
        )
        if has_bundled_adapter(source):  # the released audio LoRA: merged, a plain model again
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, source).merge_and_unload()
        encode_clips_separately(model.model)
        return model.to(device).eval()

    def load_processor(self, source: str) -> Any:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)
        if AUDIO_TOKEN not in tokenizer.get_vocab():
            raise ModelError(
                f"the tokenizer of '{source}' has no {AUDIO_TOKEN} token; is it a Granite Speech "
                "checkpoint? Pass its directory (config.json, tokenizer and preprocessor_config.json)."
            )
        features = GraniteSpeechFeatures.from_pretrained(source)
        return AudioTextProcessor(tokenizer, features, tokenizer.chat_template or CHAT_TEMPLATE)

    # --- audio -----------------------------------------------------------------------------
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        window = processor.feature_extractor.window_seconds
        return float(window) if window else REAL_WINDOW_SECONDS

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """``n_fft`` (32 ms): a shorter clip cannot be reflect-padded for the STFT."""
        return int(processor.feature_extractor.n_fft)

    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        import torch

        self.check_audio_token_id(processor, model_config)
        fe: GraniteSpeechFeatures = processor.feature_extractor
        window = self.window_seconds(model_config, processor)
        check_within_window(waveforms, window, fe.sampling_rate)
        shortest = self.min_clip_samples(processor, model_config)
        clips = [fe.features(w) for w in pad_short_clips(waveforms, shortest)]
        width = max(clip.shape[0] for clip in clips)
        features = torch.full((len(clips), width, 2 * fe.n_mels), PAD_VALUE)
        for row, clip in enumerate(clips):
            features[row, : clip.shape[0]] = clip
        tokens = [fe.tokens(clip.shape[0]) for clip in clips]
        mask = torch.arange(max(tokens)).view(1, -1) < torch.tensor(tokens).view(-1, 1)
        return AudioFeatures({"input_features": features, "input_features_mask": mask}, tokens)

    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Projector outputs of each clip alone, on its own frames."""
        import torch

        clips = features["input_features"]
        with torch.inference_mode():
            counts = []
            for clip in clips:
                frames = int((clip != PAD_VALUE).any(-1).sum())
                out = model.model.get_audio_features(clip[None, :frames].to(model.dtype))
                counts.append(int(out.pooler_output.shape[1]))
        return counts

    # --- text ------------------------------------------------------------------------------
    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        messages = messages_for(prompt, with_answer=with_answer, audio_text=AUDIO_TOKEN)
        return self.render_messages(processor, messages, with_answer=with_answer, default_template=CHAT_TEMPLATE)

    # --- tests -----------------------------------------------------------------------------
    def tiny_config(self, text: dict[str, Any], audio_token_id: int) -> Any:
        from transformers import GraniteSpeechConfig

        return GraniteSpeechConfig(
            text_config=text,
            encoder_config=self._tiny_encoder(),
            projector_config=self._tiny_projector(16),
            audio_token_index=audio_token_id,
            has_lora_adapter=False,
            window_size=15,
            downsample_rate=5,
        )

    @staticmethod
    def _tiny_encoder() -> dict[str, Any]:
        # context 50 frames (1 s): a 5 s clip spans several attention blocks
        return {
            "model_type": "granite_speech_encoder",
            "input_dim": 160,
            "num_layers": 2,
            "hidden_dim": 16,
            "feedforward_mult": 2,
            "num_heads": 2,
            "dim_head": 8,
            "output_dim": 8,
            "context_size": 50,
            "max_pos_emb": 64,
            "conv_kernel_size": 5,
            "dropout": 0.0,
        }

    @staticmethod
    def _tiny_projector(encoder_width: int) -> dict[str, Any]:
        return {
            "model_type": "blip_2_qformer",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "encoder_hidden_size": encoder_width,
            "cross_attention_frequency": 1,
            "max_position_embeddings": 64,
        }

    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        import torch
        from transformers import GenerationConfig

        from speechsum_cli.families.tiny import seed_everything, tiny_tokenizer

        specials = [END_OF_TEXT, START_ROLE, END_ROLE, AUDIO_TOKEN]
        tok = tiny_tokenizer(
            specials, chat_template=CHAT_TEMPLATE, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT, bos_token=END_OF_TEXT
        )
        text = {
            "model_type": "granite",
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            # at std 0.02 the LM attends near uniformly: blind to the order of the audio
            "initializer_range": 0.2,
        }
        config = self.tiny_config(text, tok.convert_tokens_to_ids(AUDIO_TOKEN))
        seed_everything(seed)
        model = self.model_class()(config)
        # With std-0.02 weights the tiny Conformer's output is faint and the Q-Former's attention
        # near uniform (a clip and its reverse look alike to the LM): fan-in init for both
        for module in [*model.model.encoder.modules(), *model.model.projector.modules()]:
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
                module.reset_parameters()
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
        )
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir)
        features = GraniteSpeechFeatures(window_seconds=float(window_seconds))
        AudioTextProcessor(tok, features, CHAT_TEMPLATE).save_pretrained(out_dir)
        return out_dir


class GraniteSpeechPlusFamily(GraniteSpeechFamily):
    """Granite Speech Plus: the same processor, features, placeholders and layout; its projector
    reads the final encoder layer concatenated with ``encoder_config.cat_hidden_layers``."""

    model_type = "granite_speech_plus"

    def model_class(self) -> type:
        from transformers import GraniteSpeechPlusForConditionalGeneration

        return GraniteSpeechPlusForConditionalGeneration

    def tiny_config(self, text: dict[str, Any], audio_token_id: int) -> Any:
        from transformers import GraniteSpeechPlusConfig

        encoder = {**self._tiny_encoder(), "model_type": "granite_speech_plus_encoder", "cat_hidden_layers": [1]}
        return GraniteSpeechPlusConfig(
            text_config=text,
            encoder_config=encoder,
            projector_config=self._tiny_projector(2 * 16),
            audio_token_index=audio_token_id,
            has_lora_adapter=False,
            window_size=15,
            downsample_rate=5,
        )
