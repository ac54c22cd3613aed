"""Make a tree readable by everyone and writable only by its owner, touching only what is not.

OS plumbing: `find` lists the entries whose mode differs from what
`chmod -R u+rwX,go+rX,go-w` would leave, and only those are changed. A tree
written under umask 022 (a shared env built by uv) has next to none, so this
reads the modes of its ~20,000 files instead of rewriting each inode.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

MODE = "u+rwX,go+rX,go-w"

# Exactly the entries that MODE would change (symlinks have no mode of their own):
# any group/other write bit; not u+rw,go+r; a folder not 0755; a file with some
# execute bit but not all (X gives every class the bit once one has it).
NEEDS_CHANGE = ["!", "-type", "l", "(",
                "-perm", "/022",
                "-o", "!", "-perm", "-644",
                "-o", "-type", "d", "!", "-perm", "-755",
                "-o", "-perm", "/111", "!", "-perm", "-755",
                ")"]


def share_read_only(top: Path) -> None:
    """TOP and everything below: readable by all, writable by the owner only."""
    subprocess.run(["find", str(top), *NEEDS_CHANGE, "-exec", "chmod", MODE, "{}", "+"],
                   check=True, stdout=subprocess.DEVNULL, timeout=600)
