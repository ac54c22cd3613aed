"""The page templates every server compiles, compiled once in the fork server.

The first time a server shows the Lab page (Notebook 7's pages the same), jinja2 reads
`index.html` and compiles it to Python code: ~0.5 MB of every idle server's own
memory (bench/server_memory.py) spent on the very same code. The fork server compiles
the runtime's templates with the settings jupyter_server gives an extension's templates,
and keeps the code objects in a jinja2 bytecode cache; each forked server hands that
cache to its template environments (teamhub.serverext), so they take the code instead of
compiling.

A template is taken only for the very same file and text (jinja2's own cache key: the
template's name and file, and a checksum of its source) and an environment with the
same settings (delimiters, extensions, escaping, finalize...): anything else is compiled as
before. Code objects cannot be changed, and each server is its own process.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

from jinja2 import BytecodeCache, Environment, FileSystemLoader
from jinja2.bccache import Bucket
from jinja2.exceptions import TemplateError

# What jupyter_server's ExtensionApp gives each extension's template environment.
EXTENSIONS = ["jinja2.ext.i18n"]


def compile_settings(env: Environment) -> tuple[Hashable, ...]:
    """Everything of ENV that the code compiled from a template depends on."""
    return (
        env.block_start_string, env.block_end_string, env.variable_start_string,
        env.variable_end_string, env.comment_start_string, env.comment_end_string,
        env.line_statement_prefix, env.line_comment_prefix, env.trim_blocks,
        env.lstrip_blocks, env.newline_sequence, env.keep_trailing_newline,
        tuple(sorted(env.extensions)), env.optimized,
        # a function (select_autoescape, a finalize) is one object per environment:
        # never equal, so such an environment always compiles its own
        env.autoescape if isinstance(env.autoescape, bool) else id(env),
        None if env.finalize is None else id(env),
        f"{env.code_generator_class.__module__}.{env.code_generator_class.__qualname__}",
        env.is_async,
    )


class CompiledTemplates(BytecodeCache):
    """jinja2 bytecode cache that holds code objects in memory, never on disk."""

    def __init__(self) -> None:
        self.codes: dict[tuple[Hashable, ...], Any] = {}
        self.closed = False

    def _key(self, bucket: Bucket) -> tuple[Hashable, ...]:
        return (compile_settings(bucket.environment), bucket.key, bucket.checksum)

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self.codes.get(self._key(bucket))
        if code is not None:
            bucket.code = code

    def dump_bytecode(self, bucket: Bucket) -> None:
        if not self.closed:  # after the fork the server's own environments keep theirs
            self.codes[self._key(bucket)] = bucket.code


compiled = CompiledTemplates()


def runtime_templates(prefix: str) -> list[tuple[Path, str]]:
    """(folder, template) of the pages the runtime at PREFIX shows every user: the Lab
    page, and Notebook 7's when it is installed."""
    found = []
    lab = Path(prefix) / "share" / "jupyter" / "lab" / "static"
    if (lab / "index.html").is_file():
        found.append((lab, "index.html"))
    try:  # deferred: the hub imports this module too (forkserver), and never needs it
        import notebook
    except ImportError:
        return found
    pages = Path(notebook.__file__).parent / "templates"
    found += [(pages, p.name) for p in sorted(pages.glob("*.html"))]
    return found


def precompile(templates: list[tuple[Path, str]]) -> int:
    """Compile TEMPLATES into `compiled`; how many were (one jinja2 refuses is left to
    the server to refuse). Then no more are added: the fork server's cache is shared."""
    done = 0
    for folder, name in templates:
        env = Environment(loader=FileSystemLoader([str(folder)]), bytecode_cache=compiled,
                          extensions=EXTENSIONS, autoescape=True)
        try:
            env.get_template(name)
        except (OSError, TemplateError):
            continue
        done += 1
    compiled.closed = True
    return done


def use_compiled(settings: dict[str, Any]) -> int:
    """Give the template environments in a server's SETTINGS the fork server's compiled
    templates (none when this server was not forked); how many were given it."""
    if not compiled.codes:
        return 0
    given = 0
    for value in settings.values():
        if isinstance(value, Environment) and value.bytecode_cache is None:
            value.bytecode_cache = compiled
            given += 1
    return given
