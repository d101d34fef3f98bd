"""Slot pools of the mini corpus: people, places, products, and numbers spelled as espeak says them.

Numbers are written as words ("forty two thousand", "March fourteenth") in transcripts and
references alike. Pools marked ``by_value`` hold numbers that
``speechsum_cli.metrics.faithfulness`` parses back to their value, so a summary that writes them
in digits ("42,000") still counts as supported; years ("nineteen fifty three") are compared by
their words only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
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
MONTHS = words("January February March April May June July August September October November December")
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

    def without(self, taken: Iterable[Any]) -> Pool:
        """The pool less raw values already used (for People: their first names and surnames)."""

    def size(self) -> int:
        """How many distinct values one draw can return."""


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

    def size(self) -> int:
        return len(self.values)

    def without(self, taken: Iterable[Any]) -> Choice:
        used = set(taken)
        if not used:
            return self
        return Choice([v for v in self.values if v not in used], self.speak, self.by_value)


@dataclass(frozen=True)
class People:
    """People with pairwise different first names and surnames (no two Priyas in one item)."""

    first: Sequence[str]
    last: Sequence[str]

    def draw(self, rng: random.Random, k: int) -> list[Person]:
        return [Person(f, s) for f, s in zip(rng.sample(list(self.first), k), rng.sample(list(self.last), k))]

    def say(self, value: Person) -> Person:
        return value

    def size(self) -> int:
        return min(len(self.first), len(self.last))

    def without(self, taken: Iterable[Person]) -> People:
        used = list(taken)
        if not used:
            return self
        firsts, lasts = {p.first for p in used}, {p.last for p in used}
        return People([f for f in self.first if f not in firsts], [s for s in self.last if s not in lasts])


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
        words("Lisbon Denver Osaka Toronto Nairobi Austin Dublin Melbourne Warsaw Seattle Oslo Porto Calgary Lyon")
    ),
    "product": Choice(words("Nimbus Orion Falcon Atlas Beacon Quill Harbor Juniper Lumen Cobalt")),
    "company": Choice(words("Brightline Corvex Tessera Northwind Altura Quantix Meridian Halcyon Vantora Keystone")),
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
    "team": Choice(("platform", "mobile", "data", "design", "support", "security", "billing", "search")),
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
    "channel": Choice(("podcast ads", "billboards", "social video", "email newsletters", "radio spots")),
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


def draw_raw(
    slots: dict[str, str],
    ascending: tuple[str, ...],
    rng: random.Random,
    pools: Mapping[str, Pool] = POOLS,
    taken: dict[str, list[Any]] | None = None,
) -> dict[str, Any]:
    """Raw values for every slot: distinct per pool, ``ascending`` slots sorted. With ``taken``
    (pool name -> values used so far, updated here), values already used are not drawn again
    unless the pool has too few left (five weekdays for six segments)."""
    raw: dict[str, Any] = {}
    for pool_name in dict.fromkeys(slots.values()):
        names = [slot for slot, pool in slots.items() if pool == pool_name]
        pool = pools[pool_name]
        if taken is not None and pool.without(taken.get(pool_name, ())).size() >= len(names):
            pool = pool.without(taken.get(pool_name, ()))
        values = pool.draw(rng, len(names))
        if taken is not None:
            taken.setdefault(pool_name, []).extend(values)
        raw.update(zip(names, values))
    raw.update(zip(ascending, sorted(raw[slot] for slot in ascending)))
    return raw


def draw_slots(
    slots: dict[str, str],
    ascending: tuple[str, ...],
    rng: random.Random,
    pools: Mapping[str, Pool] = POOLS,
) -> dict[str, Any]:
    """Fill every slot from its pool: distinct values per pool, ``ascending`` slots sorted."""
    raw = draw_raw(slots, ascending, rng, pools)
    return {slot: pools[slots[slot]].say(value) for slot, value in raw.items()}


# --- the large pools of the long corpus (make_long.py), split into a train and a held-out part ---

LARGE_FIRST_NAMES = (
    words(
        "Oliver Amelia Harry Isla George Emily Noah Olivia Ethan Chloe Liam Ava Lucas Mia Henry Evelyn "
        "Owen Harper Caleb Abigail Nathan Zoe Isaac Lily Aaron Natalie Adam Megan Ryan Rachel Kevin "
        "Nicole Brian Heather Simon Fiona Colin Eileen Declan Siobhan Ciaran Niamh Rhys Carys Gareth "
        "Bethan Callum Morag Angus Ailsa Alejandro Lucia Javier Carmen Mateo Valentina Camila Pablo "
        "Ximena Andres Paola Rodrigo Marisol Emilio Beatriz Ignacio Lorena Esteban Catalina Joao "
        "Mariana Thiago Larissa Rafael Gustavo Fernanda Leandro Renata Giulia Matteo Francesca Lorenzo "
        "Chiara Giovanni Alessia Marco Federica Stefano Camille Julien Margaux Antoine Elodie Mathieu "
        "Amelie Benoit Sylvie Florian Matthias Katrin Stefanie Tobias Anja Johannes Sabine Dieter "
        "Ulrike Felix Greta Daan Sanne Joris Femke Pieter Lotte Bram Anouk Astrid Magnus Sigrid Erik "
        "Freya Henrik Solveig Nils Linnea Anders Eira Bjorn Aino Mikko Saara Katarzyna Piotr Agnieszka "
        "Tomasz Zofia Dmitri Svetlana Alexei Natasha Bogdan Milena Dragan Jelena Vesna Marek Petra "
        "Ondrej Radek Irina Yaroslav Oksana Taras Zoltan Reka Bence Ioana Andrei Mihai Bianca Nikos "
        "Eleni Yannis Katerina Dimitris Stavros Despina Emre Elif Burak Zeynep Mehmet Ayse Kerem Defne "
        "Youssef Layla Karim Amira Tariq Noor Hassan Rania Khalid Salma Ibrahim Yasmin Mustafa Dalia "
        "Ziad Mariam Dariush Shirin Kaveh Parisa Reza Farhad Roya Eitan Tamar Yael Shira Gideon Arjun "
        "Ananya Rohan Kavya Vikram Deepa Sanjay Lakshmi Rahul Sunita Aditya Meera Nikhil Divya Anil "
        "Shreya Ishaan Nisha Farhan Tahmina Imran Ayesha Bilal Sana Tharindu Nimali Prakash Haruto "
        "Sakura Hiroshi Aiko Takeshi Daisuke Naomi Minjun Jiwoo Seojun Yuna Jisoo Taeyang Minh Linh "
        "Tuan Thao Somchai Niran Rizal Dewi Budi Maricel Arnel Chinedu Ngozi Emeka Adaeze Tunde Folake "
        "Kwame Kojo Efua Abena Amani Wanjiru Otieno Achieng Baraka Zawadi Tendai Rudo Thabo Lerato "
        "Sipho Naledi Abebe Tigist Dawit Selam Hamza Fadumo Moussa Aminata Ousmane Fatou Ibrahima "
        "Mariama Leilani Mele Sione Aroha Tane Beatrix Cornelia Wilhelm Rupert Imogen Hamish Eamon "
        "Brigid Bronwyn Dylan Lowri Teodor Vilja Oskar Elsa Leif Ragnar Ingeborg Kasimir Halina "
        "Wojciech Jarek Lidia Nikola Ivana Goran Mirela Luka Tamara Ivo Adriana Cosmin Sorin Florin "
        "Teodora Anastasia Yuri Galina Lev Vera Boris Maksim Polina Artem Darina Armen Anahit Levon "
        "Nino Giorgi Tamuna Aigerim Nurlan Dilnoza Rustam Bakhyt Sardor Madina Jamal Aaliyah Imani "
        "Darnell Keisha Tyrone Latoya Marlon Shanice Dwayne Camilo Yolanda Gerardo Araceli Ruben Itzel "
        "Jorge Guadalupe Rogelio Soledad Vicente Macarena Fabian Ines Nuno Teresa Filipa Rui Goncalo "
        "Catarina Ekaterina"
    )
    + FIRST_NAMES
)
"""First names of many origins, spelled so that espeak-ng says them (ASCII, no diacritics)."""
LARGE_SURNAMES = (
    words(
        "Abbott Ackerman Adeleke Agarwal Ahmadi Akhtar Albrecht Alcantara Almeida Amato Andersson "
        "Antonelli Aquino Arslan Asante Ashworth Bakshi Balogun Banerjee Barbosa Barros Bartosz Bauer "
        "Becker Benedetti Bergstrom Bianchi Bjorklund Blackwood Bondarenko Borges Boateng Brandt "
        "Bukowski Caldwell Calloway Cardenas Carvalho Castellano Castillo Chakraborty Chaudhry "
        "Chowdhury Ciobanu Constantin Contreras Cordero Cruz Dalton Darwish Delgado Demir Desai "
        "Dimitrov Dlamini Donnelly Dossou Dragomir Duarte Dunbar Ebrahim Egorov Eklund Elbaz Erdogan "
        "Esposito Fairbanks Farouk Fedorova Ferrante Ferreira Figueroa Fitzgerald Fleischer Fontaine "
        "Forsberg Fuentes Gallagher Galvez Garcia Gashi Gatti Gerber Ghosh Giordano Gomez Gonzaga Greco "
        "Grigoryan Gunawardena Gustafsson Halvorsen Hamid Hansen Hartmann Hasegawa Hashemi Hernandez "
        "Herrera Hoffmann Horvath Hosseini Huber Hussain Ibekwe Ignatiev Iqbal Ishikawa Ivanova Iyer "
        "Jablonski Jaramillo Johansson Joshi Jovanovic Kaminski Kapoor Karimi Kato Kaur Keller Kimura "
        "Kiplagat Kobayashi Kovacs Kozlov Krause Kumar Kuznetsov Lachance Lambert Larsen Laurent "
        "Lehmann Leone Lewandowski Lindgren Lombardi Lopez Lucero Lundberg Macharia Mahlangu Maier "
        "Majewski Maldonado Mancini Marchetti Markovic Martins Matsumoto Mazur Medina Mehta Mendoza "
        "Meyer Mishra Molina Moretti Morozov Mukherjee Murphy Mutua Mwangi Nagy Nair Nascimento "
        "Navarro Ndlovu Nielsen Nguyen Nikolaidis Nilsson Nowak Nwosu Obi Ochieng Odhiambo Ogunleye "
        "Oliveira Olsen Onyango Ortega Ozturk Pacheco Palmieri Papadopoulos Pereira Perez Pham Pinto "
        "Popescu Portillo Quintero Rahman Rao Rashid Reddy Reyes Ricci Richter Rinaldi Rojas Romano "
        "Rossi Rostami Russo Sadeghi Saito Salazar Sandoval Santoro Sato Schmidt Schneider Schulz "
        "Serrano Sharma Shevchenko Shimizu Sidorov Sinha Sokolov Soto Steiner Suarez Sundberg Svensson "
        "Szabo Takahashi Tamura Tavares Tkachenko Torres Tran Trivedi Umeh Urquhart Valdez Vasquez "
        "Vasiliev Vega Verma Vieira Vogel Volkov Wagner Wainwright Watanabe Wisniewski Wojcik Yamamoto "
        "Yilmaz Yoshida Yusuf Zamora Zanetti Zhang Zhou Zielinski Zimmermann Achebe Okonkwo Mensah "
        "Owusu Appiah Kamau Njoroge Wekesa Chukwu Eze Adebayo Oyelaran Bangura Diallo Traore Keita "
        "Toure Sissoko Kone Camara Haile Tesfaye Girma Alemu Warsame Farah Abdi Hakimi Benali Mansour "
        "Khoury Haddadi Nasser Saleh Aziz Qureshi Siddiqui Malhotra Pillai Menon Kulkarni Bhatt "
        "Ranasinghe Perera Fernando Silvestri Cavalcanti Moura Teixeira Campos Rezende Okada Fujita "
        "Nakano Ogawa Choi Yoon Kwon Huang Zhao Liu Tanimoto Hoang Dang Santos Bautista Villanueva "
        "Mercado Ramirez Aguilar Espinoza Ibarra Montoya"
    )
    + SURNAMES
)
LARGE_CITIES = (
    *words(
        "Amsterdam Rotterdam Antwerp Brussels Ghent Hamburg Munich Cologne Leipzig Dresden "
        "Stuttgart Frankfurt Vienna Salzburg Zurich Geneva Basel Lausanne Prague Brno Krakow Gdansk "
        "Wroclaw Budapest Bratislava Ljubljana Zagreb Belgrade Sarajevo Bucharest Athens "
        "Thessaloniki Istanbul Ankara Izmir Madrid Barcelona Valencia Seville Bilbao Malaga Granada "
        "Marseille Toulouse Bordeaux Strasbourg Lille Nantes Montpellier Turin Milan Naples Genoa "
        "Palermo Verona Bergen Trondheim Stockholm Gothenburg Uppsala Malmo Copenhagen Aarhus "
        "Helsinki Tampere Reykjavik Tallinn Riga Vilnius Kyiv Lviv Odesa Tbilisi Yerevan Baku Almaty "
        "Tashkent Edinburgh Glasgow Manchester Liverpool Leeds Bristol Cardiff Belfast Galway "
        "Limerick Cairo Alexandria Casablanca Marrakesh Tunis Algiers Dakar Accra Kumasi Lagos Abuja "
        "Ibadan Kano Kampala Kigali Mombasa Kisumu Arusha Lusaka Harare Maputo Windhoek Gaborone "
        "Johannesburg Durban Pretoria Khartoum Dubai Doha Muscat Riyadh Jeddah Amman Beirut Tehran "
        "Isfahan Shiraz Karachi Lahore Islamabad Mumbai Delhi Bangalore Chennai Kolkata Hyderabad "
        "Pune Jaipur Dhaka Chittagong Colombo Kathmandu Bangkok Hanoi Manila Cebu Jakarta Surabaya "
        "Bandung Singapore Penang Shanghai Beijing Shenzhen Guangzhou Chengdu Wuhan Hangzhou Taipei "
        "Kaohsiung Seoul Busan Incheon Tokyo Kyoto Nagoya Sapporo Fukuoka Yokohama Sendai Kobe "
        "Hiroshima Auckland Wellington Christchurch Brisbane Perth Hobart Canberra Vancouver "
        "Montreal Ottawa Winnipeg Halifax Quebec Edmonton Boston Chicago Houston Atlanta Miami "
        "Portland Detroit Pittsburgh Baltimore Cleveland Minneapolis Nashville Memphis Sacramento "
        "Honolulu Anchorage Albuquerque Tucson Omaha Milwaukee Raleigh Guadalajara Monterrey Bogota "
        "Medellin Quito Cusco Valparaiso Cordoba Rosario Montevideo Asuncion Caracas Havana Recife "
        "Fortaleza Curitiba Manaus Belem Brasilia"
    ),
    "Cape Town",
    "Addis Ababa",
    "Kuala Lumpur",
    "Buenos Aires",
    "Los Angeles",
    "San Jose",
    "Tel Aviv",
    "Hong Kong",
    "Abu Dhabi",
    "Porto Alegre",
    "Mexico City",
    "New Orleans",
) + tuple(POOLS["city"].values)  # type: ignore[attr-defined]
PRODUCT_STEMS = words(
    "Zephyr Vertex Helix Prism Ember Nova Aspen Cedar Willow Sierra Tundra Solace Onyx Garnet Topaz "
    "Sable Raven Heron Osprey Condor Lynx Bison Comet Quasar Pulsar Nebula Titan Argon Neon Xenon "
    "Radium Boron Canyon Mesa Fjord Lagoon Coral Pebble Marble Granite Basalt Flint Quartz Opal "
    "Indigo Scarlet Crimson Saffron Fennel Clover Thistle Bramble Maple Birch Alder Spruce Larch "
    "Poplar Sequoia Cypress Magnolia Orchid Lotus Dahlia Tulip Lark Finch Wren Plover Egret Ibis "
    "Puffin Gannet Petrel Marlin Tarpon Narwhal Walrus Otter Badger Marten Wombat Koala Lemur Gecko "
    "Iguana Mamba Cobra Viper Sparrowhawk Kingfisher Tempest Monsoon Solstice Equinox Zenith Apex"
)
PRODUCT_MODELS = ("", "Pro", "Max", "Mini", "Go", "Air", "Plus", "Lite")
COMPANY_PREFIXES = words(
    "North South East West Bright Blue Silver Golden Iron Stone Clear High Deep Red Green Swift "
    "Star Sun Moon Oak Pine Cedar Ash Elm River Lake Bay Sea Cloud Storm Frost Snow Fire Light "
    "True Bold Grand Prime Peak Crest"
)
COMPANY_ROOTS = words(
    "wind line gate field stone ridge brook ford haven mark well wood bridge point view port "
    "vale crest side worth bury ton wick mont dale forge works light spring water path way "
    "shore hill tree leaf sky star moor cliff"
)
COMPANY_SUFFIXES = ("", "Labs", "Systems", "Group", "Partners", "Works", "Analytics", "Networks")
CLIENT_SECTORS = (
    "Foods",
    "Bank",
    "Logistics",
    "Health",
    "Insurance",
    "Retail",
    "Energy",
    "Media",
    "Motors",
    "Pharma",
    "Airlines",
    "Hotels",
    "Telecom",
    "Farms",
    "Studios",
)
HELD_OUT_SHARE = 0.25
"""Share of each large pool's names (or name parts) held out of training."""
PARTS = ("train", "heldout")


def held_out(values: Sequence[str], salt: str, keep: frozenset[str]) -> frozenset[str]:
    """A fixed, seeded HELD_OUT_SHARE of ``values`` (sorted, then shuffled with ``salt``), never
    one of ``keep`` (words the mini corpus already speaks, so they count as heard)."""
    candidates = sorted(v for v in set(values) if not set(v.split()) & keep)
    random.Random(f"held-out:{salt}").shuffle(candidates)
    return frozenset(candidates[: round(len(set(values)) * HELD_OUT_SHARE)])


def mini_words() -> frozenset[str]:
    """Every word of the mini pools' names, places, products, companies and clients."""
    people = POOLS["person"]
    assert isinstance(people, People)
    named = [*people.first, *people.last]
    for name in ("city", "product", "company", "client"):
        named += [str(v) for v in POOLS[name].values]  # type: ignore[attr-defined]
    return frozenset(w for v in named for w in v.split())


def part_of(values: Sequence[str], salt: str, part: str, keep: frozenset[str]) -> list[str]:
    """The ``part`` ('train' or 'heldout') of ``values``, in a stable order."""
    out = held_out(values, salt, keep)
    return sorted(v for v in set(values) if (v in out) == (part == "heldout"))


def compose(stems: Sequence[str], tails: Sequence[str], glue: str = " ") -> list[str]:
    """Every stem with every tail ('' = the stem alone): 'Helix' + 'Pro' -> 'Helix Pro'."""
    return [f"{stem}{glue}{tail}" if tail else stem for stem in stems for tail in tails]


@cache
def large_pools(part: str) -> dict[str, Pool]:
    """The mini pools with people, cities, products, companies and clients from ``part`` of the
    large lists. The parts are disjoint in every name word (a held-out person's first name and
    surname are both unheard in training); words of the mini pools are always in 'train'."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    keep = mini_words()
    stems = [
        p + r
        for p in part_of(COMPANY_PREFIXES, "company-prefix", part, keep)
        for r in part_of(COMPANY_ROOTS, "company-root", part, keep)
        if p.lower() != r and not (part == "heldout" and p + r in keep)  # Northwind is heard
    ]
    minis = {name: list(POOLS[name].values) for name in ("city", "product", "company", "client")}  # type: ignore[attr-defined]
    extra = (lambda name: minis[name]) if part == "train" else (lambda name: [])
    return {
        **POOLS,
        "person": People(
            part_of(LARGE_FIRST_NAMES, "first", part, keep),
            part_of(LARGE_SURNAMES, "last", part, keep),
        ),
        "city": Choice(sorted({*part_of(LARGE_CITIES, "city", part, keep), *extra("city")})),
        "product": Choice(
            sorted({*compose(part_of(PRODUCT_STEMS, "product", part, keep), PRODUCT_MODELS), *extra("product")})
        ),
        "company": Choice(sorted({*compose(stems, COMPANY_SUFFIXES), *extra("company")})),
        "client": Choice(sorted({*compose(stems, CLIENT_SECTORS), *extra("client")})),
    }


def pool_sizes(part: str) -> dict[str, int]:
    """How many values (for people: first names and surnames) each large pool's ``part`` has."""
    pools = large_pools(part)
    people = pools["person"]
    assert isinstance(people, People)
    sizes = {"first_names": len(people.first), "surnames": len(people.last)}
    for name in ("city", "product", "company", "client"):
        sizes[name] = len(pools[name].values)  # type: ignore[attr-defined]
    return sizes
