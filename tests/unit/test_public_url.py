"""The address `teamhub up` announces for links it prints (reset links)."""

from __future__ import annotations

from pathlib import Path

from teamhub.cli.up import public_base_url
from teamhub.settings import load


def _settings(tmp_path: Path, text: str):
    cfg = tmp_path / "teamhub.toml"
    cfg.write_text(text)
    return load(cfg, environ={})


def test_an_explicit_address_with_its_scheme(tmp_path: Path) -> None:
    s = _settings(tmp_path, '[hub]\nip = "127.0.0.1"\nport = 8000\n')
    assert public_base_url(s) == "http://127.0.0.1:8000"
    s = _settings(tmp_path, '[hub]\nip = "::1"\nport = 8443\n')
    assert public_base_url(s) == "http://[::1]:8443"


def test_the_domain_when_one_is_set(tmp_path: Path) -> None:
    s = _settings(tmp_path, '[hub]\ndomain = "hub.example.org"\nport = 8000\n')
    assert public_base_url(s) == "http://hub.example.org:8000"
