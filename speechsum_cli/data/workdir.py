"""Resumable work state for long row-by-row stages (synth now; pairs later).

A hidden directory beside the output, ``.OUT.partial/``, holds ``state.json`` (the fingerprint of
the settings that decide the rows) and append-only jsonl shards with one record per finished job.
Every record is flushed as it is written, so after Ctrl-C or ``kill -9`` a re-run reads the
shards, skips the jobs already recorded and continues; a torn last line is discarded. The
directory is removed once the final output has been renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from speechsum_cli.errors import InputError
from speechsum_cli.fs import atomic_write_text

STATE_FILE = "state.json"
SHARD_GLOB = "shard-*.jsonl"


def work_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


class WorkDir:
    """Open (or create) the work dir of ``out`` for a job with ``fingerprint``."""

    def __init__(self, out: Path, fingerprint: dict[str, Any], *, restart: bool = False) -> None:
        self.path = work_dir_for(out)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        state = self.path / STATE_FILE
        if restart and self.path.exists():
            shutil.rmtree(self.path)
        if state.is_file():
            previous = json.loads(state.read_text()).get("fingerprint", {})
            changed = sorted(
                k for k in set(previous) | set(self.fingerprint) if previous.get(k) != self.fingerprint.get(k)
            )
            if changed:
                raise InputError(
                    f"'{self.path}' holds unfinished work for '{out}' made with different settings "
                    f"({', '.join(changed)}). Re-run with the same flags to resume it, or pass "
                    "--restart to discard it (paid responses stay in the response cache)."
                )
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(state, json.dumps({"fingerprint": self.fingerprint}, indent=2) + "\n")
        self._repair_torn_lines()

    @property
    def resumed(self) -> bool:
        return any(self.path.glob(SHARD_GLOB))

    def _repair_torn_lines(self) -> None:
        """Cut a half-written last line (the process died mid-write)."""
        for shard in sorted(self.path.glob(SHARD_GLOB)):
            data = shard.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(shard, "r+b") as fh:
                    fh.truncate(data.rfind(b"\n") + 1)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every finished-job record, shard by shard (streamed: memory stays flat)."""
        for shard in sorted(self.path.glob(SHARD_GLOB)):
            with open(shard, encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)

    def discard(self, drop: Callable[[dict[str, Any]], bool]) -> int:
        """Rewrite the shards without the records ``drop`` selects (their jobs become pending again).

        The kept records go to one new shard first; the old shards are deleted after it is in
        place, so an interruption leaves at worst the old records (first seen wins on reading).
        Nothing is rewritten when no record is selected (synth asks on every run).
        """
        old = sorted(self.path.glob(SHARD_GLOB))
        if not old or not any(drop(record) for record in self.records()):
            return 0
        run = 1 + max(int(p.name.split("-")[1]) for p in old)
        tmp = self.path / f".compact-{run:04d}.tmp"
        dropped = 0
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in self.records():
                if drop(record):
                    dropped += 1
                else:
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / f"shard-{run:04d}-00000.jsonl")
        for shard in old:
            shard.unlink()
        return dropped

    def writer(self, shard_rows: int) -> ShardWriter:
        return ShardWriter(self.path, shard_rows)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class ShardWriter:
    """Appends records to ``shard-RUN-NNNNN.jsonl`` files of at most ``shard_rows`` lines."""

    def __init__(self, folder: Path, shard_rows: int) -> None:
        self.folder = folder
        self.shard_rows = shard_rows
        self.run = 1 + max((int(p.name.split("-")[1]) for p in folder.glob(SHARD_GLOB)), default=0)
        self._index = 0
        self._rows = 0
        self._fh: TextIO | None = None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None or self._rows >= self.shard_rows:
            self.close()
            name = f"shard-{self.run:04d}-{self._index:05d}.jsonl"
            self._fh = open(self.folder / name, "a", encoding="utf-8")
            self._index += 1
            self._rows = 0
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()  # in the OS after every row: survives kill -9 (not a power cut)
        self._rows += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
