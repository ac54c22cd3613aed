"""Raise sites give the fix as the error's hint, and str() stays the text the CLI printed
before hints existed (the old texts are written out here, not rebuilt from the code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from teamhub import images, settings
from teamhub.accounts import policy
from teamhub.errors import HubNotAnswering, TeamhubError
from teamhub.hubaccounts import hub_step
from teamhub.projects import model
from teamhub.system import names

USER_RULE = "use 1 to 24 of a-z, 0-9, '_', '-', starting with a letter (case is ignored)"


def _setting_with(predicate: Callable[[settings.Setting], Any]) -> settings.Setting:
    return next(s for s in settings.SCHEMA if predicate(s))


CASES: list[tuple[str, Callable[[], object], str]] = [
    ("boolean", lambda: settings.parse_text(settings.lookup("hub.stop_servers_on_shutdown"),
                                            "maybe", "TEAMHUB_X"),
     "TEAMHUB_X: hub.stop_servers_on_shutdown = 'maybe' is not a boolean; use true or false"),
    ("integer", lambda: settings.parse_text(settings.lookup("hub.port"), "eighty",
                                            "command line"),
     "command line: hub.port = 'eighty' is not an integer; e.g. 8000"),
    ("port range", lambda: settings.coerce(settings.lookup("hub.port"), 70000, "teamhub.toml"),
     "teamhub.toml: hub.port = 70000 is invalid; it must be a port number from 1 to 65535"),
    ("choice", lambda: settings.coerce(settings.lookup("hub.log_level"), "nope", "teamhub.toml"),
     "teamhub.toml: hub.log_level = 'nope' is not allowed; "
     "use one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'"),
    ("type", lambda: settings.coerce(settings.lookup("hub.port"), "x", "teamhub.toml"),
     "teamhub.toml: hub.port = 'x' is not an integer; expected e.g. hub.port = 8000"),
    ("user name too long", lambda: names.canonical_name("a" * 300),
     f"user name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'... (300 chars) is too long; {USER_RULE}"),
    ("user name invalid", lambda: names.canonical_name("bad name!"),
     f"invalid user name 'bad name!'; {USER_RULE}"),
    ("user name not text", lambda: names.canonical_name(5),  # type: ignore[arg-type]
     f"a user name must be text, not int; {USER_RULE}"),
    ("project upper-case", lambda: model.check_project_name("Data"),
     "project name 'Data' has upper-case letters; project names are lower-case only "
     "(try 'data')"),
    ("project invalid", lambda: model.check_project_name("../x"),
     "invalid project name '../x'; use 1 to 64 of lower-case a-z, 0-9, '_', '-', "
     "starting with a letter"),
    ("image name", lambda: images.check_name("Bad Name"),
     "image name 'Bad Name' is not valid; use lower-case letters, digits, '.', '_' or '-' "
     "(e.g. base)"),
    ("password short", lambda: policy.check_password("ann", "abc", 10),
     "the password for 'ann' is too short (3 characters); use at least 10 "
     "(a few random words work well)"),
    ("password has name", lambda: policy.check_password("annabel", "xxannabelxx12345", 10),
     "the password for 'annabel' contains the user name; choose another one"),
]


def _raised(action: Callable[[], object]) -> TeamhubError:
    with pytest.raises(TeamhubError) as info:
        action()
    return info.value


@pytest.mark.parametrize("label,action,old_text", CASES, ids=[c[0] for c in CASES])
def test_fix_is_the_hint_and_text_is_unchanged(label: str, action: Callable[[], object],
                                               old_text: str) -> None:
    exc = _raised(action)
    assert exc.hint, f"{label}: no hint in {exc!s}"
    assert str(exc) == old_text
    assert exc.message == old_text.removesuffix(f"; {exc.hint}")


def test_long_listings_are_hints() -> None:
    """The known-settings lists are the fix, not part of the problem."""
    exc = _raised(lambda: settings.lookup("hub.nonsense"))
    assert exc.message == "unknown setting 'hub.nonsense'"
    assert exc.hint.startswith("known settings: hub.ip, hub.port, ")
    assert str(exc).endswith(f", {settings.SCHEMA[-1].key} (see `teamhub config show`)")

    exc = _raised(lambda: settings.load("/nonexistent/teamhub.toml",
                                        environ={"TEAMHUB_HUB_NONSENSE": "1"}))
    assert exc.message == "environment variable TEAMHUB_HUB_NONSENSE names no setting"
    assert str(exc).startswith("environment variable TEAMHUB_HUB_NONSENSE names no setting; "
                               "known: TEAMHUB_HUB_IP, TEAMHUB_HUB_PORT, ")


def test_hub_step_keeps_the_hubs_hint_before_how_to_finish() -> None:
    def fail() -> None:
        with hub_step("user ann was deleted", "run `teamhub user logout ann`"):
            raise HubNotAnswering("the hub did not answer within 5 s", "try again")

    exc = _raised(fail)
    assert isinstance(exc, HubNotAnswering)
    assert exc.message == "user ann was deleted, but the hub did not answer within 5 s"
    assert exc.hint == "try again; run `teamhub user logout ann`"
    assert str(exc) == ("user ann was deleted, but the hub did not answer within 5 s; "
                        "try again; run `teamhub user logout ann`")


def test_missing_image_message_is_problem_then_fix() -> None:
    """One text for users (spawn failures); preflight and doctor show it as problem + fix."""
    assert images.missing_problem("base", "docker.image") == (
        "the container image teamhub/base:latest (docker.image = 'base') is not on this machine")
    assert images.missing_message("base", "docker.image") == (
        "the container image teamhub/base:latest (docker.image = 'base') is not on this "
        "machine; build it with `teamhub image build base`")
