"""Slot pools of the mini corpus: people, places, products, and numbers spelled as espeak says them.

Numbers are written as words ("forty two thousand", "March fourteenth") in transcripts and
references alike. Pools marked ``by_value`` hold numbers that
``speechsum_cli.metrics.faithfulness`` parses back to their value, so a summary that writes them
in digits ("42,000") still counts as supported; years ("nineteen fifty three") are compared by
their words only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ONES = words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
)
TENS = words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")
ORDINAL_ONES = words(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth"
)
ORDINAL_TENS = words("_ _ twentieth thirtieth")
MONTHS = words(
    "January February March April May June July August September October November December"
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def spoken(n: int) -> str:
    """A whole number below one million in words: 42000 -> 'forty two thousand'."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"spoken() covers 0..999999, not {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (f" {ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{ONES[hundreds]} hundred" + (f" {spoken(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{spoken(thousands)} thousand" + (f" {spoken(rest)}" if rest else "")


def spoken_ordinal(n: int) -> str:
    """1..39 as an ordinal: 21 -> 'twenty first'."""
    if n < 20:
        return ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    return f"{TENS[tens]} {ORDINAL_ONES[ones]}" if ones else ORDINAL_TENS[tens]


def spoken_millions(n: float) -> str:
    """A multiple of 100,000 in millions: 4_200_000 -> 'four point two million'."""
    whole, tenth = divmod(round(n / 100_000), 10)
    return f"{spoken(whole)} point {ONES[tenth]} million" if tenth else f"{spoken(whole)} million"


def spoken_year(year: int) -> str:
    """A year with a two-digit tail of 10..99: 1953 -> 'nineteen fifty three'."""
    century, tail = divmod(year, 100)
    return f"{spoken(century)} {spoken(tail)}"


def spoken_date(month_day: tuple[int, int]) -> str:
    """(3, 14) -> 'March fourteenth'."""
    month, day = month_day
    return f"{MONTHS[month - 1]} {spoken_ordinal(day)}"


@dataclass(frozen=True)
class Person:
    """A first name and a surname; formats as the full name, ``{owner.first}`` gives the first."""

    first: str
    last: str

    def __str__(self) -> str:
        return f"{self.first} {self.last}"


class Pool(Protocol):
    def draw(self, rng: random.Random, k: int) -> list[Any]:
        """``k`` distinct raw values."""

    def say(self, value: Any) -> Any:
        """What a template prints for a raw value."""


@dataclass(frozen=True)
class Choice:
    """Distinct values drawn from a fixed list; ``speak`` turns a raw value into words."""

    values: Sequence[Any]
    speak: Callable[[Any], str] = str
    by_value: bool = False
    """Raw values are numbers that the faithfulness check reads back from the words."""

    def draw(self, rng: random.Random, k: int) -> list[Any]:
        return rng.sample(list(self.values), k)

    def say(self, value: Any) -> str:
        return self.speak(value)


@dataclass(frozen=True)
class People:
    """People with pairwise different first names and surnames (no two Priyas in one item)."""

    first: Sequence[str]
    last: Sequence[str]

    def draw(self, rng: random.Random, k: int) -> list[Person]:
        return [
            Person(f, s)
            for f, s in zip(rng.sample(list(self.first), k), rng.sample(list(self.last), k))
        ]

    def say(self, value: Person) -> Person:
        return value


FIRST_NAMES = words(
    "Priya Marcus Elena Tomas Aisha Kenji Sofia David Grace Lukas Hannah Omar Mei Ravi Clara "
    "Jonas Nadia Samuel Laura Diego Fatima Peter Yuki Anna Daniel Leila Victor Ingrid Kofi "
    "Rosa"
)
SURNAMES = words(
    "Shah Lee Costa Novak Bello Mori Ramos Cohen Okafor Weber Berg Haddad Lin Patel Dubois "
    "Eriksen Petrov Adeyemi Jensen Alvarez Khan Walsh Tanaka Kowalski Moreau Silva Nakamura "
    "Brennan Varga Lindqvist"
)

POOLS: dict[str, Pool] = {
    "person": People(FIRST_NAMES, SURNAMES),
    "weekday": Choice(WEEKDAYS),
    "date": Choice([(m, d) for m in range(1, 13) for d in range(1, 29)], spoken_date),
    "city": Choice(
        words(
            "Lisbon Denver Osaka Toronto Nairobi Austin Dublin Melbourne Warsaw Seattle Oslo Porto "
            "Calgary Lyon"
        )
    ),
    "product": Choice(words("Nimbus Orion Falcon Atlas Beacon Quill Harbor Juniper Lumen Cobalt")),
    "company": Choice(
        words(
            "Brightline Corvex Tessera Northwind Altura Quantix Meridian Halcyon Vantora Keystone"
        )
    ),
    "client": Choice(
        (
            "Halvorsen Foods",
            "Brightwater Bank",
            "Kestrel Logistics",
            "Pinecrest Health",
            "Marlow Insurance",
            "Arden Retail",
        )
    ),
    "team": Choice(
        ("platform", "mobile", "data", "design", "support", "security", "billing", "search")
    ),
    "system": Choice(("payments", "login", "search", "checkout", "notifications")),
    "cause": Choice(
        (
            "an expired certificate",
            "a bad configuration change",
            "a full disk",
            "a failed database upgrade",
            "a broken cache",
        )
    ),
    "feature": Choice(
        (
            "dark mode",
            "the export button",
            "the search filters",
            "offline sync",
            "the new settings page",
        )
    ),
    "service": Choice(("catering", "cleaning", "shuttle", "printing")),
    "channel": Choice(
        ("podcast ads", "billboards", "social video", "email newsletters", "radio spots")
    ),
    "species": Choice(("swallows", "tree frogs", "bats", "sparrows", "bumblebees")),
    "part": Choice(("screens", "batteries", "sensors", "circuit boards", "camera modules")),
    "small": Choice(range(2, 13), spoken, by_value=True),
    "medium": Choice(range(13, 100), spoken, by_value=True),
    "percent": Choice(range(3, 46), spoken, by_value=True),
    "minutes": Choice(range(15, 60, 5), spoken, by_value=True),
    "price": Choice(range(9, 100), spoken, by_value=True),
    "count": Choice(range(120, 990), spoken, by_value=True),
    "money": Choice(range(12_000, 96_000, 1000), spoken, by_value=True),
    "big_money": Choice(range(120_000, 960_000, 10_000), spoken, by_value=True),
    "salary": Choice(range(85_000, 195_000, 5000), spoken, by_value=True),
    "millions": Choice(range(1_100_000, 10_000_000, 100_000), spoken_millions, by_value=True),
    "century": Choice(range(3, 16), spoken_ordinal, by_value=True),
    "year": Choice([y for y in range(1850, 2000) if y % 100 >= 10], spoken_year),
}


def draw_slots(
    slots: dict[str, str], ascending: tuple[str, ...], rng: random.Random
) -> dict[str, Any]:
    """Fill every slot from its pool: distinct values per pool, ``ascending`` slots sorted."""
    raw: dict[str, Any] = {}
    for pool_name in dict.fromkeys(slots.values()):
        names = [slot for slot, pool in slots.items() if pool == pool_name]
        raw.update(zip(names, POOLS[pool_name].draw(rng, len(names))))
    raw.update(zip(ascending, sorted(raw[slot] for slot in ascending)))
    return {slot: POOLS[slots[slot]].say(value) for slot, value in raw.items()}
