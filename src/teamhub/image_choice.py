"""Which container images a user may choose (`docker.images`), and the spawn page's choice.

`docker.image` is the default and everyone's; `docker.images` lists more, each with a
display name and, optionally, the groups whose members may use it:

    [docker.images.ml]
    display = "Python with PyTorch"
    groups = ["ml"]

A user with more than one allowed image gets a choice on the spawn page (JupyterHub's
options form); whatever arrives (form, query or the REST API's `{"image": ...}`) is
checked against the same list, so a tampered value is refused, never run.

Plain logic: nothing here imports JupyterHub or talks to Docker.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ImageError

FIELDS = ("display", "groups")
# A teamhub image name (`ml`) or a local Docker reference (`myorg/lab:3`, `repo@sha256:...`).
REFERENCE_RE = re.compile(r"[a-z0-9][a-z0-9._/-]{0,200}(:[A-Za-z0-9_.-]{1,128})?"
                          r"(@sha256:[0-9a-f]{64})?")
GROUP_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
FORM_FIELD = "image"


@dataclass(frozen=True)
class ImageOption:
    """One image a user may pick: its `docker.image(s)` name and what the page shows."""

    name: str
    display: str


def check_table(value: Mapping[str, Any]) -> str | None:
    """None if VALUE is a valid `docker.images` table, else what it must be."""
    for name, entry in value.items():
        if not REFERENCE_RE.fullmatch(name):
            return (f"keyed by image names or local references such as ml or myorg/lab:3 "
                    f"(not {name[:40]!r})")
        if not isinstance(entry, Mapping):
            return f"a table per image, e.g. [docker.images.{name}] display = \"...\""
        for key, field in entry.items():
            if key not in FIELDS:
                return f"tables whose keys are display and groups ({name!r} has {key!r})"
            if key == "display" and (not isinstance(field, str) or not field.strip()):
                return f"tables whose display is a non-empty string ({name!r})"
            if key == "groups" and (not isinstance(field, list) or not all(
                    isinstance(g, str) and GROUP_RE.fullmatch(g) for g in field)):
                return f"tables whose groups is a list of group names ({name!r})"
    return None


def allowed(default: str, table: Mapping[str, Mapping[str, Any]],
            user_groups: Iterable[str]) -> list[ImageOption]:
    """The images this user may run: the default first, then the table's in its order.

    An entry without `groups` is everyone's; with groups, it is for their members only.
    The default is everyone's whatever its entry says (it is what runs when nobody chose).
    """
    groups = set(user_groups)

    def display(name: str) -> str:
        return str((table.get(name) or {}).get("display") or name)

    found = [ImageOption(default, display(default))]
    for name, entry in table.items():
        wanted = set(entry.get("groups") or [])
        if name != default and (not wanted or wanted & groups):
            found.append(ImageOption(name, display(name)))
    return found


def choose(user_options: Any, options: list[ImageOption]) -> str:
    """The image USER_OPTIONS asks for (the default when it asks for none), or ImageError
    naming the allowed ones: a value outside OPTIONS is never run."""
    if not isinstance(user_options, Mapping):
        raise ImageError("the server options must be an object such as {\"image\": \"NAME\"}")
    value = user_options.get(FORM_FIELD)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # a form field as JupyterHub passes it through: a list of strings
    if value is None or value == "":
        return options[0].name
    names = [o.name for o in options]
    if isinstance(value, str) and value in names:
        return value
    shown = repr(value)[:60] if isinstance(value, str) else type(value).__name__
    raise ImageError(f"image {shown} is not allowed", f"choose one of: {', '.join(names)}")


def from_form(form_data: Mapping[str, list[str]]) -> dict[str, Any]:
    """The spawn form's fields as user_options: only the image, as one string."""
    values = form_data.get(FORM_FIELD) or []
    return {FORM_FIELD: values[0]} if len(values) == 1 else (
        {FORM_FIELD: list(values)} if values else {})


def form_html(options: list[ImageOption], selected: str = "") -> str:
    """The spawn page's choice; empty (no form: start at once) with nothing to choose."""
    if len(options) < 2:
        return ""
    if selected not in {o.name for o in options}:
        selected = options[0].name
    rows = "".join(
        f'<option value="{html.escape(o.name)}"'
        f'{" selected" if o.name == selected else ""}>{html.escape(o.display)}</option>'
        for o in options)
    return ('<div class="form-group">'
            '<label for="teamhub-image">Image for your server</label>'
            f'<select class="form-control" id="teamhub-image" name="{FORM_FIELD}">{rows}'
            '</select></div>')
