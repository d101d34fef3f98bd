"""Audio-LLM families, found by ``config.model_type``.

``load(source)`` is the entry point every stage uses. Nothing outside this package matches on
model names or types.
"""

from __future__ import annotations

from typing import Any

from speechsum_cli.errors import ModelError, UnsupportedFamilyError
from speechsum_cli.families import compression
from speechsum_cli.families.audioflamingo3 import AudioFlamingo3Family
from speechsum_cli.families.base import AudioFamily, AudioFeatures, Batch, Prompt
from speechsum_cli.families.gemma4 import Gemma4Family
from speechsum_cli.families.granite_speech import GraniteSpeechFamily, GraniteSpeechPlusFamily
from speechsum_cli.families.model import (
    GenerationSettings,
    SpeechLM,
    adapter_base,
    attach_adapter,
    read_model_type,
    resolve_device,
    resolve_dtype,
    resolve_source,
)
from speechsum_cli.families.phi4_multimodal import Phi4MultimodalFamily
from speechsum_cli.families.qwen2_5_omni import Qwen2_5OmniFamily
from speechsum_cli.families.qwen2_audio import Qwen2AudioFamily
from speechsum_cli.families.qwen3_omni_moe import Qwen3OmniMoeFamily
from speechsum_cli.families.text import (
    TEXT_FAMILY,
    TextLM,
    is_causal_lm_type,
    load_causal_lm,
    load_text_tokenizer,
)
from speechsum_cli.families.voxtral import VoxtralFamily

FAMILIES: dict[str, AudioFamily] = {
    family.model_type: family
    for family in (
        Qwen2AudioFamily(), Phi4MultimodalFamily(), VoxtralFamily(), Qwen2_5OmniFamily(),
        AudioFlamingo3Family(), Gemma4Family(), Qwen3OmniMoeFamily(), GraniteSpeechFamily(),
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

__all__ = [
    "FAMILIES",
    "AudioFamily",
    "AudioFeatures",
    "Batch",
    "GenerationSettings",
    "Prompt",
    "SpeechLM",
    "TextLM",
    "get_family",
    "is_text_lm",
    "load",
    "load_generator",
    "load_text_model",
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
        return FAMILIES.get(model_type) or ALSO_KNOWN_AS[model_type]
    except KeyError:
        hint = KNOWN_FORMATS.get(model_type, "Pick a checkpoint of one of these families.")
        raise UnsupportedFamilyError(
            f"model_type '{model_type}' is not supported. Supported families: "
            f"{', '.join(sorted(FAMILIES))}. {hint}"
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


def adapter_chain(source: str) -> tuple[str, list[str]]:
    """The full checkpoint at the bottom of ``source`` and the adapters above it, top first.

    A chain of adapters (dpo on kd on sft on a base, as earlier versions wrote them; the stages
    now keep the merged starting weights in the adapter's ./base) is merged in training order by
    :func:`merge_chain`. Transformers' own adapter loading follows one level only, and does not
    resolve a base written relative to the adapter, so such outputs would not load otherwise.
    """
    chain: list[str] = []
    base = source
    while (parent := adapter_base(base)) is not None:
        chain.append(base)
        base = resolve_source(parent)
        if len(chain) > 32:
            raise ModelError(f"'{source}': adapter chain longer than 32 (a cycle in base_model_name_or_path?)")
    return base, chain


def merge_chain(model: Any, chain: list[str]) -> Any:
    """``model`` with the adapters of :func:`adapter_chain` merged in, bottom first."""
    for adapter in reversed(chain):  # LoRA outputs of sft/distill/dpo: merged in for inference
        model = attach_adapter(model, adapter).eval()
    return model


def load(source: str, *, device: str = "auto", dtype: str = "auto", text: bool = False) -> SpeechLM | TextLM:
    """Load a checkpoint (local dir, hub id, or ``hub_id@revision``) of any supported family.

    A PEFT adapter directory (``adapter_config.json``, no config.json) loads its base checkpoint
    and merges the adapter; the processor is read from the adapter directory, where sft saves it.
    A base written relative to the adapter (``./base``, ``../models/student``) is found beside it.
    ``text``: ``source`` is a plain causal LM (see :func:`is_text_lm`); returns a :class:`TextLM`
    (model + tokenizer), adapters handled the same way.
    """
    source = resolve_source(source)
    base, chain = adapter_chain(source)
    resolved_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, resolved_device)
    if text:
        model = merge_chain(load_causal_lm(base, dtype=torch_dtype, device=resolved_device), chain)
        return TextLM(TEXT_FAMILY, model, load_text_tokenizer(source), source)
    family = get_family(read_model_type(base))
    model = merge_chain(family.load_model(base, dtype=torch_dtype, device=resolved_device), chain)
    lm = SpeechLM(family, model, family.load_processor(source), source)
    folder = compression.find([*chain, base])
    if folder is not None:
        lm.compressor = compression.load_compressor(folder, family, model)
        lm.compressor.install(model)
    return lm


def load_generator(source: str, *, server: Any = None, device: str = "auto", dtype: str = "auto") -> Any:
    """What summarize, eval and pairs generate with: the checkpoint loaded here, or with ``server``
    (an :class:`~speechsum_cli.llm.LLMConfig`, from ``--server-base-url``) its processor and config
    here and its generation on that server (:class:`~speechsum_cli.families.served.ServedSpeechLM`,
    the same interface)."""
    if server is None:
        return load(source, device=device, dtype=dtype)
    from speechsum_cli.families.served import load_served

    return load_served(source, server)


def load_text_model(source: str, *, dtype: Any, device: str) -> Any:
    """A causal LM's model alone (dir, hub id, ``hub_id@revision`` or adapter dir; adapters
    merged), in eval mode on ``device``: the text teacher."""
    base, chain = adapter_chain(resolve_source(source))
    return merge_chain(load_causal_lm(base, dtype=dtype, device=device), chain)
