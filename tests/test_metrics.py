"""Offline metrics against hand-computed values."""

from __future__ import annotations

import pytest

from speechsum_cli.metrics.faithfulness import number_mentions, unsupported_content
from speechsum_cli.metrics.repetition import repeated_ngram_rate, repeated_sentences
from speechsum_cli.metrics.rouge import rouge
from speechsum_cli.metrics.style import Limits, check_preset, check_style, count_sentences
from speechsum_cli.metrics.wer import error_rates, normalize

TRANSCRIPT = (
    "Good morning everyone. Alice Chen opened the budget review at nine. The budget is four "
    "point two million dollars. The team agreed to move the launch to March fourteenth and to "
    "hire three engineers. Bob will send the vendor contract to Northwind by Friday."
)


# --- ROUGE ----------------------------------------------------------------------------------


def test_rouge_with_stemming_matches_hand_count():
    # reference stems: the cat are run | prediction stems: a cat run
    # unigram overlap {cat, run} = 2 -> P = 2/3, R = 2/4, F1 = 4/7; no shared bigram.
    scores = rouge("a cat runs", "the cats are running")
    assert scores["rouge1"] == pytest.approx(4 / 7)
    assert scores["rouge2"] == 0.0
    assert scores["rougeL"] == pytest.approx(4 / 7)


def test_rouge_identical_and_disjoint():
    assert rouge("Alice hires three engineers", "Alice hires three engineers")["rouge2"] == 1.0
    assert rouge("budget", "launch")["rouge1"] == 0.0


# --- WER ------------------------------------------------------------------------------------


def test_normalization_is_the_documented_one():
    assert normalize("Don't move the LAUNCH -- it's March 14th!") == "do not move the launch it is march 14th"


def test_wer_and_cer_by_hand():
    # ref: "alice opened the review" (4 words); hyp: "alice opens the review today"
    # 1 substitution + 1 insertion = 2 errors / 4 words.
    rates = error_rates(["Alice opened the review."], ["alice opens the review today"])
    assert rates.wer == pytest.approx(2 / 4)
    assert rates.reference_words == 4
    # chars of "alice opened the review" = 23; "opened"->"opens": 'e'->'s', delete 'd' (2);
    # insert " today" (6) -> 8 / 23
    assert rates.cer == pytest.approx(8 / 23)


def test_wer_is_corpus_level_not_mean_of_rows():
    rates = error_rates(["a b c d", "e"], ["a b c d", "x"])
    assert rates.wer == pytest.approx(1 / 5)


# --- unsupported content -------------------------------------------------------------------


def test_numbers_match_by_value_whatever_the_spelling():
    assert [v for _, v in number_mentions("March fourteenth, 4.2 million, twenty one")] == [
        {14.0},
        {4.2, 4_200_000.0},
        {21.0},
    ]
    faithful = (
        "- Alice Chen opened the review at 9.\n- Launch moves to March 14th; hire 3 engineers.\n- Budget: $4.2 million."
    )
    assert unsupported_content(faithful, TRANSCRIPT).count == 0


def test_invented_numbers_and_names_are_reported():
    found = unsupported_content("Alice and Carol agreed to hire 5 engineers by April 2; Bob calls Contoso.", TRANSCRIPT)
    assert found.numbers == ["5", "2"]
    assert found.names == ["Carol", "April", "Contoso"]


def test_sentence_initial_words_and_possessives_are_not_names():
    found = unsupported_content("Engineers will be hired. Bob's contract goes to Northwind.", TRANSCRIPT)
    assert found.count == 0


# --- repetition ------------------------------------------------------------------------------


def test_repetition_rates_by_hand():
    assert repeated_ngram_rate("a b c d e f", n=4) == 0.0
    # 4-grams of "a b c d a b c d": abcd bcda cdab dabc abcd -> 5 grams, 4 distinct
    assert repeated_ngram_rate("a b c d a b c d", n=4) == pytest.approx(1 / 5)
    assert repeated_sentences("Bob sends it. Alice agrees. Bob sends it.\nBob sends it.") == 2


# --- style ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "style", "ok"),
    [
        ("- Alice opened.\n- Bob closed.", "bullets", True),
        ("- Alice opened.\nBob closed.", "bullets", False),
        ("1. Alice opened.\n2) Bob closed.", "action-items", True),
        ("Alice opened the review and Bob closed it.", "paragraph", True),
        ("- Alice opened the review.", "paragraph", False),
        ("First part.\n\nSecond part.", "paragraph", False),
        ("Alice opened the budget review at 9.30 a.m. sharp.", "tldr", True),  # inner dots end nothing
        ("Alice opened the budget review.", "tldr", True),
        ("Alice opened. Bob closed.", "tldr", False),
        ("- Opening: Alice welcomed everyone.\n- Budget: 4.2 million.", "chapters", True),
        ("- Opening\n- Budget: 4.2 million.", "chapters", False),
        ("\n".join(f"- point {i}" for i in range(8)), "key-points", False),  # preset limit: 7
    ],
)
def test_style_presets(text, style, ok):
    assert check_preset(text, style).ok is ok


def test_limits_and_free_text_queries():
    assert check_style("one two three four", "paragraph", Limits(max_words=3)).violations == ["4 words, limit 3"]
    assert check_preset("anything", "custom") is None
    assert check_style("", "bullets").violations == ["empty summary"]
    assert count_sentences("Alice spoke. Bob answered! Done") == 3


def test_an_answer_copying_the_combine_scaffold_is_counted():
    """Issue 31: the trained student answered long recordings with 'Part 1 (0:00:00-0:00:15): ...'."""
    from speechsum_cli.metrics.scores import offline_scores
    from speechsum_cli.prompts.styles import combine_query, echoes_combine_scaffold

    prompt = combine_query([(0.0, 15.2, "- Budget cut."), (15.2, 30.0, "- Ana hired.")], "Use bullets.")
    assert echoes_combine_scaffold(prompt)
    copied = "Part 1 (0:00:00-0:00:15):\n- Budget cut.\nPart 2 (0:00:15 - 0:00:30): - Ana hired."
    merged = "- The budget was cut in part 1 of the plan.\n- Ana was hired at 10:30."
    row = {"transcript": "The budget was cut. Ana was hired.", "style": "bullets"}
    assert offline_scores(copied, row)["scaffold_echo"] == 1.0
    assert offline_scores(merged, row)["scaffold_echo"] == 0.0
