"""A processor of tokenizer + feature extractor + chat template: all audio-and-text prompting
needs, for families whose stock processor also insists on image/video processors (which need
torchvision, not loadable beside a CPU torch) or on a feature extractor that does not load here
(Granite Speech's needs torchaudio)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

WINDOW_ATTRIBUTE = "speechsum_window_seconds"
"""Feature-extractor attribute (saved in ``preprocessor_config.json``) that overrides a family's
window; tiny test models set it, released checkpoints get the family's real window. It lives with
the feature extractor because the window is a property of how audio is prepared, it survives
``save_pretrained``/``from_pretrained`` unchanged, and plain transformers ignores it."""


def window_seconds_of(feature_extractor: Any, real_window_seconds: float) -> float:
    """The window :data:`WINDOW_ATTRIBUTE` sets on ``feature_extractor`` (tiny test models), else
    ``real_window_seconds`` (the family's window for released checkpoints)."""
    window = getattr(feature_extractor, WINDOW_ATTRIBUTE, None)
    return float(window) if window else real_window_seconds


@dataclass
class AudioTextProcessor:
    """The audio + text half of a multimodal processor; saves like one."""

    tokenizer: Any
    feature_extractor: Any
    chat_template: str | None = None

    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write the tokenizer (chat template included) and ``preprocessor_config.json``."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        if self.chat_template:
            self.tokenizer.chat_template = self.chat_template
        self.tokenizer.save_pretrained(save_directory)
        self.feature_extractor.save_pretrained(save_directory)


def load_audio_text_processor(
    source: str,
    feature_extractor_class: Any,
    *,
    audio_tokens: tuple[str, ...],
    family_name: str,
    chat_template: str,
) -> AudioTextProcessor:
    """Checkpoint ``source``'s tokenizer and ``feature_extractor_class`` with the tokenizer's chat
    template (else the family's ``chat_template``); refuses a tokenizer without ``audio_tokens``."""
    from transformers import AutoTokenizer

    from speechsum_cli.errors import ModelError

    tokenizer = AutoTokenizer.from_pretrained(source)
    missing = [t for t in audio_tokens if t not in tokenizer.get_vocab()]
    if missing:
        raise ModelError(
            f"the tokenizer of '{source}' lacks the {family_name} audio tokens "
            f"{', '.join(missing)}; is it a {family_name} checkpoint? Pass its directory "
            "(config.json, tokenizer and preprocessor_config.json together)."
        )
    feature_extractor = load_feature_extractor(source, feature_extractor_class)
    return AudioTextProcessor(tokenizer, feature_extractor, tokenizer.chat_template or chat_template)


def load_feature_extractor(source: str, feature_extractor_class: Any) -> Any:
    """``feature_extractor_class`` from ``source``'s ``preprocessor_config.json`` (a released
    checkpoint's also describes its image processor: those keys are ignored)."""
    from speechsum_cli.errors import ModelError

    try:
        return feature_extractor_class.from_pretrained(source)
    except OSError:
        raise ModelError(
            f"'{source}' has no preprocessor_config.json for its {feature_extractor_class.__name__}"
            "; pass the checkpoint directory as released (or as a speechsum stage wrote it)."
        ) from None
