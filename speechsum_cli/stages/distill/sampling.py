"""The completions the teacher scores: the student's own samples, or a reference summary's tokens.

The student samples in eval mode, without gradients, with the family's prompt and the one set of
``generate`` keywords (:meth:`~speechsum_cli.families.SpeechLM.generation_kwargs`: audio
placeholders suppressed, the student's stop and pad ids); each completion is cut after its first
stop token. A completion that reaches ``max_new_tokens`` without one is kept as is, and counted.
"""

from __future__ import annotations

from typing import Any

from speechsum_cli.families import GenerationSettings
from speechsum_cli.stages.distill.config import DistillConfig

ON_POLICY = {"top_k": None}
"""On top of the generation keywords: no top-k cut from the checkpoint's generation config, so a
temperature of 1 samples the student's own distribution (what on-policy distillation asks)."""


def sampling_settings(cfg: DistillConfig) -> GenerationSettings:
    """``--max-new-tokens``, ``--temperature``, ``--top-p`` of the student's samples."""
    return GenerationSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_p)


def sample_completions(
    model: Any, lm: Any, prompts: list[Any], settings: GenerationSettings
) -> tuple[list[list[int]], list[bool]]:
    """One sampled completion per prompt, cut after its first stop token; and which hit the limit.

    ``model`` is the student being trained (``lm.model`` with its adapter); ``lm`` encodes."""
    import torch

    inputs = lm.to_model(lm.encode(prompts, padding_side="left").inputs)
    kwargs = {**lm.generation_kwargs(settings), **ON_POLICY}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model.generate(**inputs, **kwargs)
    finally:
        model.train(was_training)
    new = output[:, inputs["input_ids"].shape[1] :].tolist()
    return cut_at_stop(new, kwargs["eos_token_id"])


def cut_at_stop(rows: list[list[int]], stop_ids: list[int]) -> tuple[list[list[int]], list[bool]]:
    """Each row through its first stop token; and which rows have none (hit the limit)."""
    completions, truncated = [], []
    stops = set(stop_ids)
    for row in rows:
        end = next((i for i, t in enumerate(row) if t in stops), None)
        completions.append(row if end is None else row[: end + 1])
        truncated.append(end is None)
    return completions, truncated


def reference_completion(lm: Any, prompt: Any, stop_ids: list[int]) -> list[int]:
    """The family's token ids of ``prompt.answer`` as the assistant turn (through its stop)."""
    labels = lm.encode([prompt], padding_side="right").inputs["labels"][0].tolist()
    ids = [t for t in labels if t != -100]
    end = next((i for i, t in enumerate(ids) if t in set(stop_ids)), None)
    return ids if end is None else ids[: end + 1]
