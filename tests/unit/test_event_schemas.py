"""Event schemas built in the fork server are what a server registering the same file
would build itself, and a file changed since is read again."""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_events import EventLogger
from jupyter_events.schema import EventSchema
from jupyter_events.schema_registry import SchemaRegistry
from jupyter_server.services.contents.manager import ContentsManager

from teamhub.spawners import event_schemas

CONTENTS_ID = "https://events.jupyter.org/jupyter_server/contents_service/v1"


@pytest.fixture
def prebuilding() -> Iterator[None]:
    """prebuild() changes jupyter_events for the whole process (it is meant for the fork
    server's); put it back for the other tests."""
    yield
    SchemaRegistry.register = event_schemas._register  # type: ignore[method-assign]
    event_schemas._built.clear()


def test_a_servers_registrations_take_the_schemas_built_before(prebuilding: None) -> None:
    paths = event_schemas.server_schema_paths()
    built = event_schemas.prebuild(paths)
    assert sorted(Path(p).parent.name for p in built) == [
        "contents_service", "gateway_client", "kernel_actions"]
    # As jupyter_server registers them: its contents manager, by path, in a logger of its own.
    logger = ContentsManager().event_logger
    schema = logger.schemas.get(CONTENTS_ID)
    assert schema is event_schemas.prebuilt(
        next(p for p in paths if p.parent.name == "contents_service"))
    fresh = EventSchema(next(p for p in paths if p.parent.name == "contents_service"))
    assert schema.properties == fresh.properties
    # It still validates: a good event goes out, a bad one is refused.
    out = io.StringIO()
    logger.register_handler(logging.StreamHandler(out))
    logger.emit(schema_id=CONTENTS_ID, data={"action": "get", "path": "a.ipynb"})
    assert '"path": "a.ipynb"' in out.getvalue()
    with pytest.raises(Exception, match="is not one of"):
        logger.emit(schema_id=CONTENTS_ID, data={"action": "steal", "path": "a.ipynb"})


def test_a_file_changed_since_is_read_again(tmp_path: Path, prebuilding: None) -> None:
    source = next(p for p in event_schemas.server_schema_paths()
                  if p.parent.name == "contents_service")
    path = tmp_path / "v1.yaml"
    shutil.copy(source, path)
    assert event_schemas.prebuild([path]) == [str(path)]
    built = event_schemas.prebuilt(path)
    assert built is not None

    path.write_text(path.read_text().replace("- get\n", "- get\n      - peek\n"))
    os.utime(path, ns=(1, 1))  # whatever the clock's resolution
    assert event_schemas.prebuilt(path) is None
    logger = EventLogger()
    logger.register_event_schema(path)
    schema = logger.schemas.get(CONTENTS_ID)
    assert schema is not built
    out = io.StringIO()
    logger.register_handler(logging.StreamHandler(out))
    logger.emit(schema_id=CONTENTS_ID, data={"action": "peek", "path": "a.ipynb"})
    assert '"action": "peek"' in out.getvalue()

    path.unlink()
    assert event_schemas.prebuilt(path) is None


def test_never_built_or_broken_files_are_jupyter_events_own_business(
        tmp_path: Path, prebuilding: None) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\n")  # no $id: jupyter_events refuses it
    assert event_schemas.prebuild([broken]) == []
    with pytest.raises(Exception, match=r"\$id"):
        EventLogger().register_event_schema(broken)
    other = next(p for p in event_schemas.server_schema_paths()
                 if p.parent.name == "kernel_actions")
    event_schemas._built.clear()
    logger = EventLogger()
    logger.register_event_schema(other)
    assert logger.schemas.get(
        "https://events.jupyter.org/jupyter_server/kernel_actions/v1") is not None
