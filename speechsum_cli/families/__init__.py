"""Audio-LLM families, found by ``config.model_type``.

``load(source)`` is the entry point every stage uses. Nothing outside this package matches on
model names or types.
"""

from __future__ import annotations

from speechsum_cli.errors import ModelError, UnsupportedFamilyError
from speechsum_cli.families.base import AudioFamily, AudioFeatures, Batch, Prompt
from speechsum_cli.families.model import (
    GenerationSettings,
    SpeechLM,
    adapter_base,
    attach_adapter,
    read_model_type,
    resolve_source,
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


KNOWN_FORMATS = {
    "phi4mm": (
        "This is Phi-4-multimodal's original remote-code format. Use its transformers-format "
        "revision: --model microsoft/Phi-4-multimodal-instruct@refs/pr/70"
    ),
}
"""model_types we recognise but cannot load, with the way forward."""


def get_family(model_type: str) -> AudioFamily:
    """The family for ``model_type``; an error lists the supported ones."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        hint = KNOWN_FORMATS.get(model_type, "Pick a checkpoint of one of these families.")
        raise UnsupportedFamilyError(
            f"model_type '{model_type}' is not supported. Supported families: "
            f"{', '.join(sorted(FAMILIES))}. {hint}"
        ) from None


def load(source: str, *, device: str = "auto", dtype: str = "auto") -> SpeechLM:
    """Load a checkpoint (local dir, hub id, or ``hub_id@revision``) of any supported family.

    A PEFT adapter directory (``adapter_config.json``, no config.json) loads its base checkpoint
    and merges the adapter; the processor is read from the adapter directory, where sft saves it.
    A base written relative to the adapter (``./base``, ``../models/student``) is found beside it.
    """
    source = resolve_source(source)
    # A chain of adapters (dpo on kd on sft on a base, as earlier versions wrote them; the stages
    # now keep the merged starting weights in the adapter's ./base): load the full checkpoint at
    # the bottom, then merge the adapters in training order. Transformers' own adapter loading
    # follows one level only, so such a chain would not load otherwise.
    chain: list[str] = []
    base = source
    while (parent := adapter_base(base)) is not None:
        chain.append(base)
        base = resolve_source(parent)
        if len(chain) > 32:
            raise ModelError(f"'{source}': adapter chain longer than 32 (a cycle in base_model_name_or_path?)")
    family = get_family(read_model_type(base))
    resolved_device = resolve_device(device)
    model = family.load_model(base, dtype=resolve_dtype(dtype, resolved_device), device=resolved_device)
    for adapter in reversed(chain):  # LoRA outputs of sft/distill/dpo: merged in for inference
        model = attach_adapter(model, adapter).eval()
    return SpeechLM(family, model, family.load_processor(source), source)
