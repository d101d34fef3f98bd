"""Scenario templates of the mini corpus (data): what is said, and the facts the references state.

A scenario has several surface phrasings of one short recording and, separately, the facts every
phrasing states (``tldr``, ``points`` most important first, ``decisions``, ``actions``), all as
templates over the same slots (``{owner}``, ``{day}``, ``{owner.first}``; pools in pools.py).
The references are composed from those facts, so a reference only says what the transcript says.
``split`` keeps whole scenario kinds out of training: test items never share a template with train,
and the long corpus's validation items (make_long.py, ``split="valid"``) share one with neither.
``topic`` names what a scenario is about in a few words ("the {city} office move"), for the long
corpus's chapter titles and TL;DRs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")
"""``valid`` kinds are used only by the long corpus (make_long.py); make_corpus.py has no valid split."""


@dataclass(frozen=True)
class Scenario:
    """One kind of meeting or lecture snippet."""

    kind: str
    split: Split
    setting: str
    """What the recording is, for the queries: meeting, call, lecture."""
    slots: dict[str, str]
    """Slot name -> pool name (pools.POOLS)."""
    transcripts: tuple[str, ...]
    """Phrasings of the recording, 2-4 sentences each, every one stating every fact below."""
    tldr: str
    points: tuple[str, ...]
    """Main points as sentences, most important first."""
    decisions: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    ascending: tuple[str, ...] = field(default=())
    """Slots of one pool whose values are sorted in this order (old < new)."""
    topic: str = ""
    """What the snippet is about, as a short noun phrase over the same slots ("the travel budget")."""

    @property
    def styles(self) -> tuple[str, ...]:
        """The presets this scenario can be summarized in (no 'No decisions.' references)."""
        styles = ["bullets", "tldr", "paragraph", "key-points"]
        if self.decisions:
            styles.append("decisions")
        if self.actions:
            styles.append("action-items")
        return tuple(styles)


QUERIES: dict[str, tuple[str, ...]] = {
    "bullets": (
        "Summarize this {setting} as bullet points.",
        "Give me the main points of the {setting} as a bulleted list.",
        "What happened in this {setting}? Answer with short bullets.",
    ),
    "tldr": (
        "Give me a one-sentence TL;DR of this {setting}.",
        "Sum up the {setting} in a single sentence.",
        "In one sentence, what was this {setting} about?",
    ),
    "paragraph": (
        "Summarize the {setting} in one short paragraph.",
        "Write a brief prose summary of this {setting}.",
        "Describe what was said in the {setting} as one paragraph.",
    ),
    "key-points": (
        "What are the key points of this {setting}, most important first?",
        "List the key takeaways from the {setting} as bullets, most important first.",
        "Give me the most important points of the {setting} as bullets.",
    ),
    "decisions": (
        "What was decided in this {setting}? List the decisions as bullets.",
        "List the decisions that were made in the {setting}.",
        "Which decisions came out of the {setting}? One bullet each.",
    ),
    "action-items": (
        "What were the action items, and who owns them?",
        "List the follow-ups from this {setting} with owners and deadlines.",
        "Who has to do what after this {setting}? Use bullets.",
    ),
    "chapters": (
        "Split this {setting} into its topics, in order, with a title and one sentence each.",
        "Give me the chapters of the {setting}: one titled bullet per topic.",
        "Outline the {setting} topic by topic, as 'Title: summary' bullets.",
    ),
}
"""Free phrasings per style; each style's preset query (styles.json) is used as well."""

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        kind="budget-review",
        split="train",
        setting="meeting",
        topic="the travel budget",
        slots={
            "lead": "person",
            "owner": "person",
            "old": "money",
            "new": "money",
            "day": "weekday",
        },
        ascending=("new", "old"),
        transcripts=(
            (
                "Let's look at the travel budget. {lead} proposed cutting it from {old} dollars "
                "to {new} dollars next quarter, and nobody objected. {owner} will send the "
                "revised budget to finance by {day}."
            ),
            (
                "Quick budget item. Travel spending is too high, so {lead} proposed a limit of "
                "{new} dollars instead of {old} dollars. We agreed. {owner} updates the budget "
                "and sends it to finance by {day}."
            ),
            (
                "At the budget review {lead} proposed one change: the travel line drops from "
                "{old} dollars to {new} dollars, and everyone agreed. {owner}, please send the "
                "revised budget to finance by {day}."
            ),
        ),
        tldr=(
            "The travel budget drops from {old} dollars to {new} dollars, and {owner} sends the "
            "revised budget by {day}."
        ),
        points=(
            "The travel budget drops from {old} dollars to {new} dollars.",
            "{lead} proposed the cut and the team agreed.",
            "{owner} will send the revised budget to finance by {day}.",
        ),
        decisions=("Cut the travel budget from {old} dollars to {new} dollars.",),
        actions=("{owner} sends the revised travel budget to finance by {day}.",),
    ),
    Scenario(
        kind="hiring-decision",
        split="train",
        setting="meeting",
        topic="the {team} team hire",
        slots={
            "manager": "person",
            "hire": "person",
            "other": "person",
            "team": "team",
            "salary": "salary",
            "date": "date",
        },
        transcripts=(
            (
                "We interviewed two finalists for the senior role on the {team} team. The panel "
                "chose {hire} over {other}. {manager} will send the offer, at {salary} dollars a "
                "year, by {date}."
            ),
            (
                "{manager} summed up the hiring debate. {hire} was stronger than {other} on "
                "system design, so {hire} gets the offer for the {team} team. The salary is "
                "{salary} dollars, and {manager} sends it by {date}."
            ),
            (
                "Hiring update for the {team} team. Both {other} and {hire} did well, but the "
                "group picked {hire}. {manager} confirmed a salary of {salary} dollars and will "
                "send the offer by {date}."
            ),
        ),
        tldr="{manager} will offer {hire} the {team} team role at {salary} dollars by {date}.",
        points=(
            "The {team} team will hire {hire} instead of {other}.",
            "The salary offered is {salary} dollars.",
            "{manager} will send the offer by {date}.",
        ),
        decisions=("Hire {hire} for the {team} team rather than {other}, at {salary} dollars.",),
        actions=("{manager} sends the offer to {hire} by {date}.",),
    ),
    Scenario(
        kind="launch-date-move",
        split="train",
        setting="meeting",
        topic="the {product} launch date",
        slots={
            "pm": "person",
            "owner": "person",
            "product": "product",
            "old": "date",
            "new": "date",
            "bugs": "small",
            "day": "weekday",
        },
        ascending=("old", "new"),
        transcripts=(
            (
                "Bad news on {product}. We still have {bugs} open bugs, so {pm} moved the launch "
                "from {old} to {new}. {owner} will tell the sales team about the new date by "
                "{day}."
            ),
            (
                "{pm} here. The {product} launch will not happen on {old}; the new date is {new}, "
                "because {bugs} bugs are still open. {owner}, please tell the sales team by "
                "{day}."
            ),
            (
                "Launch planning for {product}. With {bugs} bugs still open, {pm} decided to move "
                "the release from {old} to {new}. {owner} will tell the sales team by {day}."
            ),
        ),
        tldr=("{pm} moved the {product} launch from {old} to {new} because {bugs} bugs are still open."),
        points=(
            "The {product} launch moves from {old} to {new}.",
            "There are still {bugs} open bugs.",
            "{owner} will tell the sales team by {day}.",
        ),
        decisions=("Move the {product} launch from {old} to {new}.",),
        actions=("{owner} tells the sales team about the new {product} date by {day}.",),
    ),
    Scenario(
        kind="vendor-choice",
        split="train",
        setting="meeting",
        topic="the {service} vendor",
        slots={
            "lead": "person",
            "owner": "person",
            "winner": "company",
            "loser": "company",
            "price": "money",
            "loser_price": "money",
            "service": "service",
            "day": "weekday",
        },
        ascending=("price", "loser_price"),
        transcripts=(
            (
                "We compared two {service} vendors for the office. {winner} quoted {price} "
                "dollars and {loser} quoted {loser_price} dollars. {lead} chose {winner}, and "
                "{owner} will sign the contract by {day}."
            ),
            (
                "{lead} closed the {service} question. {loser} wanted {loser_price} dollars and "
                "{winner} only {price} dollars, so we go with {winner}. {owner} signs the "
                "contract by {day}."
            ),
            (
                "For {service}, {winner} came in at {price} dollars against {loser_price} dollars "
                "from {loser}. {lead} chose {winner}. {owner} will get the contract signed by "
                "{day}."
            ),
        ),
        tldr=("{winner} wins the {service} contract at {price} dollars, and {owner} signs it by {day}."),
        points=(
            "{lead} chose {winner} for {service} at {price} dollars.",
            "{loser} quoted {loser_price} dollars.",
            "{owner} will sign the contract by {day}.",
        ),
        decisions=("Pick {winner} over {loser} for the {service} contract at {price} dollars.",),
        actions=("{owner} signs the {service} contract with {winner} by {day}.",),
    ),
    Scenario(
        kind="incident-postmortem",
        split="train",
        setting="meeting",
        topic="the {system} outage",
        slots={
            "lead": "person",
            "owner": "person",
            "system": "system",
            "minutes": "minutes",
            "customers": "count",
            "cause": "cause",
            "day": "weekday",
        },
        transcripts=(
            (
                "Postmortem for yesterday's {system} outage. It lasted {minutes} minutes and hit "
                "{customers} customers. The cause was {cause}. {owner} will add an alert by "
                "{day}, and {lead} will review it."
            ),
            (
                "{lead} walked us through the {system} incident. The cause was {cause}, the "
                "outage lasted {minutes} minutes, and {customers} customers saw errors. {owner} "
                "adds an alert by {day}."
            ),
            (
                "The {system} service was down for {minutes} minutes because of {cause}. In total "
                "{customers} customers were affected. {lead} ran the review, and {owner} will add "
                "an alert by {day}."
            ),
        ),
        tldr=("The {system} outage lasted {minutes} minutes, hit {customers} customers, and was caused by {cause}."),
        points=(
            "The {system} outage lasted {minutes} minutes and affected {customers} customers.",
            "The cause was {cause}.",
            "{owner} will add an alert by {day}.",
        ),
        actions=("{owner} adds an alert for the {system} service by {day}.",),
    ),
    Scenario(
        kind="office-move",
        split="train",
        setting="meeting",
        topic="the {city} office move",
        slots={
            "lead": "person",
            "owner": "person",
            "city": "city",
            "date": "date",
            "desks": "count",
            "day": "weekday",
        },
        transcripts=(
            (
                "The {city} office moves on {date}. {lead} confirmed the new space has {desks} "
                "desks, which covers everyone. {owner} will book the movers and send the floor "
                "plan by {day}."
            ),
            (
                "Office update from {lead}. We leave the old {city} building on {date}, and the "
                "new space has {desks} desks. {owner} is booking the movers and will send the "
                "floor plan by {day}."
            ),
            (
                "{lead} signed the lease, so the {city} office moves on {date} to a space with "
                "{desks} desks. Before that, {owner} will book the movers and send everyone the "
                "floor plan by {day}."
            ),
        ),
        tldr="The {city} office moves on {date} to a new space with {desks} desks.",
        points=(
            "The {city} office moves on {date}.",
            "The new space has {desks} desks.",
            "{owner} will book the movers and send the floor plan by {day}.",
        ),
        decisions=("Move the {city} office on {date} to the new space with {desks} desks.",),
        actions=("{owner} books the movers and sends the floor plan by {day}.",),
    ),
    Scenario(
        kind="sprint-planning",
        split="train",
        setting="meeting",
        topic="the sprint plan",
        slots={
            "lead": "person",
            "a": "person",
            "b": "person",
            "points": "medium",
            "feature": "feature",
            "day": "weekday",
        },
        transcripts=(
            (
                "Sprint planning. We committed to {points} story points this sprint. {a} takes "
                "{feature}, {b} handles the billing bugs, and {lead} wants a demo on {day}."
            ),
            (
                "{lead} set the sprint goal at {points} story points. {a} owns {feature}. {b} "
                "will fix the billing bugs. We demo everything on {day}."
            ),
            (
                "For this sprint the team signed up for {points} story points. {a} is building "
                "{feature}, and {b} is on the billing bugs. {lead} scheduled the demo for {day}."
            ),
        ),
        tldr=("The sprint covers {points} story points, with {feature} from {a} and a demo on {day}."),
        points=(
            "The team committed to {points} story points.",
            "{a} owns {feature} and {b} fixes the billing bugs.",
            "The demo is on {day}.",
        ),
        decisions=("Commit to {points} story points this sprint, with a demo on {day}.",),
        actions=(
            "{a} builds {feature} before the {day} demo.",
            "{b} fixes the billing bugs before the {day} demo.",
        ),
    ),
    Scenario(
        kind="pricing-change",
        split="train",
        setting="meeting",
        topic="the {product} price",
        slots={
            "lead": "person",
            "owner": "person",
            "product": "product",
            "old_price": "price",
            "new_price": "price",
            "date": "date",
        },
        ascending=("old_price", "new_price"),
        transcripts=(
            (
                "{lead} wants to raise the price of {product} from {old_price} dollars to "
                "{new_price} dollars a month. Everyone agreed. The change starts on {date}, and "
                "{owner} will email customers this week."
            ),
            (
                "Pricing decision. {product} goes from {old_price} dollars to {new_price} dollars "
                "a month on {date}. {lead} made the call after the survey, and {owner} will email "
                "customers this week."
            ),
            (
                "After looking at costs, we are moving {product} to {new_price} dollars a month, "
                "up from {old_price} dollars. {lead} approved it, it starts on {date}, and "
                "{owner} emails customers this week."
            ),
        ),
        tldr=("{lead} raised {product} from {old_price} dollars to {new_price} dollars a month, starting {date}."),
        points=(
            "{product} goes from {old_price} dollars to {new_price} dollars a month.",
            "The new price starts on {date}.",
            "{owner} will email customers this week.",
        ),
        decisions=("Raise {product} from {old_price} dollars to {new_price} dollars a month on {date}.",),
        actions=("{owner} emails customers about the new {product} price this week.",),
    ),
    Scenario(
        kind="customer-escalation",
        split="train",
        setting="call",
        topic="the {client} escalation",
        slots={
            "client": "client",
            "rep": "person",
            "engineer": "person",
            "tickets": "small",
            "credit": "percent",
            "day": "weekday",
        },
        transcripts=(
            (
                "{client} escalated again about slow reports. They have opened {tickets} tickets "
                "this month. {rep} offered a {credit} percent credit, and {engineer} will visit "
                "them on {day} to fix the setup."
            ),
            (
                "Call about {client}. After {tickets} tickets on slow reports, {rep} agreed to a "
                "{credit} percent credit. {engineer} goes on site on {day} to fix their setup."
            ),
            (
                "{rep} spoke with {client} this morning. Reports are still slow and they filed "
                "{tickets} tickets. We will give them a {credit} percent credit, and {engineer} "
                "meets them on {day} to fix the setup."
            ),
        ),
        tldr=("{client} gets a {credit} percent credit after {tickets} tickets, and {engineer} visits on {day}."),
        points=(
            "{client} filed {tickets} tickets about slow reports.",
            "They get a {credit} percent credit.",
            "{engineer} will meet them on {day} to fix the setup.",
        ),
        decisions=("Give {client} a {credit} percent credit for the slow reports.",),
        actions=("{engineer} meets {client} on {day} to fix the setup.",),
    ),
    Scenario(
        kind="sales-results",
        split="train",
        setting="meeting",
        topic="the sales results",
        slots={
            "lead": "person",
            "top": "person",
            "region": "city",
            "revenue": "millions",
            "growth": "percent",
            "deals": "small",
        },
        transcripts=(
            (
                "{lead} shared the quarter's results. Revenue reached {revenue} dollars, up "
                "{growth} percent. The {region} region did best, and {top} alone closed {deals} "
                "deals."
            ),
            (
                "Sales review. We booked {revenue} dollars this quarter, up {growth} percent. "
                "{region} was the strongest region, and {top} led with {deals} deals, {lead} "
                "said."
            ),
            (
                "A good quarter, according to {lead}: {revenue} dollars in revenue, up {growth} "
                "percent. {region} was the strongest region, mostly thanks to {top}, who closed "
                "{deals} deals."
            ),
        ),
        tldr="Revenue hit {revenue} dollars, up {growth} percent, led by {top} in {region}.",
        points=(
            "Revenue was {revenue} dollars, up {growth} percent.",
            "{region} was the strongest region.",
            "{top} closed {deals} deals.",
        ),
    ),
    Scenario(
        kind="conference-travel",
        split="train",
        setting="meeting",
        topic="the {city} conference",
        slots={
            "lead": "person",
            "a": "person",
            "b": "person",
            "city": "city",
            "date": "date",
            "budget": "money",
            "day": "weekday",
        },
        transcripts=(
            (
                "Three of us go to the conference in {city} on {date}: {lead}, {a} and {b}. The "
                "travel budget is {budget} dollars, and {a} books the flights by {day}."
            ),
            (
                "{lead} approved the trip to the {city} conference on {date}. {a} and {b} come "
                "along. The travel budget is {budget} dollars, and {a} will book the flights by "
                "{day}."
            ),
            (
                "Conference plans. {lead}, {a} and {b} will fly to {city} for the conference on "
                "{date}. We have {budget} dollars for travel, and {a} books the flights by {day}."
            ),
        ),
        tldr=("{lead}, {a} and {b} attend the {city} conference on {date} on a {budget} dollar budget."),
        points=(
            "{lead}, {a} and {b} go to the {city} conference on {date}.",
            "The travel budget is {budget} dollars.",
            "{a} will book the flights by {day}.",
        ),
        decisions=("Send {lead}, {a} and {b} to the {city} conference.",),
        actions=("{a} books the conference flights to {city} by {day}.",),
    ),
    Scenario(
        kind="security-audit",
        split="train",
        setting="meeting",
        topic="the security audit",
        slots={
            "auditor": "person",
            "lead": "person",
            "owner": "person",
            "findings": "small",
            "critical": "small",
            "day": "weekday",
        },
        ascending=("critical", "findings"),
        transcripts=(
            (
                "The security audit is back. {auditor} found {findings} issues, and {critical} of "
                "them are critical. {lead} decided the release waits until those are fixed, and "
                "{owner} patches them by {day}."
            ),
            (
                "{auditor} presented the audit: {findings} issues in total, including {critical} "
                "critical ones. {lead} ruled that the release waits until they are fixed. {owner} "
                "owns the patches, due {day}."
            ),
            (
                "Audit results from {auditor}: {critical} critical issues among {findings} in "
                "total. Nothing ships until they are fixed, {lead} said. {owner} will have the "
                "patches ready by {day}."
            ),
        ),
        tldr=(
            "{auditor} found {findings} issues, {critical} of them critical, and the release "
            "waits for {owner}'s patches."
        ),
        points=(
            "{auditor} found {findings} issues, {critical} of them critical.",
            "The release waits until the critical issues are fixed.",
            "{owner} will patch them by {day}.",
        ),
        decisions=("Hold the release until the {critical} critical issues are fixed.",),
        actions=("{owner} patches the {critical} critical security issues by {day}.",),
    ),
    Scenario(
        kind="marketing-campaign",
        split="train",
        setting="meeting",
        topic="the {product} campaign",
        slots={
            "lead": "person",
            "owner": "person",
            "product": "product",
            "budget": "money",
            "channel": "channel",
            "date": "date",
            "day": "weekday",
        },
        transcripts=(
            (
                "{lead} approved the spring campaign for {product}. We will spend {budget} "
                "dollars, mostly on {channel}. It starts on {date}, and {owner} will have the "
                "first drafts ready by {day}."
            ),
            (
                "Campaign meeting. For {product} the plan is {channel}, with a budget of {budget} "
                "dollars, starting on {date}. {lead} signed off, and {owner} delivers the first "
                "drafts by {day}."
            ),
            (
                "The {product} campaign is a go, says {lead}. The budget is {budget} dollars, "
                "focused on {channel}, and it starts on {date}. {owner}, first drafts by {day}, "
                "please."
            ),
        ),
        tldr="The {product} campaign gets {budget} dollars for {channel}, starting on {date}.",
        points=(
            "{lead} approved a {budget} dollar campaign for {product}.",
            "It focuses on {channel} and starts on {date}.",
            "{owner} will deliver the first drafts by {day}.",
        ),
        decisions=("Run the {product} campaign on {channel} with {budget} dollars.",),
        actions=("{owner} delivers the first drafts of the {product} campaign by {day}.",),
    ),
    Scenario(
        kind="lecture-astronomy",
        split="train",
        setting="lecture",
        topic="the planet survey near {city}",
        slots={
            "prof": "person",
            "researcher": "person",
            "city": "city",
            "year": "year",
            "stars": "count",
            "planets": "small",
        },
        transcripts=(
            (
                "Today we look at a survey led by {researcher} at an observatory near {city}. "
                "Starting in {year}, the team watched {stars} stars and found {planets} planets. "
                "{prof} pointed out that most were larger than Jupiter."
            ),
            (
                "{prof} began the lecture with the survey near {city}. In {year}, {researcher} "
                "and colleagues started tracking {stars} stars. They found {planets} planets, "
                "most of them larger than Jupiter."
            ),
            (
                "Our example is the planet search near {city} that {researcher} began in {year}. "
                "The team watched {stars} stars and found {planets} planets, most of them larger "
                "than Jupiter, as {prof} explained."
            ),
        ),
        tldr="{researcher}'s survey near {city} watched {stars} stars and found {planets} planets.",
        points=(
            "{researcher} led a survey of {stars} stars near {city}, starting in {year}.",
            "The team found {planets} planets.",
            "Most of them were larger than Jupiter.",
        ),
    ),
    Scenario(
        kind="lecture-archaeology",
        split="train",
        setting="lecture",
        topic="the dig near {city}",
        slots={
            "prof": "person",
            "researcher": "person",
            "city": "city",
            "year": "year",
            "coins": "count",
            "depth": "small",
            "century": "century",
        },
        transcripts=(
            (
                "In {year}, {researcher} dug near {city} and found {coins} silver coins about "
                "{depth} meters down. {prof} explained that the coins date from the {century} "
                "century and point to an old trade route."
            ),
            (
                "{prof} described the excavation near {city}. Working in {year}, {researcher}'s "
                "team found {coins} silver coins at {depth} meters. They date from the {century} "
                "century, which points to an old trade route."
            ),
            (
                "Our case study is the dig near {city}, run by {researcher} in {year}. At {depth} "
                "meters the team found {coins} silver coins from the {century} century. According "
                "to {prof}, they point to an old trade route."
            ),
        ),
        tldr=("{researcher}'s dig near {city} found {coins} silver coins from the {century} century."),
        points=(
            "{researcher} found {coins} silver coins near {city} in {year}.",
            "The coins date from the {century} century.",
            "They point to an old trade route.",
        ),
    ),
    Scenario(
        kind="lecture-biology",
        split="train",
        setting="lecture",
        topic="the {species} near {city}",
        slots={
            "prof": "person",
            "researcher": "person",
            "city": "city",
            "species": "species",
            "animals": "count",
            "years": "small",
            "drop": "percent",
        },
        transcripts=(
            (
                "{prof} discussed a field study by {researcher}, who tracked {animals} {species} "
                "near {city}. Over {years} years the population fell by {drop} percent. Warmer "
                "springs were the main cause."
            ),
            (
                "Today's example: {researcher} followed {animals} {species} around {city} for "
                "{years} years. The population fell by {drop} percent, and {prof} stressed that "
                "warmer springs were the main cause."
            ),
            (
                "{researcher} tracked {animals} {species} near {city} for {years} years. The "
                "population fell by {drop} percent. As {prof} put it, warmer springs were the "
                "main cause."
            ),
        ),
        tldr=("{researcher} found that {species} near {city} fell by {drop} percent over {years} years."),
        points=(
            "{researcher} tracked {animals} {species} near {city} for {years} years.",
            "The population fell by {drop} percent.",
            "Warmer springs were the main cause.",
        ),
    ),
    Scenario(
        kind="onboarding-plan",
        split="train",
        setting="meeting",
        topic="onboarding for {hire}",
        slots={
            "manager": "person",
            "hire": "person",
            "buddy": "person",
            "team": "team",
            "date": "date",
            "weeks": "small",
        },
        transcripts=(
            (
                "{hire} starts on the {team} team on {date}. {buddy} will be the onboarding buddy "
                "for the first {weeks} weeks, and {manager} will set up the laptop and accounts "
                "before {hire} starts."
            ),
            (
                "Onboarding plan from {manager}. {hire} joins the {team} team on {date}, and "
                "{buddy} is the buddy for {weeks} weeks. {manager} sets up the laptop and "
                "accounts before {hire} starts."
            ),
            (
                "We have a start date. {hire} joins the {team} team on {date}. {manager} will set "
                "up the laptop and accounts before {hire} starts, and {buddy} is the buddy for "
                "the first {weeks} weeks."
            ),
        ),
        tldr="{hire} joins the {team} team on {date}, with {buddy} as buddy for {weeks} weeks.",
        points=(
            "{hire} joins the {team} team on {date}.",
            "{buddy} is the onboarding buddy for {weeks} weeks.",
            "{manager} sets up the laptop and accounts before the start.",
        ),
        decisions=("Make {buddy} the onboarding buddy for {hire} for {weeks} weeks.",),
        actions=(
            "{manager} sets up the laptop and accounts before {hire} starts.",
            "{buddy} is the onboarding buddy for {hire} for {weeks} weeks.",
        ),
    ),
    Scenario(
        kind="server-migration",
        split="train",
        setting="meeting",
        topic="the server migration",
        slots={
            "lead": "person",
            "owner": "person",
            "servers": "count",
            "old_city": "city",
            "new_city": "city",
            "date": "date",
            "hours": "small",
            "day": "weekday",
        },
        transcripts=(
            (
                "We are moving {servers} servers from the {old_city} data center to {new_city}. "
                "{lead} set the move for {date}, with at most {hours} hours of downtime. {owner} "
                "will send the customer notice by {day}."
            ),
            (
                "Migration update. All {servers} servers leave {old_city} for {new_city} on "
                "{date}. {lead} expects at most {hours} hours of downtime. {owner} writes the "
                "customer notice, due {day}."
            ),
            (
                "{lead} confirmed that {servers} servers move from {old_city} to {new_city} on "
                "{date}, with at most {hours} hours of downtime. {owner} owns the customer notice "
                "and will send it by {day}."
            ),
        ),
        tldr=(
            "The {servers} servers move from {old_city} to {new_city} on {date}, with at most "
            "{hours} hours of downtime."
        ),
        points=(
            "The {servers} servers move from {old_city} to {new_city} on {date}.",
            "Downtime is at most {hours} hours.",
            "{owner} will send the customer notice by {day}.",
        ),
        decisions=("Move the {servers} servers to {new_city} on {date}.",),
        actions=("{owner} sends the customer notice about the move by {day}.",),
    ),
    Scenario(
        kind="partnership-deal",
        split="train",
        setting="meeting",
        topic="the {partner} deal",
        slots={
            "lead": "person",
            "owner": "person",
            "partner": "company",
            "share": "percent",
            "years": "small",
            "day": "weekday",
        },
        transcripts=(
            (
                "{lead} reached a deal with {partner} to resell our app. They keep {share} "
                "percent of the revenue, and the contract runs for {years} years. {owner} will "
                "send the final contract to legal by {day}."
            ),
            (
                "Partnership news. {partner} will resell our app for {years} years, keeping "
                "{share} percent of the revenue. {lead} negotiated it, and {owner} sends the "
                "contract to legal by {day}."
            ),
            (
                "After talks led by {lead}, {partner} agreed to resell our app for {years} years "
                "and keep {share} percent of the revenue. Next step: {owner} sends the contract "
                "to legal by {day}."
            ),
        ),
        tldr=("{partner} will resell the app for {years} years and keep {share} percent of the revenue."),
        points=(
            "{partner} will resell the app for {years} years.",
            "They keep {share} percent of the revenue.",
            "{owner} will send the contract to legal by {day}.",
        ),
        decisions=("Sign the reseller deal with {partner} for {years} years at {share} percent.",),
        actions=("{owner} sends the final {partner} contract to legal by {day}.",),
    ),
    # --- held out: the long corpus's validation split only (make_long.py) ---
    Scenario(
        kind="warehouse-opening",
        split="valid",
        setting="meeting",
        topic="the {city} warehouse",
        slots={
            "lead": "person",
            "owner": "person",
            "city": "city",
            "date": "date",
            "staff": "count",
            "trucks": "medium",
            "day": "weekday",
        },
        transcripts=(
            (
                "The new warehouse outside {city} opens on {date}. {lead} said it starts with "
                "{staff} staff and {trucks} trucks. {owner} is hiring the shift leads and has to "
                "finish that by {day}."
            ),
            (
                "{lead} gave the warehouse news: {city} goes live on {date} with {trucks} trucks "
                "and {staff} staff on the floor. The shift leads are still open, so {owner} fills "
                "them by {day}."
            ),
            (
                "Good progress in {city}. Our warehouse there opens on {date}, {lead} confirmed, "
                "with {staff} staff and a fleet of {trucks} trucks. Before {day}, {owner} hires "
                "the shift leads."
            ),
        ),
        tldr="The {city} warehouse opens on {date} with {staff} staff and {trucks} trucks.",
        points=(
            "The {city} warehouse opens on {date}.",
            "It starts with {staff} staff and {trucks} trucks.",
            "{owner} will hire the shift leads by {day}.",
        ),
        decisions=("Open the {city} warehouse on {date} with {trucks} trucks.",),
        actions=("{owner} hires the warehouse shift leads by {day}.",),
    ),
    Scenario(
        kind="churn-review",
        split="valid",
        setting="meeting",
        topic="{product} churn",
        slots={
            "analyst": "person",
            "owner": "person",
            "product": "product",
            "churn": "percent",
            "accounts": "count",
            "day": "weekday",
        },
        transcripts=(
            (
                "{analyst} looked at churn for {product}. It climbed to {churn} percent, and we "
                "lost {accounts} accounts, mostly small shops. {owner} will phone the biggest of "
                "them before {day} and ask why they left."
            ),
            (
                "Churn is up. {product} lost {accounts} accounts, which puts churn at {churn} "
                "percent, according to {analyst}. {owner} takes the follow-up calls and reports "
                "back on {day}."
            ),
            (
                "According to {analyst}, {churn} percent of {product} customers left, "
                "{accounts} accounts in all, mostly small shops. We want to know why, so {owner} "
                "calls the biggest ones before {day}."
            ),
        ),
        tldr="{product} churn rose to {churn} percent after losing {accounts} accounts.",
        points=(
            "{product} churn reached {churn} percent.",
            "{product} lost {accounts} accounts.",
            "{owner} will call the biggest lost accounts by {day}.",
        ),
        actions=("{owner} calls the biggest lost {product} accounts by {day}.",),
    ),
    Scenario(
        kind="phishing-call",
        split="valid",
        setting="call",
        topic="the {client} phishing attack",
        slots={
            "client": "client",
            "rep": "person",
            "expert": "person",
            "mailboxes": "medium",
            "hours": "small",
            "day": "weekday",
        },
        transcripts=(
            (
                "{client} called in about a phishing attack. {mailboxes} mailboxes were taken "
                "over for about {hours} hours. {rep} reset every password, and {expert} runs a "
                "training session for their staff on {day}."
            ),
            (
                "{rep} took the call from {client}. A phishing mail got into {mailboxes} "
                "mailboxes, which were open to the attacker for {hours} hours. Passwords are "
                "reset, and {expert} trains their staff on {day}."
            ),
            (
                "Short call with {client}: attackers held {mailboxes} mailboxes for {hours} "
                "hours after a phishing mail. {rep} has reset all the passwords. On {day}, "
                "{expert} gives their staff a training session."
            ),
        ),
        tldr="A phishing attack exposed {mailboxes} {client} mailboxes for {hours} hours.",
        points=(
            "Phishing exposed {mailboxes} {client} mailboxes for {hours} hours.",
            "{rep} reset every password.",
            "{expert} trains the {client} staff on {day}.",
        ),
        decisions=("Reset every {client} password after the phishing attack.",),
        actions=("{expert} runs a phishing training for {client} on {day}.",),
    ),
    Scenario(
        kind="internship-program",
        split="valid",
        setting="meeting",
        topic="the internship program",
        slots={
            "manager": "person",
            "mentor": "person",
            "interns": "small",
            "city": "city",
            "date": "date",
            "stipend": "money",
        },
        transcripts=(
            (
                "The summer internship program is approved. {manager} will take {interns} "
                "interns in {city}, each paid {stipend} dollars, starting {date}. {mentor} "
                "volunteered to mentor the group."
            ),
            (
                "{manager} confirmed the internship plan: {interns} interns join us in {city} on "
                "{date} for {stipend} dollars each. {mentor} will be their mentor for the whole "
                "summer."
            ),
            (
                "Internships. We get {interns} interns in {city} from {date}, and the stipend is "
                "{stipend} dollars each. {manager} approved it, with {mentor} as their mentor."
            ),
        ),
        tldr="{manager} approved {interns} paid interns in {city} from {date}.",
        points=(
            "The {interns} interns start in {city} on {date}.",
            "Each intern is paid {stipend} dollars.",
            "{mentor} will mentor the group.",
        ),
        decisions=("Take {interns} interns in {city} at {stipend} dollars each.",),
        actions=("{mentor} mentors the {interns} interns from {date}.",),
    ),
    Scenario(
        kind="lecture-volcano",
        split="valid",
        setting="lecture",
        topic="the volcano near {city}",
        slots={
            "prof": "person",
            "researcher": "person",
            "city": "city",
            "year": "year",
            "quakes": "medium",
            "rise": "small",
        },
        transcripts=(
            (
                "{prof} turned to the volcano near {city}, which {researcher} has monitored "
                "since {year}. The ground there rose {rise} centimeters, and the sensors record "
                "about {quakes} small earthquakes a week. Magma is probably collecting below."
            ),
            (
                "Next, the volcano near {city}. {researcher} has watched it since {year}: the "
                "ground rose {rise} centimeters and there are about {quakes} small earthquakes "
                "a week. {prof} thinks magma is collecting below."
            ),
            (
                "Since {year}, {researcher} has recorded the volcano near {city}. It swelled by "
                "{rise} centimeters, with about {quakes} small earthquakes every week, and as "
                "{prof} explained, magma is probably collecting below."
            ),
        ),
        tldr="The ground at the volcano near {city} rose {rise} centimeters since {year}.",
        points=(
            "The volcano near {city} rose {rise} centimeters since {year}.",
            "About {quakes} small earthquakes happen each week.",
            "Magma is probably collecting below.",
        ),
    ),
    # --- held out: test only ---
    Scenario(
        kind="product-recall",
        split="test",
        setting="meeting",
        topic="the {product} charger recall",
        slots={
            "lead": "person",
            "owner": "person",
            "product": "product",
            "units": "count",
            "date": "date",
            "day": "weekday",
        },
        transcripts=(
            (
                "We have to recall {units} {product} chargers because they can overheat. {lead} "
                "decided on full refunds until {date}. {owner} will post the recall notice online "
                "by {day}."
            ),
            (
                "{lead} made the call: the {product} charger is recalled. That covers {units} "
                "units that can overheat. Customers get full refunds until {date}, and {owner} "
                "posts the notice online by {day}."
            ),
            (
                "Overheating reports forced a recall of {units} {product} chargers. Refunds will "
                "be full until {date}, {lead} said. {owner} has until {day} to put the recall "
                "notice online."
            ),
        ),
        tldr="A recall of {units} {product} chargers comes with full refunds until {date}.",
        points=(
            "The recall covers {units} {product} chargers that can overheat.",
            "Customers get full refunds until {date}.",
            "{owner} will post the notice online by {day}.",
        ),
        decisions=("Recall {units} {product} chargers with full refunds until {date}.",),
        actions=("{owner} posts the {product} recall notice online by {day}.",),
    ),
    Scenario(
        kind="grant-application",
        split="test",
        setting="meeting",
        topic="the grant application",
        slots={
            "pi": "person",
            "writer": "person",
            "amount": "big_money",
            "years": "small",
            "students": "small",
            "date": "date",
        },
        transcripts=(
            (
                "We are applying for a {amount} dollar grant over {years} years. {pi} will lead "
                "the proposal, and the grant would fund {students} graduate students. {writer} "
                "drafts the budget section by {date}."
            ),
            (
                "{pi} wants to apply for a {amount} dollar research grant. It runs for {years} "
                "years and funds {students} graduate students. {writer} takes the budget section, "
                "due {date}."
            ),
            (
                "Grant plan. The grant is {amount} dollars over {years} years, enough for "
                "{students} graduate students. {pi} leads the proposal, and {writer} drafts the "
                "budget section by {date}."
            ),
        ),
        tldr="{pi} leads a proposal for a {amount} dollar grant over {years} years.",
        points=(
            "The team applies for a {amount} dollar grant over {years} years.",
            "It would fund {students} graduate students.",
            "{writer} drafts the budget section by {date}.",
        ),
        decisions=("Apply for the {amount} dollar grant with {pi} as the lead.",),
        actions=("{writer} drafts the budget section of the proposal by {date}.",),
    ),
    Scenario(
        kind="lecture-climate",
        split="test",
        setting="lecture",
        topic="the glacier near {city}",
        slots={
            "prof": "person",
            "researcher": "person",
            "city": "city",
            "year": "year",
            "meters": "count",
            "weeks": "small",
        },
        transcripts=(
            (
                "{prof} showed data from {researcher}, who has measured a glacier near {city} "
                "since {year}. It has retreated {meters} meters, and the melt season is now "
                "{weeks} weeks longer. Dust on the ice speeds up melting."
            ),
            (
                "Our glacier example comes from {researcher}. Since {year} the glacier near "
                "{city} has retreated {meters} meters. {prof} added that the melt season is "
                "{weeks} weeks longer and that dust on the ice speeds up melting."
            ),
            (
                "{researcher} has measured the glacier near {city} since {year}. It has retreated "
                "{meters} meters and the melt season is {weeks} weeks longer. As {prof} noted, "
                "dust on the ice speeds up melting."
            ),
        ),
        tldr=("The glacier near {city} that {researcher} measures has retreated {meters} meters since {year}."),
        points=(
            "The glacier near {city} has retreated {meters} meters since {year}.",
            "The melt season is {weeks} weeks longer.",
            "Dust on the ice speeds up melting.",
        ),
    ),
    Scenario(
        kind="offsite-planning",
        split="test",
        setting="meeting",
        topic="the {city} offsite",
        slots={
            "lead": "person",
            "owner": "person",
            "city": "city",
            "date": "date",
            "people": "count",
            "budget": "money",
            "day": "weekday",
        },
        transcripts=(
            (
                "The company offsite will be in {city} on {date}. We expect {people} people, and "
                "{lead} set the budget at {budget} dollars. {owner} will book the venue by {day}."
            ),
            (
                "{lead} picked {city} for the offsite on {date}. About {people} people are "
                "coming. The budget is {budget} dollars, and {owner} has to book the venue by "
                "{day}."
            ),
            (
                "Offsite plans are set: {city} on {date}, with {people} people and {budget} "
                "dollars in total. {lead} approved it, and {owner} will book the venue by {day}."
            ),
        ),
        tldr="The {city} offsite on {date} has {people} people and a {budget} dollar budget.",
        points=(
            "The offsite is in {city} on {date}.",
            "About {people} people will come, with a budget of {budget} dollars.",
            "{owner} will book the venue by {day}.",
        ),
        decisions=("Hold the offsite in {city} on {date} with a {budget} dollar budget.",),
        actions=("{owner} books the offsite venue in {city} by {day}.",),
    ),
    Scenario(
        kind="supply-shortage",
        split="test",
        setting="meeting",
        topic="the {part} delay",
        slots={
            "lead": "person",
            "owner": "person",
            "supplier": "company",
            "backup": "company",
            "part": "part",
            "weeks": "small",
            "orders": "count",
            "day": "weekday",
        },
        transcripts=(
            (
                "{supplier} warned that the {part} will arrive {weeks} weeks late. That puts "
                "{orders} orders at risk. {lead} decided to also buy from {backup}, and {owner} "
                "will place that order by {day}."
            ),
            (
                "Supply problem. The {part} from {supplier} are {weeks} weeks late, which puts "
                "{orders} orders at risk. {lead} wants {backup} as a backup, so {owner} orders "
                "from {backup} by {day}."
            ),
            (
                "{lead} explained the delay: {supplier} needs {weeks} more weeks for the {part}, "
                "and {orders} orders are at risk. We will also buy from {backup}. {owner} places "
                "that order by {day}."
            ),
        ),
        tldr=("{supplier} is {weeks} weeks late with the {part}, so {owner} orders from {backup} by {day}."),
        points=(
            "The {part} from {supplier} are {weeks} weeks late.",
            "The delay puts {orders} orders at risk.",
            "{owner} will order from {backup} by {day}.",
        ),
        decisions=("Also buy the {part} from {backup}, because {supplier} is {weeks} weeks late.",),
        actions=("{owner} places the {part} order with {backup} by {day}.",),
    ),
)
