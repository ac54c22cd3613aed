"""The language-server roots handed to servers are the ones jupyter-lsp would find itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from teamhub.spawners import lsp


def test_node_roots_equal_jupyter_lsps_own_defaults(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    manager = pytest.importorskip("jupyter_lsp.manager")
    monkeypatch.delenv("JUPYTERLAB_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # a server's cwd is its user's home
    expected = [str(root) for root in manager.LanguageServerManager().node_roots]
    assert lsp.node_roots(str(tmp_path)) == expected


def test_server_args_are_one_option_per_root(tmp_path: Path) -> None:
    args = lsp.server_args(str(tmp_path))
    assert args[0] == f"--LanguageServerManager.node_roots={tmp_path}"
    assert all(a.startswith("--LanguageServerManager.node_roots=/") for a in args)
