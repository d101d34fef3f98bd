"""What distill checks before any model loads: the rows, the shared vocabulary, the teacher's
template and system turn (and, once loaded, that each model's output layer covers the vocabulary).

Token alignment. Every teacher token must have the same id in the student, and the student's
other tokens must be tokens it added (audio placeholders, chat-template markers from
``compose``). The divergence is taken over the teacher's ids ``[0, n_shared)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechsum_cli.console import warn
from speechsum_cli.data.rows import check_audio_rows
from speechsum_cli.errors import InputError, ModelError
from speechsum_cli.stages.distill.config import DistillConfig
from speechsum_cli.teacher import (
    Teacher,
    check_teacher_template,
    load_teacher_tokenizer,
    trained_system,
)

SHOWN_TOKENS = 5
"""Differing tokens named in a vocabulary error."""
SHOWN_SYSTEM = 60
"""Characters of a system message quoted in a warning."""


def check_rows(ds: Any, source: Path, *, needs_summary: bool) -> list[float]:
    """Audio duration per row; one error naming every unusable row id and column."""
    return check_audio_rows(
        ds,
        source,
        stage="distill",
        required=["audio", "transcript", "query"] + (["summary"] if needs_summary else []),
        nonempty=["transcript", "query"],
        hint="distill needs audio, transcript and query per row (the teacher reads the "
        "transcript): 'speechsum synth' output has them"
        + (" — and a summary column for --lmbda < 1 / --sft-alpha." if needs_summary else "."),
    )


def check_vocab(student_tok: Any, teacher_tok: Any, *, student: str, teacher: str, family: str) -> int:
    """Number of shared token ids ``n``: ids ``[0, n)`` mean the same token in both models.

    Every teacher token must have the same id in the student; the student may have more tokens
    only if they are tokens it added (audio placeholders, template markers) with ids past the
    teacher's. Raises :class:`InputError` naming differing tokens otherwise.
    """
    s_vocab, t_vocab = student_tok.get_vocab(), teacher_tok.get_vocab()
    n_shared = max(t_vocab.values()) + 1
    added = set(student_tok.get_added_vocab())
    differ = [
        (tok, i, s_vocab.get(tok)) for tok, i in sorted(t_vocab.items(), key=lambda x: x[1]) if s_vocab.get(tok) != i
    ]
    extra = [
        (tok, i)
        for tok, i in sorted(s_vocab.items(), key=lambda x: x[1])
        if tok not in t_vocab and (tok not in added or i < n_shared)
    ]
    if not differ and not extra:
        return n_shared
    parts = []
    if differ:
        shown = ", ".join(
            f"{tok!r} (teacher id {i}, student {'id ' + str(j) if j is not None else 'absent'})"
            for tok, i, j in differ[:SHOWN_TOKENS]
        )
        parts.append(
            f"{len(differ)} of the teacher's {len(t_vocab)} tokens are missing from the "
            f"student or have another id, e.g. {shown}"
        )
    if extra:
        shown = ", ".join(f"{tok!r} (student id {i})" for tok, i in extra[:SHOWN_TOKENS])
        parts.append(f"{len(extra)} of the student's tokens are unknown to the teacher, e.g. {shown}")
    raise InputError(
        f"teacher '{teacher}' and student '{student}' do not share a vocabulary: "
        + "; ".join(parts)
        + ". The teacher scores the student's own token ids, so both must "
        "mean the same text. Pick a teacher of the student's LLM family, or build a student "
        f"around the teacher's LLM: speechsum compose --encoder WHISPER --llm {teacher} "
        f"--family {family} --out DIR (then sft it) and distill that."
    )


def check_teacher(cfg: DistillConfig, rows: Any) -> tuple[Teacher, int]:
    """The teacher's conversation (its tokenizer, no model yet), checked against the student's
    vocabulary and on one row of the teacher's template; and the shared vocabulary size."""
    from speechsum_cli.families import adapter_base, get_family, read_model_type, resolve_source

    source = resolve_source(cfg.model)
    base = adapter_base(source)
    family = get_family(read_model_type(base if base is not None else source))
    teacher_tok = load_teacher_tokenizer(cfg.teacher)
    student_tok = family.tokenizer(family.load_processor(source))
    n_shared = check_vocab(student_tok, teacher_tok, student=cfg.model, teacher=cfg.teacher, family=family.model_type)
    conversation = Teacher(None, teacher_tok, cfg.teacher, cfg.teacher_system)
    check_teacher_template(conversation, rows[0]["transcript"], rows[0]["query"])
    warn_system_mismatch(cfg.teacher, cfg.teacher_system)
    return conversation, n_shared


def warn_system_mismatch(teacher: str, system: str | None) -> None:
    """A teacher fine-tuned by ``speechsum sft`` (text mode) asked with another system turn."""
    known, trained = trained_system(teacher)
    if known and trained != system:
        warn(
            f"--teacher '{teacher}' was fine-tuned by 'speechsum sft' with "
            f"{_flag_text('--system', trained)}, but distill asks it with "
            f"{_flag_text('--teacher-system', system)}: pass the same system message, so the "
            "teacher reads the conversation it was trained on."
        )


def _flag_text(flag: str, value: str | None) -> str:
    if not value:
        return f"no {flag}"
    return f"{flag} {value[:SHOWN_SYSTEM] + ('...' if len(value) > SHOWN_SYSTEM else '')!r}"


def check_output_width(name: str, model: Any, n_shared: int) -> None:
    """The loaded model's output layer covers the shared vocabulary."""
    width = model.get_output_embeddings().weight.shape[0]
    if width < n_shared:
        raise ModelError(
            f"the {name}'s output layer has {width} rows but the shared vocabulary "
            f"has {n_shared} tokens; its checkpoint and tokenizer disagree."
        )
