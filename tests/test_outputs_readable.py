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


def ordinary_modes(root: Path) -> dict[str, int]:
    """Mode of ``root`` and of everything under it that is not 0644 (files) / 0755 (dirs)."""
    paths = [root, *root.rglob("*")]
    return {str(p.relative_to(root)): mode(p) for p in paths if mode(p) != (0o755 if p.is_dir() else 0o644)}


def test_build_tiny_writes_a_checkpoint_as_readable_as_a_stage_output(tmp_path, umask_022):
    """README's first 'Only summarizing' step: model.safetensors came out 0600."""
    from speechsum_cli.families import get_family

    out = get_family("qwen2_audio").build_tiny(tmp_path / "tiny-qwen2-audio")
    assert (out / "model.safetensors").is_file()
    assert ordinary_modes(out) == {}
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-qwen2-audio"]  # no temp dir left
    (out / "notes.txt").write_text("mine\n")
    os.chmod(out / "notes.txt", 0o600)
    get_family("qwen2_audio").build_tiny(out)  # again into the same folder: replaces its files only
    assert mode(out / "notes.txt") == 0o600 and ordinary_modes(out) == {"notes.txt": 0o600}


def test_the_example_tiny_models_are_readable_too(tmp_path, umask_022):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    script = repo / "examples" / "make_tiny_models.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("whisper", "text-lm"):
        assert (tmp_path / "m" / name / "model.safetensors").is_file()
        assert ordinary_modes(tmp_path / "m" / name) == {}, name
