"""Typed config values: a Python caller's plain string becomes the field's enum once, at the config.

The CLI passes enums (:class:`~speechsum_cli.dtypes.Dtype`,
:class:`~speechsum_cli.data.long_audio.LongAudio`, ...); a Python caller may write
``TrainSettings(dtype="float32")``. A frozen config's ``__post_init__`` calls
:func:`enum_fields`, so everything below it reads the enum and never converts again.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from speechsum_cli.errors import InputError

E = TypeVar("E", bound=Enum)


def member(enum: type[E], value: Any, name: str) -> E:
    """``value`` as a member of ``enum``; an unknown value is an error naming the allowed ones."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise InputError(f"{name} {value!r} is not one of {allowed}.") from None


def enum_fields(config: Any, **fields: type[Enum]) -> None:
    """In a frozen dataclass's ``__post_init__``: each named field as a member of its enum."""
    for name, enum in fields.items():
        object.__setattr__(config, name, member(enum, getattr(config, name), name))
