"""end_sessions on a real JupyterHub database (sqlite file, JupyterHub's own ORM)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from jupyterhub import orm

from teamhub.accounts.sessions import end_sessions, end_sessions_in_db

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _db(path: Path):
    return orm.new_session_factory(f"sqlite:///{path}")()


def _token(db, user, value: str, *, client: str = "jupyterhub", note: str = "",
           created: datetime = T0, session_id: str | None = None) -> None:
    token = orm.APIToken(user=user, client_id=client, note=note, created=created,
                         session_id=session_id, scopes=[])
    token.token = value
    db.add(token)


def _setup(path: Path) -> str:
    db = _db(path)
    for ident in ("jupyterhub", "jupyterhub-user-ada"):
        db.add(orm.OAuthClient(identifier=ident))
    ada = orm.User(name="ada")
    db.add(ada)
    db.commit()
    server = orm.Server(base_url="/user/ada/")
    db.add(server)
    spawner = orm.Spawner(user=ada, name="", server=server, started=T0 + timedelta(seconds=2))
    db.add(spawner)
    _token(db, ada, "oauth-browser-1", client="jupyterhub-user-ada", session_id="s1")
    _token(db, ada, "api-made-by-user", note="my script")
    _token(db, ada, "server-own-token", note="Server at /user/ada/",
           created=T0 + timedelta(milliseconds=1))
    # A token the user made to look like the server's, after the server started.
    _token(db, ada, "server-lookalike", note="Server at /user/ada/",
           created=T0 + timedelta(seconds=60))
    db.commit()
    cookie_id = ada.cookie_id
    db.close()
    return cookie_id


def _left(path: Path) -> set[str]:
    db = _db(path)
    try:
        return {t.note or t.client_id for t in db.query(orm.APIToken)} | {
            f"cookie:{u.cookie_id}" for u in db.query(orm.User)}
    finally:
        db.close()


def test_browser_sessions_end_and_api_tokens_stay(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    cookie_id = _setup(path)
    db = _db(path)
    ended = end_sessions(db, db.query(orm.User).one(), api_tokens=False)
    db.close()
    assert ended.as_dict() == {"oauth_tokens": 1, "api_tokens": 0}
    left = _left(path)
    assert f"cookie:{cookie_id}" not in left
    assert "jupyterhub-user-ada" not in left and "my script" in left


def test_api_tokens_go_too_except_the_running_servers_own(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite"
    _setup(path)
    ended = end_sessions_in_db(path, "ada", api_tokens=True)
    assert ended is not None and ended.as_dict() == {"oauth_tokens": 1, "api_tokens": 2}
    db = _db(path)
    remaining = [t for t in db.query(orm.APIToken)]
    assert len(remaining) == 1 and remaining[0].match("server-own-token")
    db.close()
    assert end_sessions_in_db(path, "nobody", api_tokens=True) is None
    assert end_sessions_in_db(tmp_path / "missing.sqlite", "ada", api_tokens=True) is None
