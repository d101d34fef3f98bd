"""Plain causal LMs (no audio): the text teacher, and what ``sft`` fine-tunes in text mode.

A checkpoint whose ``model_type`` has no audio family but that transformers loads as a causal LM
(llama, qwen2, mistral, ...: SmolLM2, Qwen2.5-Instruct) is a *text LM*. It is not an audio family:
no processor, no audio window, no placeholders. :class:`TextLM` carries what the training layer
reads from a :class:`~speechsum_cli.families.SpeechLM` — the model, its tokenizer (saved as the
"processor", with the chat template), its source, and a ``family`` whose module prefixes say the
whole model is the language model — so ``speechsum sft`` trains it through the same LoRA, Trainer
and save code as an audio LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

TEXT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LoRA targets of a plain causal LM (the attention and MLP projections of Llama-style blocks)."""


@dataclass(frozen=True)
class TextFamily:
    """The training layer's view of a plain causal LM: every weight belongs to the language model."""

    model_type: str = "text"
    """Not a config's model_type: the name of this kind of model in messages and manifests."""
    lora_targets: tuple[str, ...] = TEXT_LORA_TARGETS
    language_model_prefix: str = ""
    """The empty prefix: the whole model (LoRA may wrap any matching module, all weights are 'LM')."""
    audio_encoder_prefixes: tuple[str, ...] = ()
    projector_prefixes: tuple[str, ...] = ()


TEXT_FAMILY = TextFamily()


def is_causal_lm_type(model_type: str) -> bool:
    """Whether transformers builds a causal LM for ``model_type`` (``AutoModelForCausalLM``)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def load_causal_lm(base: str, *, dtype: Any, device: str) -> Any:
    """``AutoModelForCausalLM`` of a full checkpoint (dir or hub id), in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    return model.to(device).eval()


def load_text_tokenizer(source: str) -> Any:
    """The tokenizer saved with a text LM (an sft adapter dir holds one, chat template included)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


@dataclass
class TextLM:
    """A loaded plain causal LM, shaped like :class:`SpeechLM` where the training layer reads it."""

    family: TextFamily
    model: Any
    processor: Any
    """The tokenizer: what is saved beside the weights (``processor.save_pretrained``)."""
    source: str
    text_only: ClassVar[bool] = True

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def tokenizer(self) -> Any:
        return self.processor

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def context_length(self) -> int:
        """Longest token sequence the model takes."""
        return int(self.config.get_text_config().max_position_embeddings)
