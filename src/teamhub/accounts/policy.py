"""The password policy: one check used by every way a password is set.

`teamhub user add|passwd`, the signup page, the change-password page and reset
links all call `check_password`, so a rule holds everywhere or nowhere.

Common passwords come from the `zxcvbn` package (a maintained PyPI
distribution of the zxcvbn strength estimator), whose `passwords` frequency
list holds the 30,000 most common passwords of public leak corpora. Depending
on it, rather than shipping a copied list, means the list is updated with the
package and its attribution and licence travel with it; we use only the list,
not zxcvbn's scoring, so a refusal always names one plain rule.
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache

from ..errors import PasswordPolicyError

DEFAULT_MIN_LENGTH = 10

# Longer input is refused before anything is hashed or compared: argon2 itself
# has no input limit (unlike bcrypt's 72 bytes, nothing is silently cut), so an
# unbounded password would only be a way to make the hub burn CPU and memory.
MAX_LENGTH = 1024

# A candidate with these stripped from its end is checked against the list too,
# so "password123!" counts as common when "password" does.
_DECORATION = string.digits + string.punctuation + " "



@cache
def common_passwords() -> frozenset[str]:
    """The common-password list, lower-cased (loaded once, on first use)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


def _is_common(password: str) -> bool:
    common = common_passwords()
    folded = password.casefold()
    if folded in common:
        return True
    core = folded.rstrip(_DECORATION)
    return len(core) >= 4 and core != folded and core in common


def check_password(name: str, password: object, min_length: int = DEFAULT_MIN_LENGTH) -> None:
    """PasswordPolicyError unless PASSWORD is acceptable for user NAME.

    The rules, in order: text; at most MAX_LENGTH characters (checked first and
    cheaply); no NUL or other control characters; at least MIN_LENGTH
    characters; not containing the user name; not a common password.
    """
    who = f"the password for {name!r}" if name else "the password"
    if not isinstance(password, str):
        raise PasswordPolicyError(f"{who} must be text")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(
            f"{who} is too long: at most {MAX_LENGTH} characters are accepted"
        )
    if any(unicodedata.category(ch) == "Cc" for ch in password):
        raise PasswordPolicyError(
            f"{who} contains control characters (such as NUL or a line break)", "remove them"
        )
    if len(password) < min_length:
        raise PasswordPolicyError(
            f"{who} is too short ({len(password)} characters)",
            f"use at least {min_length} "
            "(a few random words work well)"
        )
    # Containment only for names of 3+ characters: a one-letter name is in most passwords.
    folded_name = name.casefold()
    if name and (folded_name == password.casefold()
                 or (len(folded_name) >= 3 and folded_name in password.casefold())):
        raise PasswordPolicyError(f"{who} contains the user name", "choose another one")
    if _is_common(password):
        raise PasswordPolicyError(
            f"{who} is on the list of commonly used passwords", "choose a less guessable one"
        )
