"""Database URLs as settings see them: which backend, and how to show one without its password.

Plain string work (no SQLAlchemy), so settings and the CLI can use it without the import.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_PASSWORD_RE = re.compile(r"(://[^:/@]*:)([^@]*)(@)")

EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"


def mask(url: str) -> str:
    """URL with its password replaced by ***, for messages and logs (never the real one)."""
    return _PASSWORD_RE.sub(r"\1***\3", str(url))


def is_postgresql(url: str) -> bool:
    return str(url).startswith(("postgresql:", "postgresql+", "postgres:"))


def problem(url: str) -> str | None:
    """Why URL cannot be `db.url` (for the settings check), or None if it can."""
    if url == "":
        return None
    if not is_postgresql(url):
        return f"empty (the embedded sqlite files) or {EXAMPLE}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return f"a valid URL such as {EXAMPLE}"
    if not parts.hostname or parts.path.strip("/") == "":
        return f"a URL with a host and a database name, such as {EXAMPLE}"
    return None
