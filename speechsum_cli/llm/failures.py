"""When failed LLM calls fail the run: one policy for every stage that calls an LLM.

synth's writer and the judges of pairs and eval tally their failed calls into :class:`Failures`
and hand them to :func:`check_failures`:

* every call failed, or more than ``--max-failed-share`` of them: :class:`NothingUsableError`
  (exit 3) with the first error and the counts by reason — the stage then writes no output that
  a later run or a recipe would take for finished;
* some failed: the output is written and the returned warning says how many, why, and that
  ``--retry-failed`` re-sends only those (answers already paid for come from the response cache).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from speechsum_cli.console import plural
from speechsum_cli.errors import NothingUsableError
from speechsum_cli.llm.config import endpoint_flag

UNANSWERED = "connection error"
"""The reason category of a call that never reached an answer: the endpoint could not be
connected to (nothing listening, a wrong URL, a dropped connection)."""


def unanswered(reason: str | None) -> bool:
    """Whether a call failed only because nothing answered (:data:`UNANSWERED`): no fault of its
    row's, so a resumable stage (synth) sends it again on the next run instead of keeping it as
    a failure for ``--retry-failed``."""
    return reason is not None and reason_category(reason) == UNANSWERED


def reason_category(reason: str) -> str:
    """'HTTP 500: boom (after 5 retries)' -> 'HTTP 500'; 'connection error: ...' -> 'connection error'."""
    return reason.split(":")[0].split(" (")[0].strip() or "unknown failure"


@dataclass(frozen=True)
class Failures:
    """What failed among ``attempted`` calls."""

    attempted: int
    by_reason: dict[str, int] = field(default_factory=dict)
    """Failure category -> calls (e.g. {'connection error': 4})."""
    first_error: str | None = None
    """The first failure's full reason (the key scrubbed)."""

    @classmethod
    def tally(cls, attempted: int, reasons: Iterable[str]) -> Failures:
        reasons = list(reasons)
        counts = Counter(reason_category(r) for r in reasons)
        return cls(attempted, dict(counts.most_common()), reasons[0] if reasons else None)

    @property
    def failed(self) -> int:
        return sum(self.by_reason.values())

    @property
    def share(self) -> float:
        return self.failed / self.attempted if self.attempted else 0.0

    def describe(self, unit: str = "request") -> str:
        """'4 of 4 requests failed (connection error: 4); first error: connection error: ...'"""
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.by_reason.items())
        return f"{self.failed} of {plural(self.attempted, unit)} failed ({reasons}); first error: {self.first_error}"

    def as_record(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "failed": self.failed,
            "by_reason": self.by_reason,
            "first_error": self.first_error,
        }


def check_failures(failures: Failures, *, max_share: float, unit: str, left: str, retry: str) -> str | None:
    """Raise when the calls produced nothing usable; else the warning for a partial failure (or None).

    ``left`` says what the stage leaves on disk when it fails; ``retry`` how to send the failed
    calls again (both end a sentence).
    """
    if failures.failed == 0:
        return None
    if failures.failed >= failures.attempted:
        raise NothingUsableError(f"every {unit} failed: {failures.describe(unit)}. {left} {retry}")
    if failures.share > max_share:
        raise NothingUsableError(
            f"too many {unit}s failed ({failures.share:.0%} > --max-failed-share {max_share:g}): "
            f"{failures.describe(unit)}. {left} {retry} Or raise --max-failed-share to accept a "
            "partial result."
        )
    return f"{failures.describe(unit)}. {retry}"


def retry_hint(config: Any) -> str:
    """How to send the failed calls of an :class:`LLMConfig`'s endpoint again (ends a sentence)."""
    endpoint = f"{endpoint_flag(config.role, 'base_url')} {config.base_url or 'api.openai.com'}"
    return (
        f"Fix the cause (is {endpoint} answering?) and run the same command with --retry-failed: the "
        "answers already received come from the response cache, so only the failed requests are sent."
    )


__all__ = ["UNANSWERED", "Failures", "check_failures", "reason_category", "retry_hint", "unanswered"]
