"""How a model reads a recording longer than its audio window: consecutive windows in one prompt.

A family's encoder takes one window at a time, but one prompt may carry several consecutive
windows of a recording: their embeddings fill one placeholder run (``Prompt.audio`` as a list),
which is how the training stages read long rows (``--on-long-audio chunk``). Inference reads a
recording the same way as far as the language model's context allows: :func:`windows_per_prompt`
is how many windows fit beside the prompt's text and the generation budget, and
:func:`window_groups` cuts a recording's windows into prompts of at most that many. Only a
recording longer than that is answered part by part (summarize then combines the parts).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from speechsum_cli.data.audio import AudioChunk
from speechsum_cli.families.base import Prompt

CONTEXT_MARGIN_TOKENS = 32
"""Head-room kept free in the context beside the audio, the text and the generation budget."""


def window_tokens(lm: Any) -> int:
    """Placeholder tokens one full window takes in a prompt of ``lm``'s family: the count before
    any compression, so an upper bound for a compressed checkpoint (which reads fewer)."""
    silence = np.zeros(round(lm.window_seconds * lm.sampling_rate), dtype=np.float32)
    batch = lm.family.encode(lm.processor, lm.config, [Prompt(query="", audio=silence)])
    return max(1, int(batch.audio_tokens[0]))


def text_tokens(lm: Any, query: str) -> int:
    """Tokens of the prompt's text alone (template, system turn, query)."""
    return len(lm.family.encode(lm.processor, lm.config, [Prompt(query=query)]).inputs["input_ids"][0])


def windows_per_prompt(
    lm: Any, queries: Sequence[str], max_new_tokens: int, limit: int | None = None, *, answer_tokens_per_window: int = 0
) -> int:
    """Most consecutive windows one prompt of any of ``queries`` may carry: what fits ``lm``'s
    context beside the longest query's text and ``max_new_tokens`` (at least 1), at most ``limit``.

    ``answer_tokens_per_window``: generation budget each window adds (a transcription's grows with
    its audio; a summary's does not)."""
    longest = max((text_tokens(lm, q) for q in set(queries)), default=0)
    room = lm.context_length - max_new_tokens - CONTEXT_MARGIN_TOKENS - longest
    fits = max(1, room // (window_tokens(lm) + answer_tokens_per_window))
    return fits if limit is None else max(1, min(limit, fits))


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive items in lists of ``size`` (the last may hold fewer), one list in memory at a time."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def window_groups(chunks: Iterable[AudioChunk], per_prompt: int) -> Iterator[list[AudioChunk]]:
    """A recording's consecutive windows in prompts of ``per_prompt`` (the last may hold fewer)."""
    return batched(chunks, per_prompt)


def group_audio(group: Sequence[AudioChunk]) -> np.ndarray | list[np.ndarray]:
    """A prompt's audio for ``group``: the clip itself when it is one window, else the list of
    windows (exactly what the training collators give a long row)."""
    return group[0].samples if len(group) == 1 else [chunk.samples for chunk in group]
