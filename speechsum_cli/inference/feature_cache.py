"""The frozen-encoder feature cache: each audio window's encoder output, computed once.

With the audio encoder frozen (the default of every training stage), the encoder's output for a
window depends only on its weights and its input features — not on the epoch, the stage or the
LoRA weights. :func:`attach` wraps the family's encoder module (``audio_encoder_prefixes[0]``) so
each window of a call is looked up by

    key = hash(encoder weights fingerprint, the window's input tensors: shapes, dtypes, bytes)

and only the misses run through the encoder. The input features already encode the audio content
and every feature setting (sampling rate, mel bins, padding, window), so a changed encoder, a
changed feature extractor or changed audio can never read a stale entry: it has another key.

On disk (:class:`FeatureCache`): one ``.npy`` per window under ``DIR/ab/abcdef....npy``, written to a
temporary file beside it and renamed into place, so a reader never sees half a file (kill -9 leaves
at most a ``.tmp-*`` file, removed by the next open) and several processes can share a directory
(two writers of one key write the same bytes; the rename is atomic). The directory is bounded:
past ``max_bytes`` the least recently used entries are deleted (reads refresh an entry's mtime).

The encoder is run in eval mode under ``no_grad`` for a miss; with the cache off a training step
runs it in train mode, which differs only if the encoder has active dropout (Whisper's checkpoints
use ``dropout: 0``).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from speechsum_cli.console import info, warn
from speechsum_cli.errors import InputError

CACHE_DIRNAME = ".feature-cache"
"""Default location: beside the run's output (``runs/sft`` -> ``runs/.feature-cache``), so every
stage writing into one runs folder shares it."""
DEFAULT_MAX_GB = 20.0
STALE_TMP_SECONDS = 3600
"""A ``.tmp-*`` file older than this is a write that was killed; the next open removes it."""
FORMAT_VERSION = "1"
"""Part of every key: bump it when the stored layout changes."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    evicted: int = 0
    skipped: int = 0
    """Calls not cached (encoder trainable, or a call shape the cache does not split)."""

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class FeatureCache:
    """A bounded directory of arrays keyed by hex digests; safe across processes and kill -9."""

    directory: Path
    max_bytes: int = int(DEFAULT_MAX_GB * 1e9)
    stats: CacheStats = field(default_factory=CacheStats)
    _size: int = -1

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"--feature-cache '{self.directory}': cannot create it ({exc.strerror}). "
                "Pass a writable directory, or --no-feature-cache."
            ) from None
        self._size = self._scan()

    def _entries(self) -> list[Path]:
        return [p for p in self.directory.glob("??/*.npy")]

    def _scan(self) -> int:
        """Total bytes of entries; removes temporary files of killed writers."""
        now, total = time.time(), 0
        for tmp in self.directory.glob("??/.tmp-*"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass
        for path in self._entries():
            try:
                total += path.stat().st_size
            except OSError:  # deleted by another process meanwhile
                pass
        return total

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):  # unreadable: treat as a miss and drop it
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # least recently used goes first
        except OSError:
            pass
        return array

    def put(self, key: str, array: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{os.getpid()}-{key}"
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
        self.stats.writes += 1
        self._size += path.stat().st_size
        if self._size > self.max_bytes:
            self.evict()

    def evict(self, keep: float = 0.9) -> None:
        """Delete least recently used entries until the directory is under ``keep * max_bytes``."""
        entries = []
        for path in self._entries():
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        entries.sort()
        total = sum(size for _, size, _ in entries)
        target = keep * self.max_bytes
        for _, size, path in entries:
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
            self.stats.evicted += 1
        self._size = total

    @property
    def size_bytes(self) -> int:
        return self._size


# --- keys -----------------------------------------------------------------------------------


def module_fingerprint(module: Any) -> str:
    """A digest of every parameter and buffer of ``module`` (names, dtypes, shapes, values)."""
    import torch

    digest = hashlib.blake2b(digest_size=16)
    digest.update(FORMAT_VERSION.encode())
    with torch.no_grad():
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def tensor_bytes(t: Any) -> bytes:
    import torch

    t = t.detach().to("cpu").contiguous()
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def window_key(fingerprint: str, parts: list[tuple[str, Any]]) -> str:
    """The key of one window: the encoder's fingerprint + each input's name, dtype, shape, bytes."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(fingerprint.encode())
    for name, value in parts:
        if hasattr(value, "shape"):
            digest.update(f"|{name}|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(tensor_bytes(value))
        else:
            digest.update(f"|{name}|{value!r}|".encode())
    return digest.hexdigest()


# --- the encoder wrapper --------------------------------------------------------------------


def _batched(value: Any, n: int) -> bool:
    """Whether ``value`` is a tensor with one entry per window of an ``n``-window call."""
    return hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1 and value.shape[0] == n


def _primary(output: Any) -> Any:
    """The tensor an encoder call returns: a tensor, or ``last_hidden_state`` of a ModelOutput."""
    if hasattr(output, "shape"):
        return output
    return getattr(output, "last_hidden_state", None)


@dataclass
class CachedEncoder:
    """Handle on an encoder whose ``forward`` reads and fills a :class:`FeatureCache`."""

    module: Any
    cache: FeatureCache
    fingerprint: str
    original: Any
    template: Any = None
    """An output of the encoder's own forward, once seen: a tensor or a ModelOutput, reused as the
    shape of what a call answered wholly from the cache returns."""

    def detach(self) -> None:
        """Restore the encoder's own forward."""
        self.module.forward = self.original

    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.module.parameters())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        first = next((a for a in (*args, *kwargs.values()) if hasattr(a, "shape")), None)
        wants_more = kwargs.get("output_hidden_states") or kwargs.get("output_attentions")
        if first is None or first.ndim < 1 or wants_more or not self.frozen():
            self.cache.stats.skipped += 1
            return self.original(*args, **kwargs)
        n = first.shape[0]
        named = [(f"arg{i}", a) for i, a in enumerate(args)] + sorted(kwargs.items())
        keys = [
            window_key(self.fingerprint, [(name, value[i] if _batched(value, n) else value) for name, value in named])
            for i in range(n)
        ]
        unique = list(dict.fromkeys(keys))
        stored = {key: self.cache.get(key) for key in unique}
        missing = [key for key in unique if stored[key] is None]
        self.cache.stats.hits += len(unique) - len(missing) + (n - len(unique))
        self.cache.stats.misses += len(missing)
        if self.template is None and not missing:
            missing = [keys[0]]  # learn what this encoder returns from one window, once per process
        if missing:
            rows = [keys.index(key) for key in missing]
            computed = self._run(rows, n, args, kwargs)
            if computed is None:
                self.cache.stats.skipped += 1
                return self.original(*args, **kwargs)  # an output the cache cannot split per window
            for j, key in enumerate(missing):
                array = computed[j].detach().to("cpu").numpy()
                if stored[key] is None:
                    self.cache.put(key, array)
                stored[key] = array
        found = [stored[key] for key in keys]
        hidden = torch.from_numpy(np.stack(found)).to(device=first.device, dtype=_primary(self.template).dtype)
        if hasattr(self.template, "shape"):
            return hidden
        return type(self.template)(last_hidden_state=hidden)

    def _run(self, rows: list[int], n: int, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The encoder's own output for ``rows`` of the call (eval mode, no grad), or None."""
        import torch

        index = torch.tensor(rows, device=next(a for a in (*args, *kwargs.values()) if hasattr(a, "shape")).device)
        sub_args = [a.index_select(0, index) if _batched(a, n) else a for a in args]
        sub_kwargs = {k: v.index_select(0, index) if _batched(v, n) else v for k, v in kwargs.items()}
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                output = self.original(*sub_args, **sub_kwargs)
        finally:
            self.module.train(was_training)
        computed = _primary(output)
        if computed is None or not _batched(computed, len(rows)):
            return None
        empty = computed[:0].detach()
        self.template = empty if hasattr(output, "shape") else type(output)(last_hidden_state=empty)
        return computed


def encoder_module(model: Any, family: Any) -> Any:
    """The family's audio encoder inside ``model`` (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_submodule(family.audio_encoder_prefixes[0])


def attach(model: Any, family: Any, cache: FeatureCache) -> CachedEncoder:
    """Make the family's encoder in ``model`` read and fill ``cache``; returns a handle to detach."""
    module = encoder_module(model, family)
    if isinstance(module.forward, CachedEncoder):
        module.forward.detach()
    handle = CachedEncoder(module, cache, module_fingerprint(module), module.forward)
    module.forward = handle
    return handle


def default_directory(out: Path) -> Path:
    return Path(out).resolve().parent / CACHE_DIRNAME


def open_cache(directory: Path | None, out: Path, max_gb: float) -> FeatureCache:
    """The cache at ``directory`` (``--feature-cache``) or beside ``out``."""
    if max_gb <= 0:
        raise InputError(f"--feature-cache-gb must be > 0, got {max_gb}.")
    return FeatureCache(directory or default_directory(out), int(max_gb * 1e9))


def cache_for_training(
    model: Any,
    family: Any,
    out: Path,
    *,
    enabled: bool,
    directory: Path | None,
    max_gb: float,
    train_encoder: bool = False,
) -> FeatureCache | None:
    """The feature cache a training stage uses (attached to ``model``'s encoder), or None when
    switched off or the encoder trains (its output then changes every step)."""
    if not enabled or train_encoder:
        return None
    if not family.encoder_output_per_window:
        info(
            f"feature cache: not used for {family.model_type}, whose encoder output for a clip "
            "depends on the other clips in its batch"
        )
        return None
    cache = open_cache(directory, out, max_gb)
    attach(model, family, cache)
    return cache


def cache_for_inference(lm: Any, out: Path) -> FeatureCache | None:
    """The feature cache beside ``out`` for a stage that only generates (eval, pairs): the same
    entries as training's, so a runs folder's students share their (frozen, identical) encoder's
    output, and k samples of one clip encode it once."""
    if not lm.family.encoder_output_per_window:
        return None
    encoder_module(lm.model, lm.family).requires_grad_(False)
    cache = FeatureCache(default_directory(out))
    attach(lm.model, lm.family, cache)
    return cache


def report(cache: FeatureCache) -> dict[str, Any]:
    """What goes into speechsum.json: where, how many hits/misses/writes, size."""
    stats = cache.stats.as_dict()
    stats.update(directory=str(cache.directory), size_gb=round(cache.size_bytes / 1e9, 3))
    if stats["hits"] + stats["misses"] == 0 and stats["skipped"]:
        warn("feature cache: no encoder call was cached (is the audio encoder trainable?)")
    return stats
