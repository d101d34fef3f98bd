"""Outputs get the permissions of ordinary files (the umask's), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_file_written_atomically_is_readable_by_group_and_others(tmp_path, umask_022):
    from speechsum_cli.fs import atomic_write_text

    path = atomic_write_text(tmp_path / "summary.txt", "hello\n")
    beside = tmp_path / "beside.txt"
    beside.write_text("plain open()\n")
    assert mode(path) == mode(beside) == 0o644


def test_a_file_follows_a_stricter_umask_too(tmp_path):
    from speechsum_cli.fs import atomic_write_text

    old = os.umask(0o077)
    try:
        path = atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_an_output_directory_and_what_libraries_wrote_into_it_are_ordinary(tmp_path, umask_022):
    """safetensors writes 0600 files: the atomic output dir gives them the umask's mode on rename."""
    import torch
    from safetensors.torch import save_file

    from speechsum_cli.manifest import atomic_output_dir, write_manifest

    out = tmp_path / "ckpt"
    with atomic_output_dir(out) as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "adapter_model.safetensors"))
        (tmp / "base").mkdir()
        save_file({"w": torch.zeros(2)}, str(tmp / "base" / "model.safetensors"))
        write_manifest(tmp, stage="test", config={})
    assert mode(out) == 0o755 and mode(out / "base") == 0o755
    for name in ("adapter_model.safetensors", "base/model.safetensors", "speechsum.json"):
        assert mode(out / name) == 0o644, name

