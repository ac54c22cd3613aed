"""The event schemas every server registers, built once in the fork server.

Each server starting registers jupyter_server's event schemas (contents, kernel actions,
gateway client): jupyter_events reads each YAML file, checks it against its metaschema
and builds a validator. Done after the fork, that is ~0.8 MB of every idle server's own
memory (bench/server_memory.py) spent on the very same result. Built here before the
fork, the objects stay pages shared with the fork server, and registering a schema by
its path takes the object built from it.

A file that changed since (inode, size or modification time differ) or was never built
here is read again, as jupyter_events would. The built objects are never changed after
they are made (jupyter_events keeps listeners and modifiers in the logger, not in the
schema), and each server is its own process: nothing one server does reaches another.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any

from jupyter_events.schema import EventSchema
from jupyter_events.schema_registry import SchemaRegistry

Stamp = tuple[int, int, int]

_built: dict[str, tuple[Stamp, EventSchema]] = {}
_register = SchemaRegistry.register


def _stamp(path: str) -> Stamp:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def prebuilt(path: PurePath) -> EventSchema | None:
    """The schema built from PATH before the fork, if the file is still the same."""
    found = _built.get(os.fspath(path))
    if found is None:
        return None
    try:
        same = _stamp(os.fspath(path)) == found[0]
    except OSError:
        return None  # gone: jupyter_events says so in its own words
    return found[1] if same else None


def _register_prebuilt(self: SchemaRegistry, schema: Any) -> EventSchema:
    if isinstance(schema, PurePath):
        schema = prebuilt(schema) or schema
    return _register(self, schema)


def server_schema_paths() -> list[Path]:
    """jupyter_server's own schema files: the ones every server registers."""
    try:  # deferred: the hub imports this module too (forkserver), and never needs it
        from jupyter_server import DEFAULT_EVENTS_SCHEMA_PATH
    except ImportError:
        return []
    return sorted(Path(DEFAULT_EVENTS_SCHEMA_PATH).glob("*/v*.yaml"))


def prebuild(paths: list[Path]) -> list[str]:
    """Build PATHS' schemas and have every later registration by path use them; returns
    the paths built (one that jupyter_events refuses is left to each server to refuse)."""
    done = []
    for path in paths:
        key = os.fspath(path)
        try:
            stamp = _stamp(key)
            _built[key] = (stamp, EventSchema(path))
        except Exception:  # noqa: BLE001,S112 - the server reports its own schema errors
            continue
        done.append(key)
    SchemaRegistry.register = _register_prebuilt  # type: ignore[method-assign]
    return done
