"""`teamhub export z2jh --out DIR`: everything written to a temp folder, then moved into place.

DIR must not exist. The values are checked against the chart's schema and the settings
against what the chart can express before anything is written; the folder appears whole
or not at all, readable by its owner only (values.yaml holds the TLS key when TLS is on).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import ExportError, LossError
from ..settings import Settings
from . import buildctx, chart, guide, mapping
from .team import read_team
from .values import Options, build


@dataclass
class Result:
    out: Path
    losses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (certificates, the extraConfig snippet) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, width=100)


def _check_target(out: Path) -> None:
    if os.path.lexists(out):
        raise ExportError(f"{out} already exists",
                          "give a new folder (the export never writes "
                          "into an existing one)")
    if not out.parent.is_dir():
        raise ExportError(f"folder {out.parent} does not exist", "create it first")


def export_z2jh(settings: Settings, out: Path, opts: Options,
                allow_loss: bool = False) -> Result:
    """Write the Zero to JupyterHub deployment of SETTINGS' team to OUT."""
    out = Path(out)
    _check_target(out)
    losses = mapping.losses(settings.values)
    if losses and not allow_loss:
        raise LossError(losses)
    team = read_team(settings)
    built = build(settings, team, opts)
    wrong = chart.problems(built.values)
    if wrong:
        raise ExportError(f"the values do not validate against the chart's schema ({wrong[0]}"
                          f"; {len(wrong)} problem(s)): a teamhub bug, please report it")
    summary = {"chart_version": chart.CHART_VERSION, "teamhub_version": __version__,
               "users": len(team.accounts), "groups": len(team.groups),
               "projects": len(team.projects), "envs": len(team.envs),
               "losses": losses, "notes": built.notes}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        values_file = tmp / "values.yaml"
        fd = os.open(values_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# Zero to JupyterHub values written by `teamhub export z2jh`; see "
                    "MIGRATION.md.\n" + dump_yaml(built.values))
        (tmp / "storage.yaml").write_text(guide.storage_manifests(settings, team))
        (tmp / "MIGRATION.md").write_text(guide.migration_md(
            settings, team, built.values, losses, built.notes, opts.guarantee))
        (tmp / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / "images").mkdir()
        buildctx.write(tmp / "images", settings)
        _check_target(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Result(out, losses, built.notes, summary)
