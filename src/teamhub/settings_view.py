"""The settings in effect as a page may show them: every setting with its origin, secrets
hidden.

What counts as a secret, by name and by form, so that settings added later are covered
without anyone remembering to mark them: a text value under a name that says password,
passwd, secret, token, credential or key (a setting, or a key inside a table such as
`spawner.environment`'s `HF_TOKEN`) is hidden, unless it is a file path (`tls.key` names
where the key lives, not the key) or empty; and the password of any URL
(`scheme://user:password@host`) is hidden wherever it appears.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .settings import SCHEMA, Settings, toml_literal

HIDDEN = "(hidden)"
_SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|secret|token|credential|key", re.I)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+(?=@)", re.I)


def secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def _plain_path(value: Any) -> bool:
    return isinstance(value, str) and (value == "" or os.path.isabs(value))


def masked(name: str, value: Any) -> Any:
    """VALUE (of a setting or table entry called NAME) with its secrets replaced by HIDDEN."""
    if isinstance(value, dict):
        return {k: masked(k if not secret_name(name) else name, v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(name, v) for v in value]
    if not isinstance(value, str):
        return value  # numbers and switches (`auth.min_password_length`) are no secrets
    if secret_name(name) and not _plain_path(value):
        return HIDDEN
    return _URL_PASSWORD.sub(lambda m: m.group("head") + HIDDEN, value)


@dataclass(frozen=True)
class Shown:
    key: str
    value: str  # as TOML, secrets hidden
    origin: str  # default, the settings file, or `env VAR`
    hidden: bool  # something in it was hidden


def shown_settings(settings: Settings) -> list[Shown]:
    """Every setting in schema order, as `teamhub config show` lists them, secrets hidden."""
    rows = []
    for setting in SCHEMA:
        raw = settings.values[setting.key]
        value = masked(setting.name, raw)
        rows.append(Shown(setting.key, toml_literal(value), settings.origins[setting.key],
                          value != raw))
    return rows
