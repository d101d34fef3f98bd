"""The one dtype vocabulary (:class:`Dtype`) and the one resolver of ``auto``.

Training's ``--dtype``, inference's ``--dtype`` and distill's ``--teacher-dtype`` take the same
four values; :func:`resolve` picks the concrete one for a device, :func:`torch_dtype` names it
for torch. Light on purpose (torch only inside the functions): the CLI builds its options from
:class:`Dtype`.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from speechsum_cli.typed import member


class Dtype(str, Enum):
    """Weights' and compute dtype."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


HELP = "auto (bfloat16/float16 on GPU, float32 on CPU), float32, bfloat16 or float16."
"""The help of every dtype flag."""


def resolve(dtype: Dtype | str, device: str) -> Dtype:
    """``auto`` -> bfloat16 on a GPU that supports it, float16 on other GPUs, float32 on CPU.

    ``device`` is a resolved device (``cpu``, ``cuda``, ``cuda:N``). The one place a dtype is read
    from its value too (a Python caller's ``load(..., dtype="float32")``).
    """
    chosen = member(Dtype, dtype, "dtype")
    if chosen is not Dtype.auto:
        return chosen
    if not device.startswith("cuda"):
        return Dtype.float32
    import torch

    return Dtype.bfloat16 if torch.cuda.is_bf16_supported() else Dtype.float16


def of_torch(torch_dtype: Any) -> Dtype:
    """The :class:`Dtype` of a ``torch.dtype`` (``torch.bfloat16`` -> bfloat16)."""
    return Dtype(str(torch_dtype).removeprefix("torch."))


def torch_dtype(dtype: Dtype) -> Any:
    """The ``torch.dtype`` of a resolved (not ``auto``) :class:`Dtype`."""
    import torch

    if dtype is Dtype.auto:
        raise ValueError("resolve 'auto' for a device first (dtypes.resolve)")
    return getattr(torch, dtype.value)
