"""user_admin's texts, shared by `teamhub user` and the console's Users page."""

from __future__ import annotations

import pytest

from teamhub.accounts.store import Account
from teamhub.errors import AccountError
from teamhub.user_admin import Removal, check_builtin, ended_text


def _account(name: str = "ada") -> Account:
    return Account(name=name, admin=False, created="2026-01-01 00:00:00", pending=False,
                   blocked=False)


def test_the_removal_question_names_what_goes() -> None:
    managed = Removal(_account(), "jupyter-ada", managed=True)
    assert managed.question() == "Remove hub user ada and Linux account jupyter-ada with its home?"
    assert managed.question(keep_home=True) == "Remove hub user ada and Linux account jupyter-ada?"
    assert Removal(_account(), "jupyter-ada", managed=False).question() == "Remove hub user ada?"


def test_ended_text_says_where() -> None:
    assert ended_text("ada", "none", {}) == "ada has no hub sessions to end"
    assert ended_text("ada", "hub", {"api_tokens": 2}) == (
        "ended every browser session of ada by the running hub; revoked 2 API token(s)")
    assert "no hub is running" in ended_text("ada", "database", {"api_tokens": 0})


def test_pam_mode_refuses_what_only_builtin_accounts_have() -> None:
    with pytest.raises(AccountError, match="auth.mode is pam.*deluser"):
        check_builtin({"auth.mode": "pam"}, "remove")
    check_builtin({"auth.mode": "pam"}, "logout")
    check_builtin({"auth.mode": "builtin"}, "remove")
