"""Every audio family, found by its checkpoint's ``config.model_type``."""

from __future__ import annotations

from speechsum_cli.errors import ModelError, UnsupportedFamilyError
from speechsum_cli.families.audioflamingo3 import AudioFlamingo3Family
from speechsum_cli.families.base import AudioFamily
from speechsum_cli.families.gemma4 import Gemma4Family
from speechsum_cli.families.granite_speech import GraniteSpeechFamily, GraniteSpeechPlusFamily
from speechsum_cli.families.model import read_model_type, resolve_source
from speechsum_cli.families.phi4_multimodal import Phi4MultimodalFamily
from speechsum_cli.families.qwen2_5_omni import Qwen2_5OmniFamily
from speechsum_cli.families.qwen2_audio import Qwen2AudioFamily
from speechsum_cli.families.qwen3_omni_moe import Qwen3OmniMoeFamily
from speechsum_cli.families.text import is_causal_lm_type
from speechsum_cli.families.voxtral import VoxtralFamily

FAMILIES: dict[str, AudioFamily] = {
    family.model_type: family
    for family in (
        Qwen2AudioFamily(),
        Phi4MultimodalFamily(),
        VoxtralFamily(),
        Qwen2_5OmniFamily(),
        AudioFlamingo3Family(),
        Gemma4Family(),
        Qwen3OmniMoeFamily(),
        GraniteSpeechFamily(),
        GraniteSpeechPlusFamily(),
    )
}
"""Every audio family, by its main ``model_type``: adding a family = writing its adapter and
listing it here (tests/test_family_conformance.py then holds it to the shared contract)."""

ALSO_KNOWN_AS: dict[str, AudioFamily] = {
    other: family for family in FAMILIES.values() for other in family.also_model_types
}
"""Further model_types of a family's checkpoints (a trained Qwen2.5-Omni thinker saves as
``qwen2_5_omni_thinker``)."""

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
        return FAMILIES.get(model_type) or ALSO_KNOWN_AS[model_type]
    except KeyError:
        hint = KNOWN_FORMATS.get(model_type, "Pick a checkpoint of one of these families.")
        raise UnsupportedFamilyError(
            f"model_type '{model_type}' is not supported. Supported families: {', '.join(sorted(FAMILIES))}. {hint}"
        ) from None


def is_text_lm(source: str) -> bool:
    """Whether ``source`` (dir, hub id, adapter dir) is a plain causal LM rather than a checkpoint
    of an audio family: its model_type has no family here and transformers loads it as a causal
    LM. False when its config cannot be read (loading it as an audio LLM then says why)."""
    try:
        model_type = read_model_type(resolve_source(source))
    except ModelError:
        return False
    is_audio = model_type in FAMILIES or model_type in ALSO_KNOWN_AS
    return not is_audio and is_causal_lm_type(model_type)
