"""Bytecode for a new revision: reuse what the envs already built have, compile the rest.

A shared env's package files are hard links into uv's cache, so a file that
another env's current revision (or this env's own) also has is the same inode
there, and its compiled .pyc there is valid here as well: a .pyc is checked
against its source's mtime (or hash), which a hard link shares, and Python sets
the code's file name from the path it loaded the .pyc for, so tracebacks name
this revision. Those .pyc files are hard-linked (root-owned, read-only like the
rest of the envs); only the others are compiled, by the env's own interpreter
with compileall's compile_file, in one worker per CPU fed on stdin, as
`uv pip install --compile-bytecode` does (errors of files
that do not compile are swallowed alike, and fresh .pyc files are skipped).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path

from ..errors import EnvError

# One worker's share: paths on stdin, read at once. (compileall.compile_dir's own
# workers get one file per round trip through a pipe, which under load costs more
# than the compiling: it took 2-3x uv's time on a busy 2-core machine.)
COMPILE = """import compileall, sys, warnings
warnings.filterwarnings("ignore")
for path in sys.stdin.read().splitlines():
    compileall.compile_file(path, quiet=2)
"""

Index = dict[tuple[int, int], str]


def site_packages(python: Path) -> Path:
    """PYTHON's site-packages: from a venv's layout, else asked of the interpreter."""
    found = glob.glob(str(python.parent.parent / "lib" / "python3.*" / "site-packages"))
    if len(found) == 1:
        return Path(found[0])
    return Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip())


def cache_tag(site: Path) -> str | None:
    """`cpython-311` for <prefix>/lib/python3.11/site-packages (None for another layout)."""
    m = re.fullmatch(r"python(\d+)\.(\d+)", site.parent.name)
    return f"cpython-{m[1]}{m[2]}" if m and site.name == "site-packages" else None


def index_compiled(sites: list[Path], tag: str) -> Index:
    """(device, inode) of each source file in SITES that has a TAG .pyc → that .pyc."""
    suffix = f".{tag}.pyc"
    index: Index = {}
    for site in sites:
        for folder, _dirs, files in os.walk(site):
            if os.path.basename(folder) != "__pycache__":
                continue
            parent = os.path.dirname(folder)
            for name in files:
                if not name.endswith(suffix):
                    continue
                try:
                    st = os.lstat(os.path.join(parent, name[:-len(suffix)] + ".py"))
                except OSError:
                    continue
                index.setdefault((st.st_dev, st.st_ino), os.path.join(folder, name))
    return index


def link_compiled(site: Path, index: Index, tag: str) -> int:
    """Hard-link into SITE the .pyc of every source file INDEX knows; returns how many."""
    linked = 0
    for folder, dirs, files in os.walk(site):
        if "__pycache__" in dirs:
            dirs.remove("__pycache__")
        for name in files:
            if not name.endswith(".py"):
                continue
            st = os.lstat(os.path.join(folder, name))
            donor = index.get((st.st_dev, st.st_ino))
            if donor is None:
                continue
            cache = os.path.join(folder, "__pycache__")
            os.makedirs(cache, exist_ok=True)
            try:
                os.link(donor, os.path.join(cache, f"{name[:-3]}.{tag}.pyc"))
            except FileExistsError:
                continue
            linked += 1
    return linked


def reusable(site: Path, donors: list[Path]) -> Index:
    """What DONORS (other envs' site-packages) have compiled that SITE could reuse."""
    tag = cache_tag(site)
    if tag is None:
        return {}
    return index_compiled([d for d in donors if d.is_dir() and d != site], tag)


def compile_site(python: Path, site: Path, index: Index) -> int:
    """Give every module in SITE its .pyc, linking INDEX's (see `reusable`) where it can.

    Returns how many were reused.
    """
    tag = cache_tag(site)
    linked = link_compiled(site, index, tag) if index and tag else 0
    _compile(python, site)
    return linked


def _sources(site: Path) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(site):
        if "__pycache__" in dirs:
            dirs.remove("__pycache__")
        found += [os.path.join(folder, name) for name in files if name.endswith(".py")]
    return found


def _compile(python: Path, site: Path) -> None:
    """Compile SITE's modules that have no fresh .pyc, one worker per CPU, as uv does."""
    sources = _sources(site)
    workers = max(1, min(len(os.sched_getaffinity(0)), len(sources)))
    procs = [subprocess.Popen([str(python), "-c", COMPILE], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    try:
        for i, proc in enumerate(procs):
            assert proc.stdin is not None
            proc.stdin.write("\n".join(sources[i::workers]))
            proc.stdin.close()
        # Each stderr read to its end before the wait: a full pipe never stalls a worker.
        errors = [(proc.stderr.read() if proc.stderr else "", proc.wait(timeout=1800))
                  for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = [err for err, code in errors if code != 0]
    if failed:
        raise EnvError(f"compiling the bytecode failed: {failed[0].strip()[-300:]}")
