"""CTC-guided compression of audio tokens: the language model reads only the frames that speak.

A projector aligned by ``speechsum align`` maps each group of encoder frames near one of the LM's
token embeddings, and its CTC head says which frames carry a token and which are *blank*. A
small LM reads the few frames that carry words far better than every frame of a window, most of
them blanks and repeats (measured in recipes/mini/RESULTS.md, "Why the student still does not
listen").

**The selector** is a frozen copy of the projector as align left it, with align's head: for each
clip it keeps the frames whose best class is not blank, consecutive repeats merged (at least one
frame per clip). Frozen, so a clip's placeholder count is a function of its audio alone: it is
computed when a batch is encoded (the prompt gets one placeholder per kept frame) and again in
the forward, where a hook on the live projector keeps the same rows of its output. The live
projector and the LM keep training; only which frames are read stays fixed.

**On disk**: ``alignment/compression.json`` + ``alignment/selector.safetensors`` (+ align's
``alignment/ctc_head.safetensors``) inside a checkpoint mark it as compressed. Every stage's
output carries the folder on (:func:`carry`), and :func:`speechsum_cli.families.load` switches
compression on for any checkpoint, adapter or adapter chain that has it. Stock transformers and
vLLM ignore the folder and would feed every frame: such checkpoints run through speechsum only.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechsum_cli.errors import ModelError

ALIGNMENT_DIR = "alignment"
COMPRESSION_FILE = f"{ALIGNMENT_DIR}/compression.json"
SELECTOR_FILE = f"{ALIGNMENT_DIR}/selector.safetensors"
METHOD = "ctc-drop-blanks-merge-repeats"
FORMAT = 1


def keep_mask(log_probs: Any) -> Any:
    """``[clips, frames]`` bool: frames whose best class is not blank, the first of each run of
    one class, and the first frame of a clip that has none (a clip never vanishes)."""
    from speechsum_cli.families.ctc_head import BLANK

    best = log_probs.argmax(-1)
    keep = best != BLANK
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    empty = ~keep.any(dim=1)
    keep[empty, 0] = True
    return keep


def projector_module(model: Any, family: Any) -> Any:
    """The family's projector inside ``model`` (PEFT-wrapped or not): the module the stock
    forward calls, so a hook there sees every call."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_submodule(family.projector_prefixes[0])


@dataclass
class AudioCompressor:
    """The selector of one compressed checkpoint, and the hook that applies it to a model."""

    family: Any
    model_config: Any
    selector: Any
    """A frozen copy of the projector as align left it."""
    head: Any
    """align's CTC head (blank vector and bias, temperature) over the LM's token embeddings."""
    folder: Path
    """The checkpoint whose ``alignment/`` folder this came from (copied on by :func:`carry`)."""
    handles: list[Any] = field(default_factory=list)

    @property
    def rows_per_clip(self) -> int:
        return self.family.compression_rows(self.model_config)

    def keep(self, projector_input: Any) -> Any:
        """``[clips, rows]`` bool for the projector's input of whole clips (flat or per clip).

        Computed in float32 with autocast off, on detached inputs, so the placeholder count and
        the forward's selection agree whatever the training precision."""
        import torch

        rows = self.rows_per_clip
        x = projector_input.detach()
        if x.numel() % (rows * x.shape[-1]):
            raise ModelError(
                f"compressed {self.family.model_type} model: the projector got "
                f"{x.shape[0]} rows, not whole clips of {rows}; is the batch mixed?"
            )
        device_type = x.device.type
        with torch.no_grad(), torch.autocast(device_type, enabled=False):
            x = x.reshape(-1, rows, x.shape[-1]).float()
            self.selector.to(x.device)
            self.head.to(x.device)
            return keep_mask(self.head(self.selector(x)))

    def counts(self, model: Any, tensors: dict[str, Any]) -> list[int]:
        """Placeholder tokens per clip for the family's audio tensors of a batch of clips."""
        import torch

        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        moved = {
            k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if isinstance(v, torch.Tensor) else v
            for k, v in tensors.items()
        }
        with torch.no_grad():
            states = self.family.encoder_states(model, moved)
        keep = self.keep(self.family.projector_input(self.model_config, states))
        return [int(n) for n in keep.sum(dim=1).tolist()]

    def install(self, model: Any) -> None:
        """Hook the projector of ``model`` (after any PEFT wrapping) to keep the selected rows."""
        self.remove()
        compressor = self

        def select_rows(module: Any, args: tuple, output: Any) -> Any:
            return output.reshape(-1, output.shape[-1])[compressor.keep(args[0]).reshape(-1)]

        self.handles.append(projector_module(model, self.family).register_forward_hook(select_rows))

    def remove(self) -> None:
        """Take the hook off (before PEFT copies the projector: a copy would carry it twice)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def find(sources: list[str]) -> Path | None:
    """The first of ``sources`` (local dirs; an adapter, its chain, its base) that is compressed."""
    for source in sources:
        if (Path(source) / COMPRESSION_FILE).is_file():
            return Path(source)
    return None


def load_compressor(folder: Path, family: Any, model: Any) -> AudioCompressor:
    """The compressor of the checkpoint ``folder`` for ``model`` (its LM embeddings, its config)."""
    import copy

    from safetensors.torch import load_file

    from speechsum_cli.families.ctc_head import load_head

    spec = json.loads((folder / COMPRESSION_FILE).read_text())
    if spec.get("format") != FORMAT or spec.get("method") != METHOD:
        raise ModelError(
            f"'{folder / COMPRESSION_FILE}' describes compression {spec.get('method')!r} "
            f"(format {spec.get('format')}); this speechsum reads {METHOD!r} format {FORMAT}. "
            "Upgrade speechsum, or run align again."
        )
    if spec.get("model_type") != family.model_type:
        raise ModelError(
            f"'{folder / COMPRESSION_FILE}' was written for {spec.get('model_type')}, "
            f"but the model is {family.model_type}."
        )
    selector = copy.deepcopy(projector_module(model, family)).float().eval().requires_grad_(False)
    selector.load_state_dict(load_file(str(folder / SELECTOR_FILE)), strict=True)
    selector._forward_hooks.clear()  # a copy of a hooked projector must not select twice
    head, _ = load_head(folder, model.get_input_embeddings().weight)
    head.requires_grad_(False).eval()
    return AudioCompressor(family, model.config, selector, head, folder)


def write(folder: Path, family: Any, model: Any, *, kept_per_clip: float) -> None:
    """Mark the checkpoint being written in ``folder`` (align's output, head already saved) as
    compressed: the selector (its projector, now) and ``compression.json``."""
    from safetensors.torch import save_file

    from speechsum_cli.families.ctc_head import HEAD_FILE

    projector = projector_module(model, family)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in projector.state_dict().items()}
    (folder / ALIGNMENT_DIR).mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / SELECTOR_FILE), metadata={"format": "speechsum-selector-1"})
    spec = {
        "format": FORMAT,
        "method": METHOD,
        "model_type": family.model_type,
        "head": HEAD_FILE,
        "selector": SELECTOR_FILE,
        "rows_per_clip": family.compression_rows(model.config),
        "kept_per_clip_heldout": round(kept_per_clip, 2),
    }
    (folder / COMPRESSION_FILE).write_text(json.dumps(spec, indent=2) + "\n")


def carry(compressor: AudioCompressor | None, out: Path) -> None:
    """Copy the compressed checkpoint's ``alignment/`` folder into the output ``out`` being written."""
    if compressor is None:
        return
    target = Path(out) / ALIGNMENT_DIR
    if target.resolve() == (compressor.folder / ALIGNMENT_DIR).resolve():
        return
    shutil.copytree(compressor.folder / ALIGNMENT_DIR, target, dirs_exist_ok=True)
