"""The exploration notebook runs top to bottom on the tiny company, so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"


@pytest.mark.slow
def test_explore_notebook_runs_on_the_tiny_company(tiny_model, monkeypatch) -> None:
    t = tiny_model
    monkeypatch.setenv("CHURNGUARD_FEATURES", str(t.features))
    monkeypatch.setenv("CHURNGUARD_SNAPSHOTS", str(t.snapshots))
    monkeypatch.setenv("CHURNGUARD_MODEL", str(t.model))
    monkeypatch.setenv("CHURNGUARD_PARAMS", str(t.params))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    text = "\n".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "churn rate by decile of" in text
    assert "correlation of value and SHAP" in text
    assert all(out.get("output_type") != "error" for c in nb.cells for out in c.get("outputs", []))
