"""The generation flags' defaults, one table for every command that generates.

``--max-new-tokens``, ``--temperature``, ``--top-p`` and ``--batch-size`` mean the same thing in
summarize, eval, pairs and distill. Each has one default here; a command whose default differs
says why, and the reason is shown in its ``--help``. The stage configs read their defaults from
the same table, so a command's flag and its config cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Default:
    """A flag's default for one command, and why it differs from the shared one."""

    value: float | int
    why: str = ""


MAX_NEW_TOKENS = 512
"""Tokens one answer may take: a summary of a recording, or one combine step of its parts."""
TEMPERATURE = 0.0
"""Greedy: the same audio gives the same summary."""
TOP_P = 1.0
BATCH_SIZE = 4
"""Prompts generated together."""

SHARED = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": TEMPERATURE, "top_p": TOP_P, "batch_size": BATCH_SIZE}

DEFAULTS: dict[str, dict[str, Default]] = {
    "summarize": {},
    "eval": {},
    "pairs": {
        "max_new_tokens": Default(256, "a candidate answers one prompt, and k are sampled per prompt"),
        "temperature": Default(1.0, "the judge needs candidates that differ"),
    },
    "distill": {
        "max_new_tokens": Default(
            128, "every step samples fresh completions and the teacher scores each of their tokens"
        ),
        "temperature": Default(1.0, "on-policy: the student's own sampling distribution"),
    },
}
"""Per command, the flags whose default is not the shared one, with the reason."""


def default(command: str, name: str) -> float | int:
    """``command``'s default for the generation flag ``name`` (``max_new_tokens``, ...)."""
    own = DEFAULTS[command].get(name)
    return own.value if own is not None else SHARED[name]


def reason(command: str, name: str) -> str:
    """Why ``command``'s default for ``name`` differs from the shared one ('' when it does not)."""
    own = DEFAULTS[command].get(name)
    return own.why if own is not None else ""
