"""``speechsum.json``: what produced an output directory, from what, with which counts.

Every output directory (dataset or checkpoint) gets one. It holds the stage, version, the resolved
config (secrets never written: configs hold the *name* of a key's environment variable, never the
key), the inputs with their own manifests (lineage), row counts in/out/dropped with reasons,
metrics and wall time.

Output directories are written atomically: into a hidden temp dir beside the target, renamed into
place only when complete, so an interrupted stage never leaves a directory that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

from speechsum_cli import __version__
from speechsum_cli.errors import InputError
from speechsum_cli.fs import atomic_write_text, make_ordinary
from speechsum_cli.redact import public_config

MANIFEST_NAME = "speechsum.json"
FAILURES_KEY = "llm_failures"
"""Where ``speechsum.json`` records a run's failed LLM calls (``--retry-failed`` reads it)."""


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The ``speechsum.json`` of a directory (or of a file's directory), if any."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    candidate = folder / MANIFEST_NAME
    if not candidate.is_file():
        return None
    try:
        return json.loads(candidate.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def input_record(path: str | Path) -> dict[str, Any]:
    """One entry of ``inputs``: the path and, when it has one, its own manifest (lineage)."""
    record: dict[str, Any] = {"path": str(path)}
    manifest = read_manifest(path) if Path(path).exists() else None
    if manifest is not None:
        record["manifest"] = manifest
    return record


def write_manifest(
    out_dir: str | Path,
    *,
    stage: str,
    config: Any,
    inputs: list[str | Path] | None = None,
    counts: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    wall_time: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``speechsum.json`` into ``out_dir`` (atomically) and return its path."""
    payload: dict[str, Any] = {
        "stage": stage,
        "speechsum_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": public_config(_jsonable(config)),
        "inputs": [input_record(p) for p in inputs or []],
        "counts": _jsonable(counts or {}),
        "metrics": _jsonable(metrics or {}),
        "wall_time_seconds": wall_time,
    }
    if extra:
        payload.update(_jsonable(extra))
    return atomic_write_text(Path(out_dir) / MANIFEST_NAME, json.dumps(payload, indent=2) + "\n")


def recorded_failures(manifest: dict[str, Any] | None) -> int:
    """Failed LLM calls an earlier run recorded in its ``speechsum.json`` (0: none, or no
    manifest)."""
    record = (manifest or {}).get(FAILURES_KEY) or {}
    return int(record.get("failed") or 0)


def retry_replaces(out: Path, retry_failed: bool) -> bool:
    """Whether ``--retry-failed`` may replace ``out``: its speechsum.json must record failed calls.

    Stages that are not resumable (pairs, eval) retry by running again: the calls that succeeded
    come from the response cache, so only the failed ones are sent.
    """
    if not retry_failed or not out.exists():
        return False
    if recorded_failures(read_manifest(out)) == 0:
        raise InputError(
            f"--retry-failed: '{out}' records no failed request (its speechsum.json); "
            "there is nothing to retry. Pass --overwrite to redo it."
        )
    return True


def check_output_dir(out: Path, *, overwrite: bool, flag: str = "--out") -> None:
    """Refuse to replace an existing output unless asked to (checked before any work starts)."""
    if out.exists() and not overwrite:
        raise InputError(f"output '{out}' already exists. Choose another {flag}, or pass --overwrite to replace it.")
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' exists and is a file; {flag} must be a directory.")


@contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp dir beside ``out``; on success it replaces ``out``, on failure it is removed.

    Everything written into it gets ordinary permissions (the umask's) before the rename, whatever
    wrote it: safetensors, for one, writes its files with mode 0600.
    """
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    make_ordinary(tmp)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
