"""The password policy: one table of rules, used by the CLI, signup, change and reset."""

from __future__ import annotations

import re

import pytest

from teamhub.accounts.policy import (
    MAX_LENGTH,
    PasswordPolicyError,
    check_password,
    common_passwords,
)

GOOD = "violet kettle harbour"


@pytest.mark.parametrize(
    ("name", "password", "min_length", "rule"),
    [
        ("ada", "tiny-pw", 10, "too short (7 characters); use at least 10"),
        ("ada", "abcdefghijk", 12, "too short (11 characters); use at least 12"),
        ("ada", "x" * (MAX_LENGTH + 1), 10, f"at most {MAX_LENGTH} characters"),
        ("ada", "y" * 1_000_000, 10, f"at most {MAX_LENGTH} characters"),
        ("ada", "good password\0x", 10, "control characters"),
        ("ada", "good\npassword here", 10, "control characters"),
        ("ada", "good\x1bpassword here", 10, "control characters"),
        ("ada", "good\x85password here", 10, "control characters"),  # C1 control
        ("adalovelace", "adalovelace", 10, "contains the user name"),
        ("adalovelace", "AdaLovelace", 10, "contains the user name"),
        ("adalovelace", "xx-AdaLovelace-2024", 10, "contains the user name"),
        ("ada", "qwertyuiop", 10, "commonly used"),
        ("ada", "1234567890", 10, "commonly used"),
        ("ada", "PASSWORD123", 10, "commonly used"),
        ("ada", "password123!!", 10, "commonly used"),  # common core + decoration
        ("ada", "Manchester2024!", 10, "commonly used"),
        ("ada", None, 10, "must be text"),
        ("ada", b"bytes password", 10, "must be text"),
    ],
)
def test_refused(name: str, password: object, min_length: int, rule: str) -> None:
    with pytest.raises(PasswordPolicyError, match=re.escape(rule)) as info:
        check_password(name, password, min_length)
    if isinstance(password, str) and password.casefold() != name.casefold():
        assert password not in str(info.value)  # never echoed


@pytest.mark.parametrize(
    ("name", "password", "min_length"),
    [
        ("ada", GOOD, 10),
        ("ada", "x7!Kp2#qLm", 10),           # exactly the minimum
        ("ada", "z" * MAX_LENGTH, 10),        # exactly the cap
        ("ada", "ünïcödé pässwörd", 10),
        ("a", "a sentence with the letter a", 10),  # 1-2 letter names: only equality counts
        ("bob", "correct horse battery staple", 10),
        ("ada", "  spaces at both ends  ", 10),  # kept as typed, not stripped
    ],
)
def test_accepted(name: str, password: str, min_length: int) -> None:
    check_password(name, password, min_length)


def test_common_list_is_loaded_from_the_package() -> None:
    common = common_passwords()
    assert len(common) > 20_000
    assert "password" in common and "qwertyuiop" in common


def test_overlong_password_is_never_hashed(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # argon2 has no input limit, so the cap is what keeps a megabyte "password" from
    # costing hashing work: every way to set a password refuses it before hashing.
    from teamhub.accounts import lifecycle
    from teamhub.accounts import store as store_mod

    s = store_mod.AccountStore(tmp_path / "accounts.sqlite")
    s.add("ada", GOOD)
    token, _ = lifecycle.create_reset_link(s, "ada", 60)

    real = store_mod._hasher

    class NoHashing:
        def hash(self, *_a: object) -> str:
            raise AssertionError("an over-long password reached the hasher")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    monkeypatch.setattr(store_mod, "_hasher", NoHashing())
    huge = "p" * 1_000_000
    for attempt in (lambda: s.add("bob", huge), lambda: s.set_password("ada", huge),
                    lambda: lifecycle.request_signup(s, "cy", huge, open_signup=False),
                    lambda: lifecycle.redeem_reset_link(s, token, huge)):
        with pytest.raises(PasswordPolicyError, match="too long"):
            attempt()
    assert s.verify("ada", huge) is None
    assert lifecycle.reset_link_user(s, token) == "ada"  # the refused reset spent nothing
