"""The one canonical rule for hub user names."""

from __future__ import annotations

import time

import pytest

from teamhub.errors import AccountError
from teamhub.system.names import canonical_name, system_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ada", "ada"),
        ("Ada", "ada"),
        ("ADA_Lovelace-2", "ada_lovelace-2"),
        ("ａｄａ", "ada"),  # fullwidth letters fold to ASCII under NFKC
        ("ada  ", "ada"),
        ("  ada", "ada"),
        ("a", "a"),
        ("a" * 24, "a" * 24),
    ],
)
def test_accepted(raw: str, expected: str) -> None:
    assert canonical_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "..",
        "../etc",
        "a/b",
        "/ada",
        "ada lovelace",
        "ada\x00",
        "ada\nroot",
        "ada\n",
        "\tada",
        "ada\x1b[31m",
        "ada\u200b",  # zero-width space (format character)
        "1ada",
        "_ada",
        "-ada",
        "a" * 25,
        "ada.lovelace",
        "adà",
        "ada@example.com",
    ],
)
def test_rejected(raw: str) -> None:
    with pytest.raises(AccountError) as info:
        canonical_name(raw)
    assert "letter" in str(info.value)  # says what is allowed


@pytest.mark.parametrize("raw", [None, 42, b"ada", ["ada"]])
def test_non_str_rejected(raw: object) -> None:
    with pytest.raises(AccountError, match="must be text"):
        canonical_name(raw)  # type: ignore[arg-type]


def test_huge_input_rejected_fast_with_short_message() -> None:
    raw = "a" * 1_000_000
    start = time.perf_counter()
    with pytest.raises(AccountError) as info:
        canonical_name(raw)
    assert time.perf_counter() - start < 0.1
    message = str(info.value)
    assert len(message) < 200
    assert "a" * 33 not in message


def test_bad_value_is_named_and_escaped() -> None:
    with pytest.raises(AccountError) as info:
        canonical_name("bad\nname")
    message = str(info.value)
    assert "'bad\\nname'" in message
    assert "\n" not in message


def test_system_name() -> None:
    assert system_name("Ada", "jupyter-") == "jupyter-ada"
    assert system_name("ada", "") == "ada"
    assert len(system_name("a" * 24, "jupyter-")) == 32
    with pytest.raises(AccountError):
        system_name("../root", "jupyter-")
