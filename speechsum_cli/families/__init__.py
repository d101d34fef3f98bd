"""Audio-LLM families, found by ``config.model_type``.

``load(source)`` is the entry point every stage uses. Nothing outside this package matches on
model names or types.
"""

from __future__ import annotations

from typing import Any

from speechsum_cli import dtypes
from speechsum_cli.dtypes import Dtype
from speechsum_cli.families import compression
from speechsum_cli.families.base import AudioFamily, AudioFeatures, Batch, Prompt
from speechsum_cli.families.model import (
    GenerationSettings,
    SpeechLM,
    adapter_base,
    adapter_chain,
    attach_adapter,
    merge_chain,
    read_model_type,
    resolve_device,
    resolve_source,
)
from speechsum_cli.families.registry import FAMILIES, get_family, is_text_lm
from speechsum_cli.families.text import TEXT_FAMILY, TextLM, load_causal_lm, load_text_tokenizer

__all__ = [
    "FAMILIES",
    "AudioFamily",
    "AudioFeatures",
    "Batch",
    "GenerationSettings",
    "Prompt",
    "SpeechLM",
    "TextLM",
    "adapter_base",
    "attach_adapter",
    "get_family",
    "is_text_lm",
    "load",
    "load_generator",
    "load_text_model",
]


def load(source: str, *, device: str = "auto", dtype: Dtype = Dtype.auto, text: bool = False) -> SpeechLM | TextLM:
    """Load a checkpoint (local dir, hub id, or ``hub_id@revision``) of any supported family.

    A PEFT adapter directory (``adapter_config.json``, no config.json) loads its base checkpoint
    and merges the adapter; the processor is read from the adapter directory, where sft saves it.
    A base written relative to the adapter (``./base``, ``../models/student``) is found beside it.
    ``text``: ``source`` is a plain causal LM (see :func:`is_text_lm`); returns a :class:`TextLM`
    (model + tokenizer), adapters handled the same way. ``dtype``: ``auto`` is resolved for the
    device (:func:`speechsum_cli.dtypes.resolve`).
    """
    source = resolve_source(source)
    base, chain = adapter_chain(source)
    resolved_device = resolve_device(device)
    torch_dtype = dtypes.torch_dtype(dtypes.resolve(dtype, resolved_device))
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


def load_generator(source: str, *, server: Any = None, device: str = "auto", dtype: Dtype = Dtype.auto) -> Any:
    """What summarize, eval and pairs generate with: the checkpoint loaded here, or with ``server``
    (an :class:`~speechsum_cli.llm.config.LLMConfig`, from ``--server-base-url``) its processor and config
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
