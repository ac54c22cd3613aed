"""Changes the CLI makes to JupyterHub's database file itself, only while no hub runs.

A running hub keeps users and tokens in memory and writes them back: a change
made behind it is lost or breaks it (StaleDataError, then 500s). Callers make
sure no hub runs first (`hubclient.HubNotRunning`, or `teamhub up` before it
starts the hub). Session ends live with the hub's own session code
(accounts/sessions.py `end_sessions_in_db`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import TeamhubError


def _session(db: Path) -> Any:
    # jupyterhub.orm pulls in SQLAlchemy and JupyterHub (~0.5 s): only imported when needed.
    from jupyterhub import orm

    try:
        return orm.new_session_factory(f"sqlite:///{db}")()
    except orm.DatabaseSchemaMismatch:
        raise TeamhubError(f"the hub database {db} is from another JupyterHub version",
                           "run `teamhub upgrade` first") from None


def delete_user(db: Path, name: str) -> bool:
    """Remove user NAME (servers, tokens, group memberships) from DB; False if not there."""
    if not db.exists():
        return False
    from jupyterhub import orm  # deferred with _session's import

    session = _session(db)
    try:
        user = session.query(orm.User).filter_by(name=name).first()
        if user is None:
            return False
        session.delete(user)
        session.commit()
        return True
    finally:
        session.close()


def revoke_service_tokens(db: Path, service: str) -> int:
    """Delete every API token of SERVICE from DB; returns how many there were."""
    if not db.exists():
        return 0
    from jupyterhub import orm  # deferred with _session's import

    session = _session(db)
    try:
        found = session.query(orm.Service).filter_by(name=service).first()
        if found is None:
            return 0
        tokens = list(found.api_tokens)
        for token in tokens:
            session.delete(token)
        session.commit()
        return len(tokens)
    finally:
        session.close()
