"""Atomic writes: an interrupted command never leaves a file or directory that looks complete.

Temp files come from ``mkstemp`` (mode 0600) and some libraries write their own that way
(safetensors): every output is given the permissions of an ordinary file before it is renamed
into place — ``0666`` minus the umask (``0777`` for directories and executables).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o666
DIR_MODE = 0o777


def current_umask() -> int:
    """The process umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_mode(path: Path, umask: int | None = None) -> int:
    """The mode an ordinary ``open()``/``mkdir`` would have given ``path`` under the umask."""
    umask = current_umask() if umask is None else umask
    executable = path.is_dir() or bool(path.stat().st_mode & 0o111)
    return (DIR_MODE if executable else FILE_MODE) & ~umask


def make_ordinary(root: Path) -> None:
    """Give ``root`` and everything under it the umask's permissions (symlinks are left alone)."""
    umask = current_umask()
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for path in paths:
        if not path.is_symlink():
            os.chmod(path, ordinary_mode(path, umask))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temp file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, FILE_MODE & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield a temp dir beside ``out`` to write into; on success what was written there gets
    ordinary permissions (:func:`make_ordinary`, as in every stage's output dir) and replaces the
    same names in ``out`` (created if missing; other files in it are left alone); on failure the
    temp dir is removed. For writers that may target an existing folder (``build_tiny``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        make_ordinary(tmp)
        if not out.exists():
            os.replace(tmp, out)
            return
        for entry in sorted(tmp.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
