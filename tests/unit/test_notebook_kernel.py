"""The kernel a notebook file names, read without parsing it (teamhub.envs.notebook_kernel):
notebooks written by nbformat, as JupyterLab saves them."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from teamhub.envs.notebook_kernel import MAX_BYTES, TAIL_BYTES, inside, kernel_named_in


def write(path: Path, kernel: str | None, cells: list | None = None,
          **metadata: object) -> Path:
    nb = new_notebook(cells=cells or [new_code_cell("print(1)")])
    if kernel is not None:
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": f"{kernel} (shown)",
                                     "language": "python"}
    nb.metadata.update(metadata)
    nbformat.write(nb, path)
    return path


def test_the_notebooks_kernelspec_name(tmp_path: Path) -> None:
    assert kernel_named_in(write(tmp_path / "a.ipynb", "env-x")) == "env-x"


def test_widget_state_after_the_kernelspec_is_passed_over(tmp_path: Path) -> None:
    # Saved widget state sorts after "kernelspec" in the metadata and can be large.
    state = {"state": {f"model-{i}": {"value": "x" * 200} for i in range(2000)}}
    path = write(tmp_path / "w.ipynb", "env-w",
                 widgets={"application/vnd.jupyter.widget-state+json": state})
    assert path.stat().st_size > 256 * 1024
    assert kernel_named_in(path) == "env-w"


def test_a_cells_output_naming_a_kernelspec_does_not_win(tmp_path: Path) -> None:
    # A JSON output is stored as JSON, not as a string: its kernelspec object is real,
    # but it comes before the notebook's own metadata.
    output = new_output("display_data", data={
        "application/json": {"kernelspec": {"name": "from-an-output"}}})
    cell = new_code_cell("show()", outputs=[output])
    assert kernel_named_in(write(tmp_path / "o.ipynb", "env-o", [cell])) == "env-o"


def test_a_kernelspec_quoted_in_a_cells_source_is_not_one(tmp_path: Path) -> None:
    cell = new_code_cell('meta = {"kernelspec": {"name": "quoted"}}')
    assert kernel_named_in(write(tmp_path / "q.ipynb", None, [cell])) is None


@pytest.mark.parametrize("content", [b"", b"not json at all", b'{"kernelspec": {"name": 5}}',
                                     b'{"kernelspec": {"name": ""}}',
                                     b'{"kernelspec": {broken}}'])
def test_no_usable_name_is_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_bytes(content)
    assert kernel_named_in(path) is None


def test_a_missing_or_unreadable_file_is_none(tmp_path: Path) -> None:
    assert kernel_named_in(tmp_path / "missing.ipynb") is None
    assert kernel_named_in(tmp_path) is None  # a folder


def test_a_notebook_over_the_limit_is_not_read(tmp_path: Path) -> None:
    path = write(tmp_path / "big.ipynb", "env-big")
    size = path.stat().st_size
    assert kernel_named_in(path, limit=size) == "env-big"
    assert kernel_named_in(path, limit=size - 1) is None
    assert MAX_BYTES >= 16 * 1024 * 1024


def test_a_large_notebooks_kernel_is_found_in_its_tail(tmp_path: Path) -> None:
    # Outputs far bigger than the tail, one of them naming another kernelspec.
    big = new_output("stream", text="x" * 100)
    outputs = [new_output("display_data", data={
        "application/json": {"kernelspec": {"name": "from-an-output"}}})] + [big] * 3000
    path = write(tmp_path / "large.ipynb", "env-large", [new_code_cell("run()", outputs=outputs)])
    assert path.stat().st_size > 4 * TAIL_BYTES
    assert kernel_named_in(path) == "env-large"
    assert kernel_named_in(path, tail=path.stat().st_size - 8) == "env-large"


@pytest.mark.parametrize("cut", range(-3, 40))
def test_a_kernelspec_across_the_tails_start_is_found_in_the_whole_file(
        tmp_path: Path, cut: int) -> None:
    """The tail starts inside the last kernelspec object (or just before or after its
    start): the tail has no whole one, or only a cell's, and the whole file is read."""
    output = new_output("display_data", data={
        "application/json": {"kernelspec": {"name": "from-an-output"}}})
    path = write(tmp_path / "cut.ipynb", "env-cut", [new_code_cell("x", outputs=[output])])
    data = path.read_bytes()
    start = data.rindex(b'"kernelspec"')
    tail = len(data) - start - cut  # the tail begins CUT bytes into the object
    assert kernel_named_in(path, tail=tail) == "env-cut"


def test_paths_are_taken_under_the_servers_root(tmp_path: Path) -> None:
    root = tmp_path / "home"
    assert inside(str(root), "a/b.ipynb") == root / "a" / "b.ipynb"
    assert inside(str(root), "/b.ipynb") == root / "b.ipynb"
    assert inside(str(root), "a/../b.ipynb") == root / "b.ipynb"
    assert inside(str(root), "../other/b.ipynb") is None
    assert inside(str(root), "a/../../b.ipynb") is None
    assert inside(str(root) + "x", "b.ipynb") == tmp_path / "homex" / "b.ipynb"
    assert inside(str(root), "../homex/b.ipynb") is None  # a sibling sharing the prefix
    assert inside(str(root), "") is None
    assert inside("/", "srv/b.ipynb") == Path("/srv/b.ipynb")
