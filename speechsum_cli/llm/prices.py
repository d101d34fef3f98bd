"""Price table (USD per 1M tokens) and the token/cost ledger with its budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from speechsum_cli.errors import InputError

CHARS_PER_TOKEN = 4.0
"""Token estimate for dry runs and budget reservations (no tokenizer for remote models)."""


@lru_cache(maxsize=1)
def default_prices() -> dict[str, tuple[float, float]]:
    raw = json.loads(resources.files(__package__).joinpath("prices.json").read_text())
    return {k: (float(v[0]), float(v[1])) for k, v in raw.items() if not k.startswith("_")}


def load_price_file(path: str | Path) -> dict[str, tuple[float, float]]:
    """``{"model": [usd_in_per_1M, usd_out_per_1M], ...}`` from a JSON file (the --prices flag)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        return {k: (float(v[0]), float(v[1])) for k, v in raw.items() if not k.startswith("_")}
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(
            f"--prices '{path}' is not a JSON object of model -> [USD per 1M input tokens, "
            f"USD per 1M output tokens] ({type(exc).__name__}: {exc})."
        ) from None


def price_for(model: str, overrides: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens; dated snapshots fall back to their base name; None = unknown."""
    table = {**default_prices(), **(overrides or {})}
    if model in table:
        return table[model]
    for name in sorted(table, key=len, reverse=True):  # gpt-4.1-2025-04-14 -> gpt-4.1
        if model.startswith(name + "-") and model[len(name) + 1 :][:1].isdigit():
            return table[name]
    return None


def estimate_tokens(text: str) -> int:
    return max(1, int(len(text) / CHARS_PER_TOKEN + 0.5))


class BudgetExceeded(Exception):
    """Raised instead of sending a request that could take spending past ``max_cost``."""


@dataclass
class Ledger:
    """Requests, tokens and USD spent by this process (plus ``spent_before`` from earlier runs)."""

    price: tuple[float, float] | None
    max_cost: float | None = None
    spent_before: float = 0.0
    requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    reserved_usd: float = 0.0

    def cost_of(self, input_tokens: int, output_tokens: int) -> float:
        if self.price is None:
            return 0.0
        return (input_tokens * self.price[0] + output_tokens * self.price[1]) / 1e6

    def estimate(self, input_tokens: int, output_tokens: int) -> float:
        """Expected cost of one request: the token estimate, or the mean so far if higher."""
        mean = self.cost_usd / self.requests if self.requests else 0.0
        return max(self.cost_of(input_tokens, output_tokens), mean)

    def reserve(self, estimate_usd: float) -> None:
        """Hold ``estimate_usd`` for a request about to be sent, or raise BudgetExceeded."""
        if self.max_cost is not None:
            committed = self.spent_before + self.cost_usd + self.reserved_usd
            if committed + estimate_usd > self.max_cost:
                raise BudgetExceeded(
                    f"budget of ${self.max_cost:.4f} reached (spent ${self.spent_before + self.cost_usd:.4f})"
                )
        self.reserved_usd += estimate_usd

    def settle(self, estimate_usd: float, input_tokens: int, output_tokens: int) -> float:
        """Release a reservation and book the real usage; returns the request's cost."""
        self.reserved_usd = max(0.0, self.reserved_usd - estimate_usd)
        cost = self.cost_of(input_tokens, output_tokens)
        self.requests += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost
        return cost

    def release(self, estimate_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - estimate_usd)
