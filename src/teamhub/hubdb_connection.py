"""The hub's own sqlite database, tuned for many small commits.

JupyterHub commits on its event loop, one commit per login, token, OAuth client,
spawner state change and activity report. In sqlite's default mode (rollback journal,
synchronous=FULL) each commit waits for several fsyncs: ~18 ms on this kind of disk,
so a burst of 100 logins and spawns spent seconds of the hub's only thread waiting for
the disk. In WAL mode with synchronous=NORMAL a commit is an append to the log
(~0.02 ms); the log is synced at checkpoints. A crash of the machine (not of the hub)
can lose the last commits, never corrupt the database: the hub then sees a server or
a token as it was a moment earlier, which it already copes with after a restart.
"""

from __future__ import annotations

import sqlite3
from typing import Any


class TunedConnection(sqlite3.Connection):
    """What sqlite3.connect makes for the hub (its `factory`): WAL, synchronous=NORMAL."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # WAL is a property of the file (kept once set); synchronous is per connection.
        self.execute("PRAGMA journal_mode=WAL")
        self.execute("PRAGMA synchronous=NORMAL")
