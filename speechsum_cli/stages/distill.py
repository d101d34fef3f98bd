"""``distill``: on-policy distillation from a text LLM that reads the transcript (stage 2).

Each training step, for every row of the batch:

1. **Sample** (inside ``compute_loss``): the student, in eval mode and without gradients, samples
   ``samples_per_prompt`` completions for (audio, query) with the family's prompt; audio
   placeholders are suppressed; each completion is cut after its first stop token. With
   ``lmbda < 1`` a row whose dataset has a reference summary uses that summary instead
   (off-policy, GKD's mixing) with probability ``1 - lmbda``.
2. **Score**: the teacher reads ``[system?, user: transcript + query]`` rendered by *its own* chat
   template with the generation prompt, followed by the student's completion **token ids**
   (never re-tokenized text), so position ``j`` of the completion is the same token for both
   models. Teacher under ``torch.inference_mode()`` on its own device and dtype — or on a
   vLLM-compatible server (``--teacher-base-url``, :mod:`~speechsum_cli.stages.distill_remote`),
   which returns its log-probs of the same token ids. The conversation
   is :mod:`speechsum_cli.teacher`'s, which ``speechsum sft`` fine-tunes a teacher on (text mode);
   such a teacher (an adapter dir too) is asked with the system turn it was trained with.
3. **Update**: the student re-reads prompt + completion with gradients; the divergence between
   the two next-token distributions is computed on the completion positions only (prompt and
   post-stop padding masked), over the shared vocabulary, from each model's last hidden states
   and LM head a chunk of positions at a time (:mod:`~speechsum_cli.training.head`,
   ``distill_losses``): no ``[batch, length, vocab]`` logits are made.

Token alignment. Before any model loads, the vocabularies are compared: every teacher token must
have the same id in the student, and the student's other tokens must be tokens it added (audio
placeholders, chat-template markers from ``compose``). The divergence is taken over the teacher's
ids ``[0, n_shared)``, both distributions renormalised there. A sampled token outside that range
(a student-only token) cannot be scored: the teacher reads its own end-of-turn token at that
position, the position is masked and counted (``student_only_tokens``).

End of turn. The stop token that ends a completion is kept and scored: when student and teacher
share it (a student composed around the teacher's LLM, or a student of the teacher's family),
the teacher's probability of ending the turn there is distilled too — which is what reins in the
run-on repetition the paper warns about. A completion that reaches ``max_new_tokens`` without a
stop token is scored as is, and counted (``hit_max_new_tokens``).

LoRA: an adapter given as ``--model`` (the sft output) is merged into its base first and a new
LoRA trains on top (the output's base is the merged sft model). The method only — row contract,
collator, sampling, scoring, divergence — on top of :mod:`speechsum_cli.training`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.console import info, plural, warn
from speechsum_cli.data.dataset import load_rows
from speechsum_cli.data.long_audio import LongAudio
from speechsum_cli.data.rows import AudioRowCollator, check_audio_rows, long_audio_plan
from speechsum_cli.errors import InputError, ModelError
from speechsum_cli.llm.config import LLMConfig
from speechsum_cli.stages.distill_losses import (
    DEFAULT_CHUNK,
    DIVERGENCES,
    ESTIMATORS,
    completion_mask,
    head_divergence,
    head_logprobs,
    head_topk_divergence,
    repetition_rate,
    sampled_reverse_kl,
)
from speechsum_cli.stages.distill_remote import (
    DEFAULT_TOP_K,
    PROTOCOLS,
    RemoteTeacher,
    approximation,
)
from speechsum_cli.teacher import (
    TEACHER_USER,
    Teacher,
    check_teacher_template,
    load_teacher_tokenizer,
    trained_system,
)
from speechsum_cli.training.head import Head, HeadStates
from speechsum_cli.training.model import load_for_training, make_trainable
from speechsum_cli.training.run import TrainResult, check_run, finish_run, start_run, train_metrics
from speechsum_cli.training.settings import DISTILL_DEFAULTS, StageConfig, TrainSettings
from speechsum_cli.training.trainer import SpeechTrainer, answer_token_loss

SHOWN_TOKENS = 5
DEFAULT_TRAIN = DISTILL_DEFAULTS
STEP_LOG_KEYS = ("reverse_kl", "logp/teacher", "logp/student", "completion_length", "repetition",
                 "hit_max_new_tokens")
"""Logged every --logging-steps beside the loss (trainer logs, trackers, stderr)."""


@dataclass(frozen=True, kw_only=True)
class DistillConfig(StageConfig):
    """Settings of one ``speechsum distill`` run."""

    teacher: str
    """Text causal LM (local dir or hub id) that reads transcript + query in its own chat template."""
    train: TrainSettings = DEFAULT_TRAIN
    """How it trains; batch_size counts rows before sampling."""
    loss: str = "reverse-kl"
    """reverse-kl (paper) | forward-kl | jsd."""
    beta: float = 0.5
    """jsd only: teacher weight of the mixture, 0 < beta < 1."""
    estimator: str = "full"
    """full (divergence over the whole vocabulary) | sampled (policy gradient; reverse-kl only)."""
    lmbda: float = 1.0
    """Share of rows trained on the student's own samples; the rest on the reference summary."""
    sft_alpha: float = 0.0
    """Weight of a cross-entropy term on the reference summaries (0 = off)."""
    samples_per_prompt: int = 1
    """Completions sampled per (audio, query) each step."""
    temperature: float = 1.0
    """Sampling temperature (1 = the student's own distribution; 0 = greedy)."""
    top_p: float = 1.0
    """Nucleus mass when sampling."""
    max_new_tokens: int = 128
    """Longest sampled completion; hitting it without a stop token is counted."""
    chunk_size: int = DEFAULT_CHUNK
    """Completion positions per chunk of the full-vocabulary divergence (0 = one chunk)."""
    teacher_device: str = "auto"
    """Device of the teacher (auto = cuda if visible, else cpu)."""
    teacher_dtype: str = "auto"
    """Teacher weights' dtype (auto = bfloat16/float16 on GPU, float32 on CPU)."""
    teacher_system: str | None = None
    """System message of the teacher's conversation (default: its template's own)."""
    eval_data: Path | None = None
    """Held-out rows: reverse KL to the teacher on fixed student samples, before and after."""
    teacher_llm: LLMConfig | None = None
    """The teacher's vLLM-compatible server (``--teacher-base-url``): it scores the completions over
    HTTP through the one LLM client; None = the teacher runs in this process."""
    teacher_logprobs: str = "auto"
    """How that server returns the prompt's log-probs: auto | prompt_logprobs (vLLM) | echo."""
    teacher_top_k: int = DEFAULT_TOP_K
    """Remote teacher, --estimator full: log-probs per position it returns; the rest is one bucket."""


DistillResult = TrainResult


# --- checks (before any model loads) --------------------------------------------------------


def check_config(cfg: DistillConfig) -> None:
    problems = []
    if cfg.loss not in DIVERGENCES:
        problems.append(f"--loss must be one of {', '.join(DIVERGENCES)}, got '{cfg.loss}'")
    if cfg.estimator not in ESTIMATORS:
        problems.append(f"--estimator must be one of {', '.join(ESTIMATORS)}, got '{cfg.estimator}'")
    if cfg.loss == "jsd" and not 0.0 < cfg.beta < 1.0:
        problems.append(f"--beta must be strictly between 0 and 1 for jsd, got {cfg.beta} "
                        "(beta 0/1 are forward-kl/reverse-kl: use those losses)")
    if cfg.estimator == "sampled" and cfg.loss != "reverse-kl":
        problems.append("--estimator sampled is the policy-gradient form of the reverse KL: use it "
                        "with --loss reverse-kl")
    if cfg.estimator == "sampled" and cfg.lmbda < 1.0:
        problems.append("--estimator sampled needs the student's own samples (on-policy): use "
                        "--lmbda 1, or --estimator full to mix in reference summaries")
    if not 0.0 <= cfg.lmbda <= 1.0:
        problems.append(f"--lmbda must be in [0, 1], got {cfg.lmbda}")
    if cfg.samples_per_prompt < 1 or cfg.max_new_tokens < 1:
        problems.append("--samples-per-prompt and --max-new-tokens must be >= 1")
    if cfg.teacher_logprobs not in PROTOCOLS:
        problems.append(f"--teacher-logprobs must be one of {', '.join(PROTOCOLS)}, got '{cfg.teacher_logprobs}'")
    if cfg.teacher_top_k < 1:
        problems.append(f"--teacher-top-k must be >= 1, got {cfg.teacher_top_k}")
    if problems:
        raise InputError("; ".join(problems) + ".")
    if cfg.teacher_llm is not None and cfg.estimator == "full":
        info(f"remote teacher with --estimator full: {cfg.loss} over the teacher's top-{cfg.teacher_top_k} "
             "tokens + one tail bucket (an approximation; --estimator sampled is exact).")
    if cfg.estimator == "sampled" and (cfg.temperature != 1.0 or cfg.top_p < 1.0):
        warn("--estimator sampled with --temperature != 1 or --top-p < 1: the samples do not come "
             "from the student's own distribution, so the policy-gradient estimate is biased.")


def check_rows(ds: Any, source: Path, *, needs_summary: bool) -> list[float]:
    """Audio duration per row; one error naming every unusable row id and column."""
    return check_audio_rows(
        ds, source, stage="distill",
        required=["audio", "transcript", "query"] + (["summary"] if needs_summary else []),
        nonempty=["transcript", "query"],
        hint="distill needs audio, transcript and query per row (the teacher reads the transcript): "
             "'speechsum synth' output has them"
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
    differ = [(tok, i, s_vocab.get(tok)) for tok, i in sorted(t_vocab.items(), key=lambda x: x[1])
              if s_vocab.get(tok) != i]
    extra = [(tok, i) for tok, i in sorted(s_vocab.items(), key=lambda x: x[1])
             if tok not in t_vocab and (tok not in added or i < n_shared)]
    if not differ and not extra:
        return n_shared
    parts = []
    if differ:
        shown = ", ".join(
            f"{tok!r} (teacher id {i}, student {'id ' + str(j) if j is not None else 'absent'})"
            for tok, i, j in differ[:SHOWN_TOKENS])
        parts.append(f"{len(differ)} of the teacher's {len(t_vocab)} tokens are missing from the "
                     f"student or have another id, e.g. {shown}")
    if extra:
        shown = ", ".join(f"{tok!r} (student id {i})" for tok, i in extra[:SHOWN_TOKENS])
        parts.append(f"{len(extra)} of the student's tokens are unknown to the teacher, e.g. {shown}")
    raise InputError(
        f"teacher '{teacher}' and student '{student}' do not share a vocabulary: "
        + "; ".join(parts) + ". The teacher scores the student's own token ids, so both must "
        "mean the same text. Pick a teacher of the student's LLM family, or build a student "
        f"around the teacher's LLM: speechsum compose --encoder WHISPER --llm {teacher} "
        f"--family {family} --out DIR (then sft it) and distill that."
    )


# --- the teacher ----------------------------------------------------------------------------


def load_teacher(cfg: DistillConfig, tokenizer: Any) -> Teacher:
    """The teacher, frozen, on ``--teacher-device`` (auto: this process's accelerator device)."""
    from accelerate import PartialState

    from speechsum_cli.families import load_text_model, resolve_device, resolve_dtype

    device = str(PartialState().device) if cfg.teacher_device == "auto" else resolve_device(cfg.teacher_device)
    try:  # an adapter dir (text-mode sft output) is merged into its base
        model = load_text_model(cfg.teacher, dtype=resolve_dtype(cfg.teacher_dtype, device), device=device)
    except (OSError, ValueError) as exc:
        raise ModelError(f"--teacher '{cfg.teacher}': cannot load it as a causal LM "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).") from None
    model = model.requires_grad_(False)
    return Teacher(model, tokenizer, cfg.teacher, cfg.teacher_system)


# --- one scored batch -----------------------------------------------------------------------


@dataclass
class TeacherScores:
    """What the teacher gives the loss at the completion positions."""

    logp: Any
    """[B, C] the teacher's log-prob of each completion token."""
    hidden: Any | None = None
    """[B, C, H] its last hidden states (a local teacher, --estimator full), for ``head``."""
    head: Head | None = None
    top_ids: Any | None = None
    """[B, C, K] a remote teacher's top-k token ids (-1 = empty slot), --estimator full."""
    top_logp: Any | None = None
    """[B, C, K] their log-probs."""

    def to(self, device: Any) -> TeacherScores:
        def move(x: Any) -> Any:
            return None if x is None else x.to(device)

        return TeacherScores(move(self.logp), move(self.hidden), self.head, move(self.top_ids), move(self.top_logp))


@dataclass
class Scored:
    """Student and teacher on one batch of completions, at the completion positions."""

    student_hidden: Any
    """[B, C, H] the student's last hidden states, with gradients (when its forward had them);
    [B, C, V] logits when ``student_head`` is the identity (a model that post-processes its head)."""
    student_head: Head
    """Hidden states -> logits over the shared vocabulary, applied a chunk at a time."""
    teacher: TeacherScores
    tokens: Any
    """[B, C] completion ids (pad past each row's end)."""
    mask: Any
    """[B, C] positions in the loss: real completion tokens, up to the stop, scorable by the teacher."""
    student_only: int
    """Completion tokens outside the shared vocabulary (masked)."""


@dataclass
class Batcher:
    """Builds student and teacher inputs for prompts + completion ids; runs both models."""

    lm: Any
    teacher: Teacher
    n_shared: int
    stop_ids: list[int]
    chunk_size: int = DEFAULT_CHUNK
    remote: Any | None = None
    """A :class:`~speechsum_cli.stages.distill_remote.RemoteTeacher` scoring over HTTP, or None
    (``teacher.model`` scores in this process)."""
    student_states: HeadStates = field(default_factory=lambda: HeadStates("student"))
    teacher_states: HeadStates = field(default_factory=lambda: HeadStates("teacher"))

    def pad_completions(self, completions: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(1, max(len(c) for c in completions))
        tok = self.lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.stop_ids[0]
        ids = torch.full((len(completions), width), pad, dtype=torch.long)
        real = torch.zeros((len(completions), width), dtype=torch.bool)
        for i, c in enumerate(completions):
            ids[i, :len(c)] = torch.tensor(c, dtype=torch.long)
            real[i, :len(c)] = True
        return ids, real

    def teacher_completions(self, tokens: Any, real: Any) -> Any:
        """The completion ids the teacher reads: student-only ids -> its end-of-turn, pads -> its pad."""
        import torch

        t = self.teacher
        comp = torch.where(tokens < self.n_shared, tokens, torch.full_like(tokens, t.end_id))
        return torch.where(real, comp, torch.full_like(comp, t.pad_id))

    def teacher_inputs(self, teacher_prompts: list[list[int]], tokens: Any, real: Any) -> dict[str, Any]:
        """Left-padded teacher prompts + the completion ids (student-only ids -> teacher end-of-turn)."""
        import torch

        t = self.teacher
        comp = self.teacher_completions(tokens, real)
        width = max(len(p) for p in teacher_prompts)
        prompt = torch.full((len(teacher_prompts), width), t.pad_id, dtype=torch.long)
        prompt_mask = torch.zeros((len(teacher_prompts), width), dtype=torch.long)
        for i, p in enumerate(teacher_prompts):
            prompt[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            prompt_mask[i, width - len(p):] = 1
        return {"input_ids": torch.cat([prompt, comp], 1),
                "attention_mask": torch.cat([prompt_mask, real.long()], 1)}

    def student_inputs(self, prompts: list[Any], tokens: Any, real: Any) -> dict[str, Any]:
        """The family's left-padded (audio, query) prompts + the completion ids."""
        import torch

        inputs = self.lm.encode(prompts, padding_side="left").inputs
        inputs["input_ids"] = torch.cat([inputs["input_ids"], tokens], 1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], real.long()], 1)
        return inputs

    def score(self, model: Any, prompts: list[Any], teacher_prompts: list[list[int]],
              completions: list[list[int]], *, full: bool) -> Scored:
        """The teacher (no gradients) then the student (gradients if enabled) on the completions."""
        tokens, real = self.pad_completions(completions)
        mask = completion_mask(tokens, self.stop_ids, real)
        scorable = tokens < self.n_shared
        student_only = int((mask & ~scorable).sum())
        teacher = self.score_teacher(teacher_prompts, tokens, real, full=full)
        hidden, head = self.student_hidden(model, prompts, tokens, real)
        device = hidden.device
        safe = torch_where_scorable(tokens, scorable)
        return Scored(hidden, head, teacher.to(device), safe.to(device), (mask & scorable).to(device), student_only)

    def score_teacher(self, teacher_prompts: list[list[int]], tokens: Any, real: Any, *, full: bool
                      ) -> TeacherScores:
        """The teacher's log-prob of each completion token and, for ``full``, what the divergence
        over the vocabulary needs: a local teacher's last hidden states and head (under inference
        mode, its logits made a chunk at a time), or a remote teacher's top-k log-probs."""
        import torch

        if self.remote is not None:
            return self.remote.score(teacher_prompts, self.teacher_completions(tokens, real), real, full=full)
        t_inputs = {k: v.to(self.teacher.device) for k, v in self.teacher_inputs(teacher_prompts, tokens, real).items()}
        safe = torch_where_scorable(tokens, tokens < self.n_shared).to(self.teacher.device)
        with torch.inference_mode():
            hidden, head = self.teacher_states(self.teacher.model, t_inputs, tokens.shape[1], self.n_shared)
            flat = hidden.reshape(-1, hidden.shape[-1])
            logp = head_logprobs(flat, head, safe.reshape(-1), self.chunk_size).reshape(tokens.shape)
        # clone outside inference mode: normal tensors that autograd may save for backward
        return TeacherScores(logp.clone(), hidden.clone() if full else None, head if full else None)

    def student_hidden(self, model: Any, prompts: list[Any], tokens: Any, real: Any) -> tuple[Any, Head]:
        """The student's last hidden states at the completion positions, ``[B, C, H]``, and its head."""
        s_inputs = self.lm.to_model(self.student_inputs(prompts, tokens, real))
        return self.student_states(model, s_inputs, tokens.shape[1], self.n_shared)


def torch_where_scorable(tokens: Any, scorable: Any) -> Any:
    """``tokens`` with student-only ids replaced by 0 (masked anyway), safe to index any logits."""
    import torch

    return torch.where(scorable, tokens, torch.zeros_like(tokens))


def distill_loss(scored: Scored, *, kind: str, beta: float, estimator: str, chunk_size: int
                 ) -> tuple[Any, dict[str, float]]:
    """The token-mean loss over masked completion positions, and the step's statistics.

    Every full-vocabulary quantity is made from hidden states and heads a chunk of positions at a
    time (:mod:`speechsum_cli.stages.distill_losses`); no ``[tokens, vocab]`` tensor is held.
    """
    flat = scored.mask.reshape(-1)

    def rows(x: Any) -> Any:
        return x.reshape(-1, *x.shape[2:])[flat]

    s, head, tokens, t = rows(scored.student_hidden), scored.student_head, rows(scored.tokens), scored.teacher
    t_logp = rows(t.logp)
    if estimator == "sampled":
        s_logp = head_logprobs(s, head, tokens, chunk_size)
        per_token = sampled_reverse_kl(s_logp, t_logp)
        reverse = per_token.detach()
    elif t.hidden is not None:
        per_token, reverse, s_logp, _ = head_divergence(s, head, rows(t.hidden), t.head, tokens, kind, beta, chunk_size)
    else:
        per_token, reverse, s_logp = head_topk_divergence(s, head, tokens, rows(t.top_ids), rows(t.top_logp),
                                                          kind, beta, chunk_size)
    loss = per_token.mean() if per_token.numel() else scored.student_hidden.sum() * 0.0
    stats = {
        "reverse_kl": float(reverse.mean()) if reverse.numel() else 0.0,
        "logp/teacher": float(t_logp.mean()) if t_logp.numel() else 0.0,
        "logp/student": float(s_logp.detach().mean()) if s_logp.numel() else 0.0,
        "scored_tokens": float(flat.sum()),
    }
    return loss, stats


# --- sampling -------------------------------------------------------------------------------


def sample_completions(model: Any, lm: Any, prompts: list[Any], *, temperature: float, top_p: float,
                       max_new_tokens: int, stop_ids: list[int]) -> tuple[list[list[int]], list[bool]]:
    """One sampled completion per prompt, cut after its first stop token; and which hit the limit."""
    import torch

    inputs = lm.to_model(lm.encode(prompts, padding_side="left").inputs)
    tok = lm.tokenizer
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "suppress_tokens": lm.family.placeholder_token_ids(lm.processor),
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else stop_ids[0],
        "eos_token_id": stop_ids,
    }
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=None)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model.generate(**inputs, **kwargs)
    finally:
        model.train(was_training)
    new = output[:, inputs["input_ids"].shape[1]:].tolist()
    completions, truncated = [], []
    stops = set(stop_ids)
    for row in new:
        end = next((i for i, t in enumerate(row) if t in stops), None)
        completions.append(row if end is None else row[:end + 1])
        truncated.append(end is None)
    return completions, truncated


def reference_completion(lm: Any, prompt: Any, stop_ids: list[int]) -> list[int]:
    """The family's token ids of ``prompt.answer`` as the assistant turn (through the stop token)."""
    labels = lm.encode([prompt], padding_side="right").inputs["labels"][0].tolist()
    ids = [t for t in labels if t != -100]
    end = next((i for i, t in enumerate(ids) if t in set(stop_ids)), None)
    return ids if end is None else ids[:end + 1]


# --- training -------------------------------------------------------------------------------


@dataclass
class DistillCollator(AudioRowCollator):
    """Decode each row's audio; rows stay rows (sampling happens in the loss).

    Audio over one window is split into consecutive windows that fill one prompt with ``chunk``
    (``--on-long-audio chunk``), else cut to the window (rows planned for truncation).
    """

    def build(self, rows: list[dict[str, Any]], audios: list[Any]) -> dict[str, Any]:
        return {"rows": [{"id": row["id"], "wave": wave, "query": row["query"],
                          "transcript": row["transcript"], "summary": row.get("summary") or ""}
                         for row, wave in zip(rows, audios)]}


class DistillTrainer(SpeechTrainer):
    """Trainer whose loss samples from the student and pulls it toward the teacher."""

    step_log_keys = STEP_LOG_KEYS

    def __init__(self, *args: Any, cfg: DistillConfig, batcher: Batcher, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg, self.batcher = cfg, batcher
        self._rng = random.Random(cfg.train.seed)
        self.totals = {"samples_drawn": 0, "off_policy_rows": 0, "completion_tokens": 0,
                       "hit_max_new_tokens": 0, "student_only_tokens": 0, "repetition_sum": 0.0}

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        from speechsum_cli.families import Prompt

        cfg, b, lm = self.cfg, self.batcher, self.batcher.lm
        unwrapped = self.accelerator.unwrap_model(model)
        prompts, teacher_prompts, completions, references = [], [], [], []
        on_policy = []
        for row in inputs["rows"]:
            prompt = Prompt(row["query"], row["wave"])
            t_prompt = b.teacher.prompt_ids(row["transcript"], row["query"])
            if row["summary"].strip():
                references.append(Prompt(row["query"], row["wave"], answer=row["summary"]))
            if row["summary"].strip() and self._rng.random() >= cfg.lmbda:
                prompts.append(prompt)
                teacher_prompts.append(t_prompt)
                completions.append(reference_completion(lm, references[-1], b.stop_ids))
                self.totals["off_policy_rows"] += 1
            else:
                on_policy += [(prompt, t_prompt)] * cfg.samples_per_prompt
        if on_policy:
            sampled, truncated = sample_completions(
                unwrapped, lm, [p for p, _ in on_policy], temperature=cfg.temperature,
                top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens, stop_ids=b.stop_ids)
            prompts += [p for p, _ in on_policy]
            teacher_prompts += [t for _, t in on_policy]
            completions += sampled
            self.totals["samples_drawn"] += len(sampled)
            self.totals["hit_max_new_tokens"] += sum(truncated)
            self.totals["completion_tokens"] += sum(len(c) for c in sampled)
            reps = [repetition_rate([t for t in c if t not in b.stop_ids]) for c in sampled]
            self.totals["repetition_sum"] += sum(reps)
            self.record({"completion_length": sum(len(c) for c in sampled) / len(sampled),
                         "repetition": sum(reps) / len(reps),
                         "hit_max_new_tokens": sum(truncated) / len(truncated)})
        scored = b.score(model, prompts, teacher_prompts, completions, full=cfg.estimator == "full")
        self.totals["student_only_tokens"] += scored.student_only
        loss, stats = distill_loss(scored, kind=cfg.loss, beta=cfg.beta, estimator=cfg.estimator,
                                   chunk_size=cfg.chunk_size)
        if cfg.sft_alpha and references:
            batch = lm.encode(references, padding_side="right").inputs
            labels = batch.pop("labels")
            outputs = model(**lm.to_model(batch))
            ce = answer_token_loss(outputs, labels.to(outputs.logits.device))
            loss = loss + cfg.sft_alpha * ce
            stats["sft_ce"] = float(ce.detach())
        self.record(stats)
        return (loss, None) if return_outputs else loss


def heldout_divergence(model: Any, batcher: Batcher, rows: list[dict[str, Any]],
                       completions: list[list[int]], batch_size: int) -> float:
    """Token-mean full-vocabulary reverse KL(student || teacher) on fixed completions."""
    import torch

    from speechsum_cli.families import Prompt

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            prompts = [Prompt(r["query"], r["wave"]) for r in part]
            t_prompts = [batcher.teacher.prompt_ids(r["transcript"], r["query"]) for r in part]
            with torch.no_grad():
                scored = batcher.score(model, prompts, t_prompts, completions[start:start + batch_size], full=True)
                _, stats = distill_loss(scored, kind="reverse-kl", beta=0.5, estimator="full",
                                        chunk_size=batcher.chunk_size)
            total += stats["reverse_kl"] * stats["scored_tokens"]
            count += int(stats["scored_tokens"])
    finally:
        model.train(was_training)
    return total / max(count, 1)


def heldout_rows(cfg: DistillConfig, lm: Any, window: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Decoded eval rows (long audio handled per --on-long-audio) and their counts."""
    ds = load_rows(cfg.eval_data, columns=cfg.columns)
    durations = check_rows(ds, cfg.eval_data, needs_summary=False)
    policy = LongAudio(cfg.train.on_long_audio)
    plan = long_audio_plan(ds["id"], durations, window, policy, cfg.eval_data)
    collate = DistillCollator(lm, window, chunk=policy is LongAudio.chunk)
    rows = collate([{**ds[i], "truncate": t} for i, t in zip(plan.keep, plan.truncate)])["rows"]
    return rows, {"eval_rows": len(rows), **{f"eval_{k}": v for k, v in plan.counts.items()}}


def load_checked_teacher(cfg: DistillConfig, rows: Any) -> tuple[Any, int, str]:
    """Teacher tokenizer checked against the student's vocabulary and the teacher's template
    (before any model loads); returns it, the shared vocabulary size, and the student's family."""
    from speechsum_cli.families import adapter_base, get_family, read_model_type, resolve_source

    source = resolve_source(cfg.model)
    base = adapter_base(source)
    family = get_family(read_model_type(base if base is not None else source))
    teacher_tok = load_teacher_tokenizer(cfg.teacher)
    student_tok = family.tokenizer(family.load_processor(source))
    n_shared = check_vocab(student_tok, teacher_tok, student=cfg.model, teacher=cfg.teacher,
                           family=family.model_type)
    check_teacher_template(Teacher(None, teacher_tok, cfg.teacher, cfg.teacher_system),
                           rows[0]["transcript"], rows[0]["query"])
    warn_system_mismatch(cfg.teacher, cfg.teacher_system)
    return teacher_tok, n_shared, family.model_type


def warn_system_mismatch(teacher: str, system: str | None) -> None:
    """A teacher fine-tuned by ``speechsum sft`` (text mode) asked with another system turn."""
    known, trained = trained_system(teacher)
    if known and trained != system:
        warn(f"--teacher '{teacher}' was fine-tuned by 'speechsum sft' with {_flag_text('--system', trained)}, "
             f"but distill asks it with {_flag_text('--teacher-system', system)}: pass the same system "
             "message, so the teacher reads the conversation it was trained on.")


def _flag_text(flag: str, value: str | None) -> str:
    if not value:
        return f"no {flag}"
    return f"{flag} {value[:60] + ('...' if len(value) > 60 else '')!r}"


def run(cfg: DistillConfig) -> DistillResult:
    """Distill, then write the adapter (or merged checkpoint) + processor + speechsum.json."""
    train = cfg.train
    check_config(cfg)
    precision = check_run(train, cfg.out)
    rows = load_rows(cfg.data, columns=cfg.columns, split=cfg.split)
    durations = check_rows(rows, cfg.data, needs_summary=cfg.lmbda < 1.0 or cfg.sft_alpha > 0)
    teacher_tok, n_shared, _ = load_checked_teacher(cfg, rows)

    remote = open_remote_teacher(cfg, teacher_tok, n_shared, rows[0]) if cfg.teacher_llm is not None else None
    try:
        return _distill(cfg, rows, durations, precision, teacher_tok, n_shared, remote)
    finally:
        if remote is not None:
            remote.close()


def open_remote_teacher(cfg: DistillConfig, teacher_tok: Any, n_shared: int, row: dict[str, Any]) -> RemoteTeacher:
    """The teacher's server, asked once (one row's prompt + the end of turn) before any model loads."""
    assert cfg.teacher_llm is not None
    remote = RemoteTeacher(cfg.teacher_llm, protocol=cfg.teacher_logprobs, top_k=cfg.teacher_top_k,
                           vocab=teacher_tok.get_vocab(), n_shared=n_shared)
    conversation = Teacher(None, teacher_tok, cfg.teacher, cfg.teacher_system)
    prompt = conversation.prompt_ids(row["transcript"], row["query"])
    try:
        remote.probe(prompt + [conversation.end_id], len(prompt))
    except BaseException:
        remote.close()
        raise
    info(f"teacher '{cfg.teacher}' on {cfg.teacher_llm.base_url} (model '{cfg.teacher_llm.model}', "
         f"log-probs by {remote.protocol})")
    return remote


def check_output_width(name: str, model: Any, n_shared: int) -> None:
    width = model.get_output_embeddings().weight.shape[0]
    if width < n_shared:
        raise ModelError(f"the {name}'s output layer has {width} rows but the shared vocabulary "
                         f"has {n_shared} tokens; its checkpoint and tokenizer disagree.")


def teacher_record(cfg: DistillConfig, teacher: Teacher, remote: RemoteTeacher | None, n_shared: int) -> dict[str, Any]:
    """The teacher in ``speechsum.json``: where it ran and, on a server, what its log-probs made of the loss."""
    record: dict[str, Any] = {"source": cfg.teacher, "user_turn": TEACHER_USER, "shared_vocabulary": n_shared}
    if remote is None:
        return {**record, "device": str(teacher.device),
                "dtype": str(next(teacher.model.parameters()).dtype).removeprefix("torch.")}
    llm = remote.config
    return {**record, "base_url": llm.base_url, "model": llm.model, "logprobs": remote.protocol,
            "top_k": cfg.teacher_top_k if cfg.estimator == "full" else None,
            "approximation": approximation(cfg.estimator, cfg.loss, cfg.teacher_top_k), **remote.usage()}


def step_history(trainer: Any) -> list[dict[str, float]]:
    """Every logged training step: the loss and the stage's statistics."""
    keys = ("loss", "reverse_kl", "logp/teacher", "logp/student")
    return [{"step": h["step"], **{k: h[k] for k in keys if k in h}}
            for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]


def _distill(cfg: DistillConfig, rows: Any, durations: list[float], precision: Any, teacher_tok: Any,
             n_shared: int, remote: RemoteTeacher | None) -> DistillResult:
    train = cfg.train
    run_ = start_run(cfg, train, cfg.out, precision)
    lm, reference = load_for_training(cfg.model, run_.model_dtype(train), is_main=run_.is_main)
    check_output_width("student", lm.model, n_shared)
    if remote is None:
        teacher = load_teacher(cfg, teacher_tok)
        check_output_width("teacher", teacher.model, n_shared)
    else:
        teacher = Teacher(None, teacher_tok, cfg.teacher, cfg.teacher_system)
    stop_ids = lm.stop_token_ids()
    window = lm.window_seconds
    policy = LongAudio(train.on_long_audio)
    plan = long_audio_plan(rows["id"], durations, window, policy, cfg.data)
    counts: dict[str, Any] = {"rows_in": len(rows), **plan.counts}
    kept = rows.select(plan.keep)
    from datasets import Dataset

    train_ds = Dataset.from_dict({
        "id": kept["id"], "audio": kept["audio"], "query": kept["query"],
        "transcript": kept["transcript"],
        "summary": kept["summary"] if "summary" in kept.column_names else [""] * len(kept),
        "truncate": plan.truncate,
        "length": [int(durations[i] * 100) for i in plan.keep],
    })
    counts["train_rows"] = len(train_ds)

    model, groups = make_trainable(lm, train, reference, is_main=run_.is_main)
    run_.use_feature_cache(model, lm.family, train)
    batcher = Batcher(lm, teacher, n_shared, stop_ids, cfg.chunk_size, remote)

    metrics: dict[str, Any] = {}
    held, fixed = None, None
    if cfg.eval_data is not None:
        from transformers import set_seed

        from speechsum_cli.families import Prompt

        held, eval_counts = heldout_rows(cfg, lm, window)
        counts.update(eval_counts)
        set_seed(train.seed)
        fixed, _ = sample_completions(model, lm, [Prompt(r["query"], r["wave"]) for r in held],
                                      temperature=cfg.temperature, top_p=cfg.top_p,
                                      max_new_tokens=cfg.max_new_tokens, stop_ids=stop_ids)
        metrics["heldout_reverse_kl_before"] = heldout_divergence(model, batcher, held, fixed, train.batch_size)
        info(f"held-out reverse KL before: {metrics['heldout_reverse_kl_before']:.4f} "
             f"({len(held)} rows, {sum(map(len, fixed))} completion tokens)")

    trainer = DistillTrainer(
        model=model, args=run_.args, train_dataset=train_ds,
        data_collator=DistillCollator(lm, window, chunk=policy is LongAudio.chunk),
        family=lm.family, cfg=cfg, batcher=batcher,
    )
    if run_.is_main:
        info(f"distilling on {plural(len(train_ds), 'row')} from teacher '{cfg.teacher}' "
             f"({cfg.loss}, estimator {cfg.estimator}, lmbda {cfg.lmbda:g})")
    output = trainer.train(resume_from_checkpoint=run_.resume_argument)
    metrics.update(train_metrics(trainer, output, run_, STEP_LOG_KEYS))
    metrics["log_history"] = step_history(trainer)
    if held is not None:
        metrics["heldout_reverse_kl_after"] = heldout_divergence(model, batcher, held, fixed, train.batch_size)
        info(f"held-out reverse KL after: {metrics['heldout_reverse_kl_after']:.4f}")
    totals = dict(trainer.totals)  # sample counts cover the resumed part of a resumed run only
    repetition = totals.pop("repetition_sum")
    counts.update(totals)
    if totals["samples_drawn"]:
        metrics["mean_completion_length"] = totals["completion_tokens"] / totals["samples_drawn"]
        metrics["repetition_rate_mean"] = repetition / totals["samples_drawn"]
    if totals["student_only_tokens"]:
        warn(f"{totals['student_only_tokens']} sampled token(s) exist only in the student's vocabulary; "
             "the teacher cannot score them, so they were left out of the loss.")

    finish_run(
        trainer, run_, lm, stage="distill", config=cfg, train=train,
        inputs=[cfg.data, *([cfg.eval_data] if cfg.eval_data else []), lm.source],
        counts=counts, metrics=metrics,
        extra={
            "base_model": reference,
            "teacher": teacher_record(cfg, teacher, remote, n_shared),
            "loss": cfg.loss, "estimator": cfg.estimator, "lmbda": cfg.lmbda,
            "parameters": [vars(g) for g in groups], "window_seconds": window,
        },
    )
    return DistillResult(cfg.out, counts, metrics, groups)
