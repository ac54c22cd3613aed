"""The one rule for hub user names, and how they map onto Linux account names.

Every place that accepts a hub user name (CLI, login form, spawner) goes through
`canonical_name`, so "Ada", "ada " and fullwidth "ａｄａ" are all the same person
and can never become two Linux accounts or a path outside the home root.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import AccountError

# Linux user names are at most 32 characters; the prefix setting allows up to 8,
# so 24 for the hub name keeps prefix + name valid for useradd.
MAX_NAME_LENGTH = 24

# Checked before any normalisation so that a huge input costs nothing to reject.
MAX_RAW_LENGTH = 64

# Only the start of a bad value is echoed: error messages end up in logs and
# web pages, and must not be a way to smuggle in (or blow up) arbitrary text.
_ECHO_LENGTH = 32

# Existing Linux account names as PAM mode accepts them (useradd's default
# NAME_REGEX, lower case only).
LINUX_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

_NAME_RE = re.compile(rf"[a-z][a-z0-9_-]{{0,{MAX_NAME_LENGTH - 1}}}")

ALLOWED = f"1 to {MAX_NAME_LENGTH} of a-z, 0-9, '_', '-', starting with a letter (case is ignored)"


def _shown(raw: str) -> str:
    """A short, printable rendering of a bad value for an error message."""
    shown = repr(raw[:_ECHO_LENGTH])
    if len(shown) > 2 * _ECHO_LENGTH:  # escapes (\x00, \U000e0001) can make repr long
        shown = shown[: 2 * _ECHO_LENGTH] + "..."
    elif len(raw) > _ECHO_LENGTH:
        shown += "..."
    return shown if len(raw) <= _ECHO_LENGTH else f"{shown} ({len(raw)} chars)"


def canonical_name(raw: str) -> str:
    """RAW as the canonical hub user name, or AccountError saying what is allowed."""
    if not isinstance(raw, str):
        raise AccountError(
            f"a user name must be text, not {type(raw).__name__}", f"use {ALLOWED}"
        )
    if len(raw) > MAX_RAW_LENGTH:
        raise AccountError(f"user name {_shown(raw)} is too long", f"use {ALLOWED}")
    # Control characters are refused even at the ends (where strip() would
    # quietly drop "\n" or "\t"): a name that differs from what is visible is
    # a log-injection and confusion risk, never a typo worth forgiving.
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in raw):
        raise AccountError(
            f"invalid user name {_shown(raw)}: it contains control characters", f"use {ALLOWED}"
        )
    # NFKC first so that lookalike forms (fullwidth, ligatures) collapse onto
    # the plain ASCII name instead of being rejected or, worse, kept distinct.
    name = unicodedata.normalize("NFKC", raw).strip().lower()
    if not _NAME_RE.fullmatch(name):
        raise AccountError(f"invalid user name {_shown(raw)}", f"use {ALLOWED}")
    return name


def system_name(hub_name: str, prefix: str) -> str:
    """The Linux account name for hub user HUB_NAME: PREFIX + its canonical name."""
    return prefix + canonical_name(hub_name)
