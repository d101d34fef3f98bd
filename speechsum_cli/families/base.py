"""The one interface every audio-LLM family implements.

A family knows its checkpoint layout (model class, processor), how to render a conversation with
its chat template, how to turn waveforms into the model's audio inputs and how many placeholder
tokens each audio needs, its audio window, and which modules LoRA/training should touch. The rest
of the toolkit talks to :class:`SpeechLM` (a loaded family model) and never checks model names.

Subclasses implement the abstract methods; :meth:`AudioFamily.encode` is shared so padding,
placeholder expansion and label masking behave the same for every family. So are the steps many
families take alike: the chat-template render (:meth:`AudioFamily.render_messages`), the
audio-token id check, the window check (:func:`check_within_window`) and per-clip embedding
counts (:func:`count_per_clip`); a family writes only what is its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from speechsum_cli.errors import ModelError


@dataclass(frozen=True)
class Prompt:
    """One conversation turn to encode: optional audio + a query (+ the answer, for training)."""

    query: str
    audio: np.ndarray | list[np.ndarray] | None = None
    """Mono float32 at the family's sampling rate, at most one window long; or the consecutive
    windows of one longer recording, in order (their embeddings fill one placeholder run, so the
    model hears the whole recording); None = text only."""
    answer: str | None = None
    system: str | None = None


@dataclass
class AudioFeatures:
    """A family's model inputs for a list of waveforms, and the placeholder count per waveform."""

    tensors: dict[str, Any]
    """Keyword tensors for ``model(**...)`` (features, feature masks, sizes...)."""
    num_tokens: list[int]
    """Placeholder tokens each waveform expands to in the prompt; equals its embedding count."""


@dataclass
class Batch:
    """A padded batch ready for ``model(**batch.inputs)`` or ``model.generate(**batch.inputs)``."""

    inputs: dict[str, Any]
    """input_ids, attention_mask, the family's audio tensors, and ``labels`` if answers were given."""
    audio_tokens: list[int] = field(default_factory=list)
    """Placeholder tokens per row (0 for text-only rows)."""
    audio_seconds: list[float] = field(default_factory=list)
    """Seconds of real (unpadded) audio behind each row."""
    prompt_lengths: list[int] = field(default_factory=list)
    """Unpadded prompt length per row (tokens before the answer)."""
    padded_seconds: list[float] = field(default_factory=list)
    """Seconds of silence added per row to clips shorter than the encoder reads
    (:meth:`AudioFamily.min_clip_samples`); 0.0 for a row whose clips were all long enough."""


def windows_of(prompt: Prompt) -> list[np.ndarray]:
    """The audio windows of ``prompt``: none, its one clip, or its list of consecutive windows."""
    if prompt.audio is None:
        return []
    return list(prompt.audio) if isinstance(prompt.audio, (list, tuple)) else [prompt.audio]


def check_within_window(waveforms: list[np.ndarray], window_seconds: float, sampling_rate: int) -> None:
    """Refuse a clip longer than one window (``round(window_seconds * sampling_rate)`` samples):
    the caller chunks longer audio, so no model input ever loses its tail silently."""
    max_samples = round(window_seconds * sampling_rate)
    too_long = [len(w) for w in waveforms if len(w) > max_samples]
    if too_long:
        raise ValueError(
            f"audio of {max(too_long) / sampling_rate:.1f} s exceeds the {window_seconds:g} s window; chunk it first"
        )


def pad_short_clips(waveforms: list[np.ndarray], min_samples: int) -> list[np.ndarray]:
    """``waveforms`` as float32, each shorter than ``min_samples`` followed by silence up to it:
    how a family's :meth:`AudioFamily.audio_features` reads a clip too short for its encoder
    (:meth:`AudioFamily.encode` reports the silence added, ``Batch.padded_seconds``)."""
    arrays = [np.asarray(w, dtype=np.float32) for w in waveforms]
    return [np.pad(w, (0, min_samples - len(w))) if len(w) < min_samples else w for w in arrays]


def count_per_clip(clips: Any, mask: Any, count: Callable[[Any, Any], Any]) -> list[int]:
    """``count(clip, clip_mask)`` of each clip alone (``clips[i : i + 1]``, ``mask[i : i + 1]``),
    without autograd: what a family's :meth:`AudioFamily.embedding_counts` asks its model."""
    import torch

    with torch.inference_mode():
        return [int(count(clips[i : i + 1], mask[i : i + 1])) for i in range(clips.shape[0])]


def vocab_token_ids(tok: Any, tokens: tuple[str, ...]) -> list[int]:
    """Ids of those of ``tokens`` that ``tok``'s vocabulary has (the others are skipped)."""
    vocab = tok.get_vocab()
    return [vocab[t] for t in tokens if t in vocab]


def messages_for(prompt: Prompt, *, with_answer: bool, audio_text: str | None = None) -> list[dict[str, Any]]:
    """HF chat messages for ``prompt``: the user turn in the multimodal content-list form (audio
    as a content item); or, given ``audio_text`` (for templates that take string contents only),
    one string with ``audio_text`` written before the query when the prompt has audio."""
    messages: list[dict[str, Any]] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    content: str | list[dict[str, Any]]
    if audio_text is not None:
        content = (audio_text if prompt.audio is not None else "") + prompt.query
    else:
        content = [{"type": "audio", "audio": "<audio>"}] if prompt.audio is not None else []
        content.append({"type": "text", "text": prompt.query})
    messages.append({"role": "user", "content": content})
    if with_answer:
        messages.append({"role": "assistant", "content": prompt.answer or ""})
    return messages


class AudioFamily(ABC):
    """Base class of one family; instances are stateless and registered by ``model_type``."""

    model_type: ClassVar[str]
    """``config.model_type`` of the checkpoints this family handles."""
    also_model_types: ClassVar[tuple[str, ...]] = ()
    """Further ``config.model_type`` values of the same checkpoints (e.g. the thinker a full
    omni checkpoint saves as once trained)."""
    audio_placeholder: ClassVar[str]
    """The token the chat template emits once per audio and :meth:`encode` repeats."""
    lora_targets: ClassVar[tuple[str, ...]]
    """Default LoRA target module names (language model only)."""
    language_model_prefix: ClassVar[str]
    """Module path prefix of the language model (LoRA is restricted to it)."""
    audio_encoder_prefixes: ClassVar[tuple[str, ...]]
    """Module path prefixes of the audio encoder (frozen by default)."""
    projector_prefixes: ClassVar[tuple[str, ...]]
    """Module path prefixes of the audio projector (trainable by default). A projector may sit
    inside the encoder's module (Qwen2.5-Omni's ``audio_tower.proj``): it still counts as projector."""
    encoder_output_per_window: ClassVar[bool] = False
    """Whether the encoder's output for one clip depends only on that clip (every clip padded to
    one fixed window), so the feature cache may store it per clip."""

    # --- loading ---------------------------------------------------------------------------
    @abstractmethod
    def load_model(self, source: str, *, dtype: Any, device: str) -> Any:
        """Load the model (eval mode) from a local dir or hub id."""

    @abstractmethod
    def load_processor(self, source: str) -> Any:
        """Load the processor/tokenizer bundle saved with the checkpoint."""

    def tokenizer(self, processor: Any) -> Any:
        """The text tokenizer inside ``processor``."""
        return getattr(processor, "tokenizer", processor)

    # --- audio -----------------------------------------------------------------------------
    def sampling_rate(self, processor: Any) -> int:
        """Sample rate the audio encoder expects: its feature extractor's."""
        return int(processor.feature_extractor.sampling_rate)

    @abstractmethod
    def window_seconds(self, model_config: Any, processor: Any) -> float:
        """Longest audio one prompt may carry; longer recordings are chunked by the caller."""

    def min_clip_samples(self, processor: Any, model_config: Any) -> int:
        """Fewest samples of a clip the encoder makes usable audio embeddings of. A shorter clip
        is read followed by silence up to this length (:func:`pad_short_clips`, in
        :meth:`audio_features`), never refused; :meth:`encode` counts the silence added."""
        return 1

    @abstractmethod
    def audio_features(self, processor: Any, model_config: Any, waveforms: list[np.ndarray]) -> AudioFeatures:
        """Model audio inputs for ``waveforms`` (each at most one window; one shorter than
        :meth:`min_clip_samples` padded with silence to it) and token counts."""

    @abstractmethod
    def embedding_counts(self, model: Any, features: dict[str, Any]) -> list[int]:
        """Audio embeddings the model's own audio path makes of each clip in ``features`` (the
        tensors :meth:`audio_features` returned): the placeholders each clip must expand to.

        Computed by running (or asking) the model, never from the feature extractor's lengths, so
        the conformance suite (tests/test_family_conformance.py) can hold :meth:`audio_features`'
        ``num_tokens`` against it.
        """

    # --- text ------------------------------------------------------------------------------
    @abstractmethod
    def render(self, processor: Any, prompt: Prompt, *, with_answer: bool) -> str:
        """The chat-templated text of ``prompt`` with one ``audio_placeholder`` if it has audio.

        ``with_answer=False`` renders up to the generation prompt; ``True`` appends the answer
        and the end-of-turn token, so the first rendering is a prefix of the second.
        """

    def chat_template_of(self, processor: Any, default: str | None = None) -> str | None:
        """The chat template prompts render with: the processor's, else its tokenizer's, else
        ``default`` (the family's own, for checkpoints saved without one)."""
        tok = self.tokenizer(processor)
        return getattr(processor, "chat_template", None) or getattr(tok, "chat_template", None) or default

    def render_messages(
        self,
        processor: Any,
        messages: list[dict[str, Any]],
        *,
        with_answer: bool,
        default_template: str | None = None,
    ) -> str:
        """``messages`` as text by :meth:`chat_template_of`: up to the generation prompt, or
        (``with_answer``) through the answer's end of turn."""
        return self.tokenizer(processor).apply_chat_template(
            messages,
            chat_template=self.chat_template_of(processor, default_template),
            tokenize=False,
            add_generation_prompt=not with_answer,
        )

    def check_audio_token_id(self, processor: Any, model_config: Any) -> None:
        """Refuse a processor whose tokenizer maps :attr:`audio_placeholder` to another id than
        the model's ``audio_token_id`` (the model would never find the audio's positions)."""
        token_id = self.tokenizer(processor).convert_tokens_to_ids(self.audio_placeholder)
        if token_id != model_config.audio_token_id:
            raise ModelError(
                f"the tokenizer maps {self.audio_placeholder} to id {token_id} but the model's "
                f"audio_token_id is {model_config.audio_token_id}; the processor does not belong "
                "to this model."
            )

    def placeholder_token_ids(self, processor: Any) -> list[int]:
        """Token ids generation must never emit (audio placeholders and their brackets)."""
        tok = self.tokenizer(processor)
        return [tok.convert_tokens_to_ids(self.audio_placeholder)]

    # --- composition (``speechsum compose``) ----------------------------------------------
    compose_tokens: ClassVar[tuple[str, ...]] = ()
    """Tokens ``compose`` adds to a language model's tokenizer; empty = the family is not composable."""
    compose_template_tokens: ClassVar[tuple[str, ...]] = ()
    """Further tokens ``compose`` adds when it installs the family's own chat template."""
    audio_content: ClassVar[str] = ""
    """Text one audio item becomes inside a user turn (contains ``audio_placeholder`` once)."""
    chat_template: ClassVar[str | None] = None
    """The family's chat template, installed by ``compose`` when the LM's cannot render audio."""
    end_of_turn: ClassVar[str | None] = None
    """The token that ends an assistant turn in :attr:`chat_template` if not the LM's eos."""

    @property
    def composable(self) -> bool:
        """Whether ``speechsum compose`` can build a checkpoint of this family."""
        return bool(self.compose_tokens)

    def compose_config(self, encoder: dict[str, Any], text_config: Any, audio_token_id: int) -> Any:
        """The family's model config for a Whisper-shaped ``encoder`` (Whisper config field names,
        ``max_source_positions`` already set to the window) and a causal LM's ``text_config``."""
        raise NotImplementedError(f"{type(self).__name__} cannot be composed")

    def compose_processor(self, feature_extractor: Any, tokenizer: Any, chat_template: str) -> Any:
        """The family's processor around a Whisper feature extractor and an LM's tokenizer."""
        raise NotImplementedError(f"{type(self).__name__} cannot be composed")

    def model_class(self) -> type:
        """The transformers class of this family's checkpoints."""
        raise NotImplementedError(f"{type(self).__name__} has no model class registered")

    def template_renders_audio(self, text: str) -> bool:
        """Whether a chat-template rendering of one user turn with one audio carries it as
        :attr:`audio_content` (one placeholder)."""
        return text.count(self.audio_placeholder) == 1 and self.audio_content.strip() in text

    # --- alignment (``speechsum align``) ----------------------------------------------------
    def encoder_states(self, model: Any, features: dict[str, Any]) -> Any:
        """The audio encoder's output ``[clips, frames, width]`` for :meth:`audio_features`'
        tensors, computed as the model's own forward computes it (so the feature cache serves both)."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its encoder states")

    def project(self, model: Any, states: Any) -> Any:
        """The projector's audio embeddings ``[clips, tokens, hidden]`` for :meth:`encoder_states`."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its projector")

    def projector_input(self, model_config: Any, states: Any) -> Any:
        """The projector's input ``[clips, rows, width]`` for :meth:`encoder_states`."""
        raise NotImplementedError(f"{type(self).__name__} does not expose its projector's input")

    def compression_rows(self, model_config: Any) -> int:
        """Projector rows (audio embeddings) of one clip, the same for every clip: what CTC-guided
        compression (:mod:`speechsum_cli.families.compression`) selects from. Families whose clips
        vary in embeddings, or that hide their projector's input, cannot be compressed."""
        raise NotImplementedError(f"{type(self).__name__} cannot compress its audio tokens")

    @property
    def compressible(self) -> bool:
        """Whether ``speechsum align --compress`` can make this family read only speaking frames."""
        return type(self).compression_rows is not AudioFamily.compression_rows

    @property
    def alignable(self) -> bool:
        """Whether ``speechsum align`` can train this family's projector on its own."""
        return type(self).encoder_states is not AudioFamily.encoder_states

    # --- tests -----------------------------------------------------------------------------
    def build_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        """Save a tiny random model + processor of this family to ``out_dir``, fully offline.

        Written as stage outputs are (:func:`~speechsum_cli.fs.staged_dir`): the files get
        ordinary permissions (safetensors writes 0600) and land in ``out_dir`` only complete."""
        from speechsum_cli.fs import staged_dir

        out = Path(out_dir)
        with staged_dir(out) as tmp:
            self.write_tiny(tmp, window_seconds=window_seconds, seed=seed)
        return out

    @abstractmethod
    def write_tiny(self, out_dir: Path, *, window_seconds: float = 5.0, seed: int = 0) -> Path:
        """What :meth:`build_tiny` saves: a tiny random model + processor into ``out_dir``."""

    # --- shared encoding -------------------------------------------------------------------
    def encode(
        self,
        processor: Any,
        model_config: Any,
        prompts: list[Prompt],
        *,
        padding_side: str = "left",
        counter: Callable[[AudioFeatures], list[int]] | None = None,
    ) -> Batch:
        """Tokenize ``prompts`` into one padded batch.

        Audio placeholders are expanded to exactly the number of embeddings the encoder
        produces (``counter``: the number a compressed model keeps of each clip, instead of
        :meth:`audio_features`' count). If every prompt has an answer, ``labels`` mask everything
        but the answer tokens (and padding) with -100.
        """
        import torch

        tok = self.tokenizer(processor)
        sr = self.sampling_rate(processor)
        windows = [windows_of(p) for p in prompts]
        owners = [row for row, clips in enumerate(windows) for _ in clips]
        clips = [clip for row_clips in windows for clip in row_clips]
        features = self.audio_features(processor, model_config, clips) if clips else AudioFeatures({}, [])
        if counter is not None and clips:
            features.num_tokens = counter(features)
        tokens_per_row = [0] * len(prompts)
        for row, n in zip(owners, features.num_tokens):
            tokens_per_row[row] += n
        shortest = self.min_clip_samples(processor, model_config) if clips else 0
        padded = [0.0] * len(prompts)
        for row, clip in zip(owners, clips):
            padded[row] += max(0, shortest - len(clip)) / sr

        training = all(p.answer is not None for p in prompts)
        rows: list[list[int]] = []
        prompt_lengths: list[int] = []
        for prompt, n_audio in zip(prompts, tokens_per_row):
            prompt_ids = self._tokenize(tok, self.render(processor, prompt, with_answer=False), n_audio)
            prompt_lengths.append(len(prompt_ids))
            if training:
                full_ids = self._tokenize(tok, self.render(processor, prompt, with_answer=True), n_audio)
                if full_ids[: len(prompt_ids)] != prompt_ids:
                    raise ValueError(
                        f"{type(self).__name__}: the rendered prompt is not a prefix of the "
                        "rendered conversation; the chat template cannot mask the answer."
                    )
                rows.append(full_ids)
            else:
                rows.append(prompt_ids)

        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids, plen) in enumerate(zip(rows, prompt_lengths)):
            start = width - len(ids) if padding_side == "left" else 0
            input_ids[i, start : start + len(ids)] = torch.tensor(ids)
            attention_mask[i, start : start + len(ids)] = 1
            labels[i, start + plen : start + len(ids)] = torch.tensor(ids[plen:], dtype=torch.long)

        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        inputs.update(features.tensors)
        if training:
            inputs["labels"] = labels
        seconds = [sum(len(clip) for clip in row_clips) / sr for row_clips in windows]
        return Batch(inputs, tokens_per_row, seconds, prompt_lengths, padded)

    def _tokenize(self, tok: Any, text: str, n_audio: int) -> list[int]:
        """Token ids of ``text`` with its single audio placeholder repeated ``n_audio`` times."""
        placeholder_id = tok.convert_tokens_to_ids(self.audio_placeholder)
        if n_audio == 0:
            return list(tok(text, add_special_tokens=False)["input_ids"])
        before, sep, after = text.partition(self.audio_placeholder)
        if not sep:
            raise ValueError(f"{type(self).__name__}: rendered prompt has no {self.audio_placeholder!r}: {text!r}")
        head = list(tok(before, add_special_tokens=False)["input_ids"]) if before else []
        tail = list(tok(after, add_special_tokens=False)["input_ids"]) if after else []
        return head + [placeholder_id] * n_audio + tail
