"""Token lengths of audio rows before any is encoded, to batch rows of similar length together.

For a compressed checkpoint (``align --compress``) the audio counts are upper bounds: a clip's
kept frames are known only once its audio is encoded. Only the grouping uses them."""

from __future__ import annotations

from typing import Any

import numpy as np


def audio_token_curve(lm: Any, window: float) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, audio tokens) at a few durations, to estimate any row's audio token count."""
    sr = lm.sampling_rate
    seconds = np.linspace(min(1.0, window), window, 5)
    tokens = [
        lm.family.audio_features(lm.processor, lm.config, [np.zeros(int(s * sr), np.float32)]).num_tokens[0]
        for s in seconds
    ]
    return seconds, np.asarray(tokens, dtype=np.float64)


def estimate_lengths(
    lm: Any,
    queries: list[str],
    summaries: list[str],
    seconds: list[float],
    window: float,
    *,
    chunked: bool = False,
) -> list[int]:
    """Approximate token length of each row: audio tokens + query + summary tokens.

    Audio beyond one window counts as truncated, or with ``chunked`` as whole windows + the rest.
    """
    grid, tokens = audio_token_curve(lm, window)
    tok = lm.tokenizer
    text = tok([f"{q}\n{s}" for q, s in zip(queries, summaries)], add_special_tokens=False)["input_ids"]
    seconds_arr = np.asarray(seconds, dtype=np.float64)
    full = np.floor(seconds_arr / window) if chunked else np.zeros_like(seconds_arr)
    rest = seconds_arr - full * window if chunked else np.minimum(seconds_arr, window)
    audio = full * tokens[-1] + np.where(rest > 0, np.interp(rest, grid, tokens), 0.0)
    return [round(a) + len(t) for a, t in zip(audio, text)]
