"""Helpers for building tiny, random, fully offline checkpoints (tests, examples, benchmarks)."""

from __future__ import annotations

from typing import Any

TINY_CORPUS = """\
The meeting started at nine. Alice Chen presented the quarterly budget of 4.2 million dollars.
Bob said the launch moves to March 14 because the vendor missed two deadlines.
We decided to hire three engineers and to review the contract with Northwind next week.
Action items: Carol drafts the proposal, Dan books the room, everyone reads the report.
In today's lecture we cover photosynthesis, the carbon cycle, and how forests store energy.
Summarize the key points, the decisions, and the action items in a few short bullets.
Questions, answers, numbers, names, dates: one two three four five six seven eight nine ten.
"""


def tiny_tokenizer(
    special_tokens: list[str],
    *,
    chat_template: str,
    eos_token: str,
    pad_token: str,
    bos_token: str | None = None,
    unk_token: str | None = None,
    vocab_size: int = 400,
    extra: dict[str, Any] | None = None,
) -> Any:
    """A byte-level BPE tokenizer trained on a few sentences, with ``special_tokens`` first.

    Byte-level means any text encodes, so real transcripts and queries work with tiny models.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TINY_CORPUS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=eos_token,
        pad_token=pad_token,
        bos_token=bos_token,
        unk_token=unk_token,
        **(extra or {}),
    )
    fast.chat_template = chat_template
    return fast


def seed_everything(seed: int) -> None:
    """Make random weight initialisation reproducible."""
    import torch

    torch.manual_seed(seed)
