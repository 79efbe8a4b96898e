"""The notebooks of ``notebooks/`` run end to end in their SMALL mode (issue 8).

Each notebook's parameter cell (the code cell tagged ``parameters``) is replaced by
``SMALL = True`` and the notebook is executed with nbclient in ``notebooks/``; any error fails
the test. SMALL mode trains a few epochs on a sample of users in a temporary directory, so the
committed notebooks, which carry the outputs of FULL mode, and ``results/`` are left untouched.
"""

from __future__ import annotations

import copy

import nbformat
import pytest
from conftest import REPO, shared_path
from nbclient import NotebookClient

NOTEBOOK_DIR = REPO / "notebooks"
EXPECTED = ["01_quickstart", "02_main_table", "03_ablation", "04_mllm_features",
            "05_gradient_bias", "06_sensitivity", "07_notellm2"]


def _parameter_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells)
              if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one code cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def test_every_notebook_is_present():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_carries_full_outputs(name):
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    assert nb.cells[_parameter_cell(nb)].source.strip().startswith("SMALL = False")
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: committed with an error output"
    assert any(c.get("outputs") for c in code), f"{name}: committed without outputs"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_small_mode(name):
    shared_path("data")
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    run = copy.deepcopy(nb)
    run.cells[_parameter_cell(run)].source = "SMALL = True"
    client = NotebookClient(run, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
