"""The Zero to JupyterHub chart as data: its defaults, its values schema, Helm's merge.

Helm deep-merges a user's values over the chart's `values.yaml` and validates the result
against `values.schema.yaml` before it renders anything; `validate` does the same here
with the copies in `chart/` (see its README for where they come from), so an export that
`helm upgrade --install` would refuse is caught before it is written.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).with_name("chart")
# The published chart release whose hub image the hub image builds on. The schema copy is
# from a later commit on the same JupyterHub (appVersion 5.5.0); see chart/README.md.
CHART_VERSION = "4.4.0"
CHART_APP_VERSION = "5.5.0"
HUB_BASE_IMAGE = f"quay.io/jupyterhub/k8s-hub:{CHART_VERSION}"
# What the hub image's user is (the chart runs the hub container as uid 1000).
HUB_IMAGE_USER = "jovyan"


@cache
def _load(name: str) -> Any:
    with open(CHART_DIR / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


def defaults() -> dict[str, Any]:
    """The chart's values.yaml (a fresh copy each call: callers merge into it)."""
    return copy.deepcopy(_load("values.yaml"))


def schema() -> dict[str, Any]:
    return _load("values.schema.yaml")


def helm_merge(base: Any, override: Any) -> Any:
    """OVERRIDE over BASE as Helm merges values: maps merge key by key, recursively;
    anything else (lists included) is replaced; an explicit null deletes the key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def problems(values: dict[str, Any]) -> list[str]:
    """Why the chart would refuse VALUES (merged over its defaults): one line per error,
    naming the path in the values; [] when Helm would accept them."""
    # Deferred: jsonschema builds its validators at import, which only exports need.
    import jsonschema

    merged = helm_merge(defaults(), values)
    validator = jsonschema.Draft7Validator(schema())
    found = []
    for error in sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        found.append(f"{where}: {error.message[:300]}")
    return found
