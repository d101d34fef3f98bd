"""The text teacher's conversation, defined once.

A text LM reads ``[system?, user: TEACHER_USER(transcript, query)]`` in its own chat template with
the generation prompt, and the answer follows as token ids, then the template's end-of-turn:

* ``speechsum distill``'s teacher reads it to score the student's completions (the completion's
  token ids follow :meth:`Teacher.prompt_ids`);
* ``speechsum sft`` in text mode fine-tunes a text LM on it (:meth:`Teacher.training_ids`: the
  same prompt ids, then the summary's ids and the end-of-turn), so the teacher is trained on
  exactly the prompt it is later asked;
* ``speechsum pairs --teacher`` asks it for its own greedy answer
  (:meth:`Teacher.generation_kwargs`);
* ``recipes/mini/baselines.py`` asks it for summaries (the text upper bound and the cascade).

distill and pairs load it with the one :func:`load_teacher`.

The system turn is optional (``--teacher-system`` in distill, ``--system`` in sft): without one
the template's own default applies. A teacher fine-tuned with a system turn should be asked with
the same one; sft records it in its ``speechsum.json`` (:func:`trained_system` reads it back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from speechsum_cli import dtypes
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError, ModelError

TEACHER_USER = "Transcript of the recording:\n\n{transcript}\n\n{query}"
"""The teacher's user turn: what the student hears, as text, then the student's query."""
ANSWER_MARKER = "\u2063speechsum-answer\u2063"
"""Stands for the answer when rendering a whole conversation to find what the template writes
after an answer (its end-of-turn)."""


@dataclass
class Teacher:
    """A text causal LM and its conversation: transcript + query in its own chat format."""

    model: Any
    """The causal LM, or None where only the tokenizer is needed (checks before loading)."""
    tokenizer: Any
    source: str
    system: str | None = None

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def end_id(self) -> int:
        """The teacher's end-of-turn token (its generation config's first eos, else the tokenizer's)."""
        eos = self.model.generation_config.eos_token_id if self.model is not None else None
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        return int(eos if eos is not None else self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return int(tok.pad_token_id if tok.pad_token_id is not None else self.end_id)

    def stop_ids(self) -> list[int]:
        """Every end token: the generation config's eos ids, then the tokenizer's."""
        ids: list[int] = []
        for candidate in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                ids.extend(candidate if isinstance(candidate, list) else [candidate])
        return list(dict.fromkeys(ids))

    def generation_kwargs(self, settings: Any) -> dict[str, Any]:
        """``model.generate`` keywords for the teacher's answer (a
        :class:`~speechsum_cli.families.GenerationSettings`): ending at any of :meth:`stop_ids`."""
        from speechsum_cli.families.model import generation_kwargs

        return generation_kwargs(settings, stop_ids=self.stop_ids(), pad_id=self.pad_id)

    def messages(self, transcript: str, query: str) -> list[dict[str, str]]:
        user = {"role": "user", "content": TEACHER_USER.format(transcript=transcript, query=query)}
        return ([{"role": "system", "content": self.system}] if self.system else []) + [user]

    def render(self, transcript: str, query: str) -> str:
        """The teacher's prompt text up to its generation prompt (the student's answer follows)."""
        return self.tokenizer.apply_chat_template(
            self.messages(transcript, query), tokenize=False, add_generation_prompt=True
        )

    def prompt_ids(self, transcript: str, query: str) -> list[int]:
        return list(self.tokenizer(self.render(transcript, query), add_special_tokens=False)["input_ids"])

    @cached_property
    def end_of_turn_id(self) -> int:
        """The token the chat template writes right after an assistant answer (``<|im_end|>`` in
        ChatML, ``<|eot_id|>`` in Llama 3); :attr:`end_id` when it writes no special token there."""
        tok = self.tokenizer
        conversation = self.messages("", "") + [{"role": "assistant", "content": ANSWER_MARKER}]
        text = tok.apply_chat_template(conversation, tokenize=False)
        _, found, after = text.rpartition(ANSWER_MARKER)
        ids = list(tok(after.lstrip(), add_special_tokens=False)["input_ids"]) if found else []
        special = set(tok.all_special_ids) | set(tok.get_added_vocab().values())
        return ids[0] if ids and ids[0] in special else self.end_id

    def answer_ids(self, answer: str) -> list[int]:
        """The answer as the assistant's tokens: its text's ids, then the end-of-turn."""
        return list(self.tokenizer(answer, add_special_tokens=False)["input_ids"]) + [self.end_of_turn_id]

    def training_ids(self, transcript: str, query: str, answer: str) -> tuple[list[int], int]:
        """One training sequence, as distill's teacher reads prompt + completion: the prompt's ids,
        then :meth:`answer_ids`; and the prompt's length (the positions the loss skips)."""
        prompt = self.prompt_ids(transcript, query)
        return prompt + self.answer_ids(answer), len(prompt)


def load_teacher(source: str, tokenizer: Any, *, device: str, dtype: Dtype, system: str | None) -> Teacher:
    """The teacher, frozen, on ``device`` (already resolved) in ``dtype`` (auto: by device). An
    adapter dir (a text-mode sft output, its base named relative to it) is merged into its base."""
    from speechsum_cli.families import load_text_model

    try:
        model = load_text_model(source, dtype=dtypes.torch_dtype(dtypes.resolve(dtype, device)), device=device)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(
            f"--teacher '{source}': cannot load it as a causal LM ({type(exc).__name__}: {first})."
        ) from None
    return Teacher(model.requires_grad_(False), tokenizer, source, system)


def load_teacher_tokenizer(source: str, *, flag: str = "--teacher") -> Any:
    """The text LM's tokenizer, which must carry a chat template (``flag`` names the option)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"{flag} '{source}': cannot load its tokenizer ({type(exc).__name__}). Pass a local "
            "directory of a causal LM with its tokenizer, or a hub id while online."
        ) from None
    if not getattr(tok, "chat_template", None):
        raise InputError(
            f"{flag} '{source}' has no chat template; the teacher reads the "
            "transcript in its own chat format. Pick an instruction-tuned (chat) LM."
        )
    return tok


def check_teacher_template(
    teacher: Teacher, transcript: str, query: str, *, flag: str = "--teacher", system_flag: str = "--teacher-system"
) -> None:
    """Render one row in the teacher's template now, so template errors surface before training."""
    try:
        text = teacher.render(transcript, query)
    except Exception as exc:  # noqa: BLE001 - jinja raises anything (TemplateError, exceptions it raises)
        hint = f" (drop {system_flag}: its template may not take a system turn)" if teacher.system else ""
        raise InputError(
            f"{flag} '{teacher.source}': its chat template cannot render the "
            f"transcript + query conversation: {exc}{hint}."
        ) from None
    if transcript.strip() not in text:
        raise InputError(
            f"{flag} '{teacher.source}': its chat template drops the user turn's "
            "text, so the teacher would not read the transcript."
        )


def trained_system(source: str) -> tuple[bool, str | None]:
    """``(True, system)`` when ``source`` is a local ``speechsum sft`` text-mode output (the
    system turn it was trained with, None = the template's default); ``(False, None)`` otherwise."""
    manifest = Path(source) / "speechsum.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False, None
    conversation = data.get("conversation") if data.get("stage") == "sft" else None
    if not isinstance(conversation, dict):
        return False, None
    return True, conversation.get("system")
