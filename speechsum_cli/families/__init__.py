"""Audio-LLM families, found by ``config.model_type``.

``load(source)`` is the entry point every stage uses. Nothing outside this package matches on
model names or types.
"""

from __future__ import annotations

from speechsum_cli.errors import UnsupportedFamilyError
from speechsum_cli.families.base import AudioFamily, AudioFeatures, Batch, Prompt
from speechsum_cli.families.model import (
    GenerationSettings,
    SpeechLM,
    read_model_type,
    resolve_device,
    resolve_dtype,
)
from speechsum_cli.families.phi4_multimodal import Phi4MultimodalFamily
from speechsum_cli.families.qwen2_audio import Qwen2AudioFamily
from speechsum_cli.families.voxtral import VoxtralFamily

FAMILIES: dict[str, AudioFamily] = {
    family.model_type: family
    for family in (Qwen2AudioFamily(), Phi4MultimodalFamily(), VoxtralFamily())
}

__all__ = [
    "FAMILIES",
    "AudioFamily",
    "AudioFeatures",
    "Batch",
    "GenerationSettings",
    "Prompt",
    "SpeechLM",
    "get_family",
    "load",
]


def get_family(model_type: str) -> AudioFamily:
    """The family for ``model_type``; an error lists the supported ones."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise UnsupportedFamilyError(
            f"model_type '{model_type}' is not supported. Supported families: "
            f"{', '.join(sorted(FAMILIES))}. Pick a checkpoint of one of these, or build one with "
            "'speechsum compose'."
        ) from None


def load(source: str, *, device: str = "auto", dtype: str = "auto") -> SpeechLM:
    """Load a checkpoint (local dir or hub id) of any supported family."""
    family = get_family(read_model_type(source))
    resolved_device = resolve_device(device)
    model = family.load_model(source, dtype=resolve_dtype(dtype, resolved_device), device=resolved_device)
    return SpeechLM(family, model, family.load_processor(source), source)
