"""On-disk response cache (stdlib sqlite3): a re-run sends no request it already paid for."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

CACHE_FILE = "responses.sqlite"


def cache_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that decides a response (model, messages, params,
    prompt_version, attempt)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """key -> (text, input_tokens, output_tokens). Safe to share between processes (sqlite locks)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CACHE_FILE
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, text TEXT,"
            " input_tokens INTEGER, output_tokens INTEGER, created REAL DEFAULT (strftime('%s','now')))"
        )

    def get(self, key: str) -> tuple[str, int, int] | None:
        row = self._db.execute(
            "SELECT text, input_tokens, output_tokens FROM responses WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (row[0], int(row[1]), int(row[2]))

    def put(self, key: str, model: str, text: str, input_tokens: int, output_tokens: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, model, text, input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?)",
            (key, model, text, input_tokens, output_tokens),
        )

    def close(self) -> None:
        self._db.close()
