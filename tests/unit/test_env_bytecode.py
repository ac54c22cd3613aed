"""Bytecode reuse between env revisions: only .pyc of the very same (hard-linked) source."""

from __future__ import annotations

import os
import py_compile
import sys
from pathlib import Path

from teamhub.envs.bytecode import (
    cache_tag,
    compile_site,
    index_compiled,
    link_compiled,
    reusable,
)

TAG = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
LIB = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _site(root: Path) -> Path:
    site = root / "lib" / LIB / "site-packages"
    (site / "pkg").mkdir(parents=True)
    return site


def test_cache_tag_comes_from_the_layout(tmp_path: Path) -> None:
    assert cache_tag(_site(tmp_path)) == TAG
    assert cache_tag(tmp_path / "lib" / "site-packages") is None


def test_only_the_same_source_file_gets_the_donor_s_pyc(tmp_path: Path) -> None:
    old, new = _site(tmp_path / "old"), _site(tmp_path / "new")
    (old / "pkg" / "shared.py").write_text("X = 1\n")
    (old / "pkg" / "lookalike.py").write_text("X = 2\n")
    for name in ("shared", "lookalike"):
        py_compile.compile(str(old / "pkg" / f"{name}.py"), doraise=True)
    os.link(old / "pkg" / "shared.py", new / "pkg" / "shared.py")
    (new / "pkg" / "lookalike.py").write_text("X = 2\n")  # same text, another file: compiled
    index = index_compiled([old], TAG)
    assert link_compiled(new, index, TAG) == 1
    donor = old / "pkg" / "__pycache__" / f"shared.{TAG}.pyc"
    assert (new / "pkg" / "__pycache__" / f"shared.{TAG}.pyc").stat().st_ino == donor.stat().st_ino
    assert not (new / "pkg" / "__pycache__" / f"lookalike.{TAG}.pyc").exists()


def test_compile_site_compiles_the_rest_and_keeps_reused_ones(tmp_path: Path) -> None:
    old, new = _site(tmp_path / "old"), _site(tmp_path / "new")
    (old / "pkg" / "shared.py").write_text("X = 1\n")
    py_compile.compile(str(old / "pkg" / "shared.py"), doraise=True)
    os.link(old / "pkg" / "shared.py", new / "pkg" / "shared.py")
    (new / "pkg" / "own.py").write_text("Y = 2\n")
    (new / "pkg" / "broken.py").write_text("def (:\n")  # swallowed, as uv does
    assert compile_site(Path(sys.executable), new, reusable(new, [old, tmp_path / "gone"])) == 1
    cache = new / "pkg" / "__pycache__"
    assert (cache / f"own.{TAG}.pyc").is_file() and not (cache / f"broken.{TAG}.pyc").exists()
    donor = old / "pkg" / "__pycache__" / f"shared.{TAG}.pyc"
    assert (cache / f"shared.{TAG}.pyc").stat().st_ino == donor.stat().st_ino  # not recompiled
