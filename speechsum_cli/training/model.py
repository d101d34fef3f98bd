"""What trains: LoRA on the language model only, trainable projector, parameter groups, merging."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechsum_cli import dtypes
from speechsum_cli.console import err_console
from speechsum_cli.dtypes import Dtype
from speechsum_cli.errors import InputError, ModelError
from speechsum_cli.training.settings import TrainSettings


@dataclass
class ParameterGroup:
    name: str
    total: int
    trainable: int


def lora_pattern(prefix: str, targets: tuple[str, ...]) -> str:
    """Regex over full module names: ``targets`` inside the language model only (the empty
    prefix: anywhere in the model, a plain causal LM)."""
    names = "|".join(re.escape(t) for t in targets)
    inside = rf"{re.escape(prefix)}\..*\." if prefix else r"(?:.*\.)?"
    return rf"^{inside}(?:{names})$"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether module/parameter ``name`` is one of ``prefixes`` or inside one ("" = the root)."""
    return any(not p or name == p or name.startswith(p + ".") for p in prefixes)


def grouped_parameters(model: Any, family: Any) -> Iterator[tuple[str, Any]]:
    """(group, parameter) for every weight of ``model``: encoder / projector / LM / LoRA / other."""
    for name, param in model.named_parameters():
        if ".original_module." in name:  # peft's frozen copy of a module it trains in full
            continue
        bare = name.removeprefix("base_model.model.").replace(".modules_to_save.default", "")
        if "lora_" in bare:
            yield "LoRA", param
        elif _under(bare, family.projector_prefixes):  # before the encoder: it may sit inside it
            yield "projector", param
        elif _under(bare, family.audio_encoder_prefixes):
            yield "encoder", param
        elif _under(bare, (family.language_model_prefix,)):
            yield "language model", param
        else:
            yield "other", param


def parameter_groups(model: Any, family: Any) -> list[ParameterGroup]:
    """Total and trainable parameter counts per group: encoder / projector / LM / LoRA / other."""
    groups = {n: ParameterGroup(n, 0, 0) for n in ("encoder", "projector", "language model", "LoRA", "other")}
    for group, param in grouped_parameters(model, family):
        groups[group].total += param.numel()
        if param.requires_grad:
            groups[group].trainable += param.numel()
    return list(groups.values())


def modules_to_save(family: Any, *, train_encoder: bool) -> list[str]:
    """Modules trained in full beside LoRA: the projector (and the encoder when asked), none
    inside another (an encoder trained in full already holds a projector nested in it)."""
    prefixes = list(family.projector_prefixes) + (list(family.audio_encoder_prefixes) if train_encoder else [])
    return [p for p in prefixes if not any(p != q and _under(p, (q,)) for q in prefixes)]


def prepare_model(model: Any, family: Any, train: TrainSettings, base_source: str) -> Any:
    """Freeze/unfreeze per the config and wrap with LoRA; fail if LoRA matched nothing."""
    if train.full:
        for name, param in model.named_parameters():
            param.requires_grad = (
                train.train_encoder
                or _under(name, family.projector_prefixes)
                or not _under(name, family.audio_encoder_prefixes)
            )
        return model
    import torch
    from peft import LoraConfig, get_peft_model

    targets = tuple(train.lora_targets or family.lora_targets)
    pattern = lora_pattern(family.language_model_prefix, targets)
    matched = [name for name, _ in model.named_modules() if re.match(pattern, name)]
    if not matched:
        lm_names = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in model.named_modules()
                if _under(name, (family.language_model_prefix,)) and type(module).__name__ == "Linear"
            }
        )
        raise ModelError(
            f"LoRA targets {', '.join(targets)} match no module of the language model "
            f"('{family.language_model_prefix}') of '{base_source}', so training would change "
            f"nothing there. Linear layers it has: {', '.join(lm_names) or 'none'}. Pass "
            "--lora-targets with some of those names."
        )
    save = modules_to_save(family, train_encoder=train.train_encoder)
    config = LoraConfig(
        r=train.lora_r,
        lora_alpha=train.lora_alpha,
        lora_dropout=train.lora_dropout,
        # The module names, not the regex: peft (0.21) rewrites a regex into bare leaf names for
        # the MoE model types whose experts transformers v5 fused (qwen3_omni_moe, ...), which
        # would wrap the audio encoder's q/k/v_proj too.
        target_modules=matched,
        modules_to_save=save,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft reads transformers' deprecated alias; nothing for the user to do
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_source
    for param in peft_model.parameters():  # trained weights stay fp32 under a bf16/fp16 base
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return peft_model


def print_parameter_table(groups: list[ParameterGroup]) -> None:
    from rich.table import Table

    table = Table(title="Parameters", title_justify="left")
    for column in ("group", "total", "trainable", "%"):
        table.add_column(column, justify="left" if column == "group" else "right")
    for g in groups:
        if g.total or g.name == "LoRA":
            share = f"{100 * g.trainable / g.total:.1f}" if g.total else "-"
            table.add_row(g.name, f"{g.total:,}", f"{g.trainable:,}", share)
    err_console.print(table)


def training_dtype(dtype: Dtype) -> Dtype:
    """The dtype a run trains in: ``auto`` resolved for the device training uses (a GPU when one
    is visible; :func:`speechsum_cli.dtypes.resolve`); bfloat16 and float16 need a GPU."""
    import torch

    cuda = torch.cuda.is_available()
    if dtype in (Dtype.bfloat16, Dtype.float16) and not cuda:
        raise InputError(f"--dtype {dtype.value} needs a GPU; none is visible. Use float32 (or auto).")
    return dtypes.resolve(dtype, "cuda" if cuda else "cpu")


def write_merged(lm: Any, adapter_dir: Path, out: Path) -> None:
    """A full checkpoint: the saved adapter merged into a fresh copy of the base weights.

    Merging the saved adapter (rather than the in-memory model) works the same under DDP, FSDP
    and DeepSpeed, whose in-memory weights may be sharded.
    """
    from speechsum_cli.families import attach_adapter, load

    base = load(lm.source, device="cpu", dtype=dtypes.of_torch(lm.model.dtype), text=lm.text_only)
    if getattr(base, "compressor", None) is not None:
        base.compressor.remove()  # the adapter's projector copy must not be saved with a hook on
    attach_adapter(base.model, str(adapter_dir)).save_pretrained(out)


def load_for_training(model_arg: str, dtype: Dtype, *, text: bool = False, is_main: bool = True) -> tuple[Any, str]:
    """The starting checkpoint (an adapter chain is merged into its base) and where it came from.

    ``text``: a plain causal LM (sft's text mode), loaded as a
    :class:`~speechsum_cli.families.TextLM`; otherwise an audio family's :class:`SpeechLM`.

    The second value is the absolute path of a local starting checkpoint, or the hub id as
    given: the lineage recorded in ``speechsum.json``. The adapter written at the end names a
    base plain transformers can load instead (:func:`write_adapter_base`).
    """
    from speechsum_cli.console import info
    from speechsum_cli.families import adapter_base, load, resolve_source

    source = resolve_source(model_arg)
    lm = load(source, device="cpu", dtype=dtype, text=text)
    base_source = str(Path(source).resolve()) if Path(model_arg).exists() else model_arg
    if adapter_base(source) is not None and is_main:
        info(
            f"'{model_arg}' is an adapter: merged into its base; a new LoRA trains on top "
            "(the merged base is saved in the output's base/ folder)."
        )
    return lm, base_source


def write_adapter_base(lm: Any, adapter_dir: Path, out: Path, dtype: Dtype) -> str:
    """Point the adapter in ``adapter_dir`` (to become ``out``) at a base plain transformers loads.

    When training started from an adapter, that base exists nowhere as a checkpoint: a fresh load
    of the starting checkpoint (its adapters merged, in ``dtype``: the weights the new adapter
    trained on) is saved with the processor in ``adapter_dir/base``, and the adapter names
    ``./base``. Otherwise the adapter names the starting checkpoint as
    :func:`speechsum_cli.families.model.recorded_base` writes it (relative when it sits beside
    ``out``).
    Reads saved files and loads afresh, so it works whatever the in-memory model's sharding.
    Returns the recorded base.
    """
    from speechsum_cli.families import adapter_base, load
    from speechsum_cli.families.compression import carry as carry_compression
    from speechsum_cli.families.model import ADAPTER_CONFIG, BASE_SUBFOLDER, recorded_base

    config_file = adapter_dir / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    if adapter_base(lm.source) is not None:
        merged = load(lm.source, device="cpu", dtype=dtype, text=lm.text_only)
        merged.model.save_pretrained(adapter_dir / BASE_SUBFOLDER)
        merged.processor.save_pretrained(adapter_dir / BASE_SUBFOLDER)
        carry_compression(getattr(merged, "compressor", None), adapter_dir / BASE_SUBFOLDER)
        del merged
        base = f"./{BASE_SUBFOLDER}"
    else:
        base = recorded_base(str(config["base_model_name_or_path"]), out)
    config["base_model_name_or_path"] = base
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    return base


def make_trainable(
    lm: Any, train: TrainSettings, base_source: str, *, is_main: bool = True
) -> tuple[Any, list[ParameterGroup]]:
    """Seeded LoRA (or full) preparation, the parameter table on stderr, checkpointing hooks."""
    from transformers import set_seed

    set_seed(train.seed)  # LoRA's initialisation happens here, before the Trainer seeds anything
    compressor = getattr(lm, "compressor", None)
    if compressor is not None:
        compressor.remove()  # PEFT copies the projector it trains: the hook goes on the copy's wrapper
    model = prepare_model(lm.model, lm.family, train, base_source)
    if compressor is not None:
        compressor.install(model)
    groups = parameter_groups(model, lm.family)
    if is_main:
        print_parameter_table(groups)
    if train.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    return model, groups
