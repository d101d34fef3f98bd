"""What may reach a log or ``speechsum.json``: configs without secrets, URLs without credentials.

Low on purpose (imports nothing of the package): the manifest writer and the LLM layer both use it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SECRET_KEY = re.compile(r"(?:^|_)(?:api_?key|token|secret|password|credentials?)$", re.IGNORECASE)
"""Config keys ending in these are never written (``api_key_env``, a variable *name*, and counts
such as ``max_tokens`` are kept)."""


def public_url(url: str | None) -> str | None:
    """``url`` fit for a log or ``speechsum.json``: no user:password, no query string, no fragment
    (where a server's key could hide)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """Drop keys that could hold secrets; keep ``*_env`` (names of variables, not values); URLs
    lose their user:password and query string."""
    clean: dict[str, Any] = {}
    for key, value in config.items():
        if SECRET_KEY.search(key):
            continue
        if key.endswith("url") and isinstance(value, str):
            value = public_url(value)  # no user:password@ or ?key= of an endpoint
        clean[key] = public_config(value) if isinstance(value, dict) else value
    return clean


__all__ = ["SECRET_KEY", "public_config", "public_url"]
