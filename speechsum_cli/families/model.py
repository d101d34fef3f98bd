"""A loaded audio LLM (:class:`SpeechLM`): family + model + processor, and generation."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from speechsum_cli import generation
from speechsum_cli.errors import ModelError
from speechsum_cli.families.base import AudioFamily, Batch, Prompt


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding parameters shared by every stage that generates."""

    max_new_tokens: int = generation.MAX_NEW_TOKENS
    """Upper bound on generated tokens per prompt."""
    temperature: float = generation.TEMPERATURE
    """0 = greedy decoding; > 0 samples."""
    top_p: float = generation.TOP_P
    """Nucleus sampling mass when sampling."""


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"--device {device} was asked for but no CUDA GPU is visible. Use --device cpu.")
    return device


def unreachable(source: str, exc: Exception) -> ModelError:
    """The error for a hub checkpoint that cannot be fetched (offline, unknown repo, auth)."""
    return ModelError(
        f"cannot load model '{source}': it is not a local directory and could not be "
        f"fetched from the Hugging Face hub ({type(exc).__name__}). Pass --model with a "
        "local checkpoint directory (or set SPEECHSUM_MODEL), or go online / log in."
    )


def resolve_source(source: str) -> str:
    """A local dir or hub id as given; ``repo@revision`` is downloaded and becomes a local dir.

    The revision form reaches checkpoints kept on a branch or PR ref, e.g. the transformers-format
    Phi-4-multimodal at ``microsoft/Phi-4-multimodal-instruct@refs/pr/70``.
    """
    if Path(source).exists() or "@" not in source:
        return source
    repo, revision = source.rsplit("@", 1)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo, revision=revision)
    except Exception as exc:  # offline, unknown repo or revision, auth
        raise unreachable(source, exc) from None


ADAPTER_CONFIG = "adapter_config.json"
"""The file that marks a PEFT adapter directory (written by ``speechsum sft`` without --merge)."""

BASE_SUBFOLDER = "base"
"""Where a training stage that started from an adapter keeps the merged starting weights (a full
``save_pretrained`` checkpoint inside the output), so the new adapter's base loads without us."""


def is_relative_base(base: str) -> bool:
    """True for a base written relative to the adapter dir (``./base``, ``../models/student``)."""
    return base in (".", "..") or base.startswith(("./", "../", ".\\", "..\\"))


def recorded_base(base: str, adapter_dir: Path) -> str:
    """How an adapter saved at ``adapter_dir`` names ``base`` in ``base_model_name_or_path``.

    A local checkpoint inside the folder that holds the adapter (``runs/models/student`` for
    ``runs/sft``, the ``base`` subfolder of the adapter itself) is written relative to the adapter
    dir (``../models/student``, ``./base``), so the folder can move as a whole; a local checkpoint
    elsewhere (a shared models folder) keeps its absolute path; a hub id is kept as given.
    :func:`adapter_base` reads it back.
    """
    path = Path(base)
    if not path.is_absolute():
        return base
    here = adapter_dir.resolve()
    target = path.resolve()
    if not target.is_relative_to(here.parent):
        return base
    relative = Path(os.path.relpath(target, here)).as_posix()
    return relative if relative.startswith("..") else f"./{relative}"


def adapter_base(source: str) -> str | None:
    """The base checkpoint of a local PEFT adapter directory, or None if ``source`` is not one.

    An adapter dir has ``adapter_config.json`` (naming its base in ``base_model_name_or_path``)
    and no config.json of its own. A base written relative to the adapter (``./base``,
    ``../models/student``; see :func:`recorded_base`) is resolved against the adapter dir; a
    hub id or an absolute path is returned as written.
    """
    path = Path(source)
    adapter_file = path / ADAPTER_CONFIG
    if not path.is_dir() or not adapter_file.is_file() or (path / "config.json").is_file():
        return None
    try:
        base = json.loads(adapter_file.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read '{adapter_file}': {exc}") from None
    if not base:
        raise ModelError(
            f"'{adapter_file}' has no 'base_model_name_or_path', so its base model is unknown. "
            "Set it to the base checkpoint's directory or hub id."
        )
    base = str(base)
    if Path(base).is_absolute():
        return base
    beside = path.resolve() / base
    if is_relative_base(base):
        if not beside.exists():
            raise ModelError(
                f"'{source}' is an adapter over '{base}' (relative to the adapter: "
                f"'{beside.resolve()}'), which does not exist. Move the adapter together with the "
                "folder its base is in, or "
                f"set base_model_name_or_path in '{adapter_file}' to where the base is now."
            )
        return str(beside.resolve())
    return str(beside.resolve()) if beside.is_dir() else base  # a hub id (or a path from the cwd)


def attach_adapter(model: Any, adapter_dir: str) -> Any:
    """``model`` with the PEFT adapter in ``adapter_dir`` merged in (a plain model again)."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():  # peft calls transformers APIs deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


def read_model_type(source: str) -> str:
    """``model_type`` from a checkpoint's config.json (local dir, or hub id via the HF cache).

    For a PEFT adapter directory, the model_type of its base checkpoint.
    """
    base = adapter_base(source)
    if base is not None:
        return read_model_type(resolve_source(base))
    path = Path(source)
    if path.exists():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ModelError(
                f"'{source}' is not a model checkpoint: no config.json in it. Pass a directory "
                "written by save_pretrained (or a speechsum stage), or a hub id."
            )
    else:
        try:
            from huggingface_hub import hf_hub_download

            config_file = Path(hf_hub_download(source, "config.json"))
        except Exception as exc:  # offline, unknown repo, auth: all mean "cannot get it"
            raise unreachable(source, exc) from None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read '{config_file}': {exc}") from None
    model_type = config.get("model_type")
    if not model_type:
        raise ModelError(f"'{config_file}' has no 'model_type'; is it a transformers checkpoint?")
    return model_type


class CheckpointFacts:
    """What a checkpoint's family, processor and config tell the stages: tokenizer, sampling rate,
    audio window, context length. Shared by :class:`SpeechLM` (weights loaded here) and
    :class:`~speechsum_cli.families.served.ServedSpeechLM` (generation on a server), which
    provide ``family``, ``processor`` and ``config``."""

    family: AudioFamily
    processor: Any
    config: Any

    @property
    def tokenizer(self) -> Any:
        return self.family.tokenizer(self.processor)

    @property
    def sampling_rate(self) -> int:
        return self.family.sampling_rate(self.processor)

    @property
    def window_seconds(self) -> float:
        return self.family.window_seconds(self.config, self.processor)

    @property
    def min_clip_seconds(self) -> float:
        """Shortest clip the audio encoder reads; a shorter one is padded with silence to it."""
        return self.family.min_clip_samples(self.processor, self.config) / self.sampling_rate

    @property
    def context_length(self) -> int:
        """Longest token sequence the language model takes (prompt + generation)."""
        return int(self.config.get_text_config().max_position_embeddings)


@dataclass
class SpeechLM(CheckpointFacts):
    """A loaded audio LLM. Stages encode prompts and generate through this object."""

    family: AudioFamily
    model: Any
    processor: Any
    source: str
    compressor: Any = None
    """An :class:`~speechsum_cli.families.compression.AudioCompressor` when the checkpoint reads
    only the frames its CTC selector keeps (``speechsum align --compress``), else None."""
    text_only: ClassVar[bool] = False
    """False: an audio LLM (a :class:`~speechsum_cli.families.text.TextLM` is the text-only kind)."""

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, prompts: list[Prompt], *, padding_side: str = "left") -> Batch:
        counter = None
        if self.compressor is not None:

            def counter(features: Any) -> list[int]:
                return self.compressor.counts(self.model, features.tensors)

        return self.family.encode(self.processor, self.config, prompts, padding_side=padding_side, counter=counter)

    def to_model(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Move tensors to the model's device; floating tensors take the model's dtype."""
        import torch

        moved = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.model.dtype)
            moved[key] = value
        return moved

    def stop_token_ids(self) -> list[int]:
        """End-of-sequence ids: the generation config's plus the tokenizer's."""
        ids: list[int] = []
        for candidate in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if candidate is None:
                continue
            ids.extend(candidate if isinstance(candidate, list) else [candidate])
        return list(dict.fromkeys(ids))

    def generate(self, prompts: list[Prompt], settings: GenerationSettings) -> list[str]:
        """Generate one completion per prompt (a padded batch; left padding)."""
        return self.generate_batch(prompts, settings)[0]

    def sample(self, prompts: list[Prompt], settings: GenerationSettings, k: int, seeds: list[int]) -> list[list[str]]:
        """``k`` sampled completions per prompt, in one padded batch. ``seeds`` are for a server
        (:class:`~speechsum_cli.families.served.ServedSpeechLM`); here the samples come from torch's
        generator, which the caller seeds once."""
        texts = self.generate([p for p in prompts for _ in range(k)], settings)
        return [texts[i * k : (i + 1) * k] for i in range(len(prompts))]

    def generation_batch(self, batch_size: int) -> int:
        """Prompts generated together: ``--batch-size`` (a server's generator keeps its concurrency busy)."""
        return batch_size

    def record(self) -> dict[str, Any]:
        """For ``speechsum.json``: generation ran in this process."""
        return {"on": "local", "checkpoint": self.source, "device": str(self.device)}

    def close(self) -> None:
        """Nothing to release (a server's generator closes its connections)."""

    def generate_batch(self, prompts: list[Prompt], settings: GenerationSettings) -> tuple[list[str], Batch]:
        """Like :meth:`generate`, also returning the encoded batch (audio seconds/tokens per row)."""
        import torch

        batch = self.encode(prompts, padding_side="left")
        inputs = self.to_model(batch.inputs)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **self.generation_kwargs(settings))
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        texts = [text.strip() for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        return texts, batch

    def generation_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        """``model.generate`` keywords for ``settings``: audio placeholders suppressed (a model
        that emitted one would make the next forward fail or hear nothing), stop and pad ids."""
        tok = self.tokenizer
        return generation_kwargs(
            settings,
            stop_ids=self.stop_token_ids(),
            pad_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            suppress_tokens=self.family.placeholder_token_ids(self.processor),
        )


def generation_kwargs(
    settings: GenerationSettings, *, stop_ids: list[int], pad_id: int | None, suppress_tokens: list[int] | None = None
) -> dict[str, Any]:
    """``model.generate`` keywords for ``settings``, for any causal LM of ours (an audio LLM, the
    text teacher): greedy at temperature 0 (the checkpoint's own sampling settings off), else
    sampling with ``temperature`` and ``top_p``; ends at any of ``stop_ids``."""
    sampling = settings.temperature > 0
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": sampling}
    if suppress_tokens is not None:
        kwargs["suppress_tokens"] = suppress_tokens
    kwargs.update(pad_token_id=pad_id, eos_token_id=stop_ids)
    if sampling:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def adapter_chain(source: str) -> tuple[str, list[str]]:
    """The full checkpoint at the bottom of ``source`` and the adapters above it, top first.

    A chain of adapters (dpo on kd on sft on a base, as earlier versions wrote them; the stages
    now keep the merged starting weights in the adapter's ./base) is merged in training order by
    :func:`merge_chain`. Transformers' own adapter loading follows one level only, and does not
    resolve a base written relative to the adapter, so such outputs would not load otherwise.
    """
    chain: list[str] = []
    base = source
    while (parent := adapter_base(base)) is not None:
        chain.append(base)
        base = resolve_source(parent)
        if len(chain) > 32:
            raise ModelError(f"'{source}': adapter chain longer than 32 (a cycle in base_model_name_or_path?)")
    return base, chain


def merge_chain(model: Any, chain: list[str]) -> Any:
    """``model`` with the adapters of :func:`adapter_chain` merged in, bottom first."""
    for adapter in reversed(chain):  # LoRA outputs of sft/distill/dpo: merged in for inference
        model = attach_adapter(model, adapter).eval()
    return model
