"""Templates compiled in the fork server are taken only for the same file, text and
environment settings; a server's page renders the same either way."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader

from teamhub.spawners import page_templates
from teamhub.spawners.page_templates import EXTENSIONS, compiled


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """`compiled` is the process's (the fork server's); start each test empty."""
    compiled.codes.clear()
    compiled.closed = False
    yield
    compiled.codes.clear()
    compiled.closed = False


def server_env(folder: Path, autoescape: bool = True) -> Environment:
    """A template environment made as jupyter_server makes an extension's, handed the
    compiled templates as teamhub.serverext does."""
    env = Environment(loader=FileSystemLoader([str(folder)]), extensions=EXTENSIONS,
                      autoescape=autoescape)
    assert page_templates.use_compiled({"lab_jinja2_env": env, "other": 1}) == 1
    return env


def refuse_compiling(env: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(env, "compile", compile_)


def test_the_runtimes_lab_page_is_compiled_once(tmp_path: Path, fresh_cache: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    templates = page_templates.runtime_templates(sys.prefix)
    lab = Path(sys.prefix) / "share" / "jupyter" / "lab" / "static"
    assert (lab, "index.html") in templates
    assert page_templates.precompile(templates) == len(templates)
    env = server_env(lab)
    refuse_compiling(env, monkeypatch)
    page = env.get_template("index.html").render(
        page_config={"fullStaticUrl": "/static/lab"}, base_url="/user/ann/", ws_url="")
    assert 'src="/static/lab/main.' in page and '"baseUrl": "/user/ann/"' in page
    # Closed after the fork server's compile: a server's own templates are not added.
    count = len(compiled.codes)
    (tmp_path / "own.html").write_text("{{ 1 + 1 }}")
    assert server_env(tmp_path).get_template("own.html").render() == "2"
    assert len(compiled.codes) == count


def test_a_changed_file_or_other_settings_are_compiled_anew(
        tmp_path: Path, fresh_cache: None, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "page.html").write_text("<p>{{ who }} & {{ '<b>' }}</p>")
    assert page_templates.precompile([(tmp_path, "page.html")]) == 1

    same = server_env(tmp_path)
    refuse_compiling(same, monkeypatch)
    assert same.get_template("page.html").render(who="ann") == "<p>ann & &lt;b&gt;</p>"

    # Without escaping the compiled code would differ: never taken.
    unescaped = server_env(tmp_path, autoescape=False)
    assert unescaped.get_template("page.html").render(who="ann") == "<p>ann & <b></p>"

    # A finalize is compiled into the code too: never taken.
    finalized = server_env(tmp_path)
    finalized.finalize = lambda value: str(value).upper()
    assert finalized.get_template("page.html").render(who="ann") == "<p>ANN & &LT;B&GT;</p>"

    (tmp_path / "page.html").write_text("<p>changed {{ who }}</p>")
    changed = server_env(tmp_path)
    assert changed.get_template("page.html").render(who="ann") == "<p>changed ann</p>"

    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(tmp_path / "page.html", copy / "page.html")
    elsewhere = server_env(copy)
    assert elsewhere.get_template("page.html").render(who="bo") == "<p>changed bo</p>"


def test_a_server_not_forked_compiles_as_before(tmp_path: Path, fresh_cache: None) -> None:
    env = Environment(loader=FileSystemLoader([str(tmp_path)]), extensions=EXTENSIONS,
                      autoescape=True)
    assert page_templates.use_compiled({"lab_jinja2_env": env}) == 0
    assert env.bytecode_cache is None
    (tmp_path / "broken.html").write_text("{% if %}")
    assert page_templates.precompile([(tmp_path, "broken.html"),
                                       (tmp_path, "missing.html")]) == 0
