"""A causal LM's last hidden states and its LM head, instead of its logits.

At a real vocabulary (Phi-4-multimodal: 200k tokens) the ``[batch, length, vocab]`` logits of a
forward pass dwarf everything else a training step holds. A loss that needs the logits of a few
positions at a time (``distill``'s divergence) asks for :func:`completion_states`: the model runs
with its LM head bypassed — the head returns its input, so what the model returns as "logits" are
its last hidden states — and the caller applies :class:`Head` to a chunk of positions at a time.

This works for any model whose forward ends with ``logits = lm_head(hidden)`` (Llama, Qwen2,
Qwen2-Audio, Voxtral, Phi-4, ...). A model that changes the head's output before returning it
(soft-capping, scaling) is detected on its first call — its "logits" are then not exactly what the
head returned — and falls back, with one note on stderr, to its full logits and an identity head:
the same loss, without the memory saving.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def unwrapped(model: Any) -> Any:
    """The model inside a DDP wrapper (``.module``), else the model."""
    return getattr(model, "module", model)


def accepts_logits_to_keep(model: Any) -> bool:
    base = unwrapped(model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return "logits_to_keep" in inspect.signature(type(base).forward).parameters


def forward_last(model: Any, inputs: dict[str, Any], width: int) -> Any:
    """The model's output rows predicting the last ``width`` tokens of ``inputs['input_ids']``,
    ``[B, width, X]``: asks for the last ``width + 1`` positions only when the forward supports
    ``logits_to_keep``, else slices."""
    if accepts_logits_to_keep(model):
        out = model(**inputs, logits_to_keep=width + 1).logits
    else:
        out = model(**inputs).logits
    return out[:, -(width + 1) : -1]


@contextmanager
def head_bypassed(head: Any) -> Iterator[list[Any]]:
    """While active, ``head`` returns its input unchanged; yields the list of what it returned."""
    returned: list[Any] = []

    def passthrough(hidden: Any, *args: Any, **kwargs: Any) -> Any:
        returned.append(hidden)
        return hidden

    previous = head.__dict__.get("forward")  # an instance-level forward (accelerate hooks) stays
    head.forward = passthrough
    try:
        yield returned
    finally:
        if previous is None:
            del head.forward
        else:
            head.forward = previous


@dataclass(frozen=True)
class Head:
    """Hidden states -> logits over ids ``[0, vocab)``, on the head's own device and dtype."""

    module: Any
    """The LM head (``get_output_embeddings()``), or None: the rows already are logits."""
    vocab: int

    def __call__(self, hidden: Any) -> Any:
        if self.module is None:
            return hidden[..., : self.vocab]
        weight = self.module.weight
        return self.module(hidden.to(weight.device, weight.dtype))[..., : self.vocab]


@dataclass
class HeadStates:
    """Runs a model for its last hidden states + :class:`Head`, or its logits where it must."""

    name: str
    """'student' or 'teacher', for the note on a fallback."""
    fused: bool = True
    """False once the model was seen changing its head's output: full logits from then on."""
    _warned: bool = field(default=False, repr=False)

    def __call__(self, model: Any, inputs: dict[str, Any], width: int, vocab: int) -> tuple[Any, Head]:
        """``([B, width, H], head)`` — or ``([B, width, V], identity head)`` after a fallback."""
        module = unwrapped(model).get_output_embeddings()
        if self.fused and module is not None and not _sharded(model, module):
            with head_bypassed(module) as returned:
                rows = forward_last(model, inputs, width)
            if returned and _unchanged(rows, returned[-1], width):
                return rows, Head(module, vocab)
            self.fused = False
            self._note()
        return forward_last(model, inputs, width), Head(None, vocab)

    def _note(self) -> None:
        if self._warned:
            return
        self._warned = True
        from speechsum_cli.console import info

        info(
            f"the {self.name}'s forward changes its LM head's output (e.g. soft-capping): its full "
            "logits are used, so this model gets no memory saving from chunking the divergence."
        )


def _sharded(model: Any, module: Any) -> bool:
    """FSDP (1 or 2) gathers the head's weight only inside the forward: keep its logits (untested here)."""
    return "FullyShardedDataParallel" in type(model).__name__ or type(module.weight).__name__ == "DTensor"


def _unchanged(rows: Any, head_out: Any, width: int) -> bool:
    """Whether the model returned exactly what its head returned (the same rows, same values)."""
    import torch

    expected = head_out[:, -(width + 1) : -1]
    return rows.shape == expected.shape and (
        rows.data_ptr() == expected.data_ptr() or torch.equal(rows, expected.to(rows.dtype))
    )
