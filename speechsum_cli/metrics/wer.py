"""WER and CER for transcription prompts, after one documented text normalization.

Normalization (applied to references and hypotheses alike, before scoring):
lower-case; expand common English contractions (``don't`` -> ``do not``); replace hyphens and
slashes with spaces; remove all other punctuation; collapse runs of whitespace; strip.
Numbers are left as written (``14`` and ``fourteen`` differ): ASR prompts in our test sets spell
numbers the way the transcript does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _normalizer() -> Any:
    import jiwer

    return jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.ExpandCommonEnglishContractions(),
            jiwer.SubstituteRegexes({r"[-/]": " "}),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
        ]
    )


def normalize(text: str) -> str:
    """The normalization WER/CER use (see the module docstring)."""
    return _normalizer()(text)


@dataclass(frozen=True)
class ErrorRates:
    wer: float
    cer: float
    reference_words: int


def error_rates(references: list[str], hypotheses: list[str]) -> ErrorRates:
    """Corpus-level WER and CER (errors summed over all rows / reference length summed)."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps) if r]
    if not kept:
        raise ValueError("every reference is empty after normalization; WER is undefined")
    refs, hyps = [r for r, _ in kept], [h for _, h in kept]
    return ErrorRates(
        wer=jiwer.wer(refs, hyps),
        cer=jiwer.cer(refs, hyps),
        reference_words=sum(len(r.split()) for r in refs),
    )
