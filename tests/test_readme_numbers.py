"""README's tables are the result files' numbers: regenerate the files, and this test says which
README cells must follow (issue 19)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _table_after(marker: str) -> list[list[str]]:
    """Rows (cells stripped) of the first markdown table after ``marker`` in README."""
    start = README.index(marker)
    lines = README[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return [r for r in rows[2:]]  # header and rule skipped


def _num(cell: str) -> float:
    return float(re.sub(r"[*%]", "", cell))


def test_main_table_equals_results_csv():
    df = pd.read_csv(REPO / "results" / "main_table" / "results.csv")
    df = df[df["split"] == "test"]
    names = {"MF-BPR": "mf", "LightGCN": "lightgcn", "VBPR": "vbpr", "LATTICE": "lattice",
             "BM3": "bm3", "FREEDOM": "freedom", "LIRDRec": "lirdrec"}
    cols = [(d, m, k) for d in ("ml100k", "tiktok") for m, k in
            (("Recall", 10), ("Recall", 20), ("NDCG", 10), ("NDCG", 20))]
    rows = _table_after("Main table (`lirdrec experiment datasets/experiments/main_table.yaml`")
    checked = 0
    for row in rows:
        if row[0] not in names:
            continue
        for (dataset, metric, k), cell in zip(cols, row[1:]):
            value = df[(df.dataset == dataset) & (df.variant == names[row[0]]) &
                       (df.metric == metric) & (df.K == k)]["value"]
            assert len(value) == 1, (row[0], dataset, metric, k)
            assert round(float(value.iloc[0]), 4) == _num(cell), (row[0], dataset, metric, k, cell)
            checked += 1
    assert checked == 7 * 8


def test_demo_table_equals_the_recorded_demo_output():
    recorded = (REPO / "results" / "demo.txt").read_text()
    readme_rows = _table_after("## What the demo shows")
    recorded_rows = [[c.strip() for c in line.strip().strip("|").split("|")]
                     for line in recorded.splitlines() if line.startswith("| ")][1:]
    assert readme_rows and [r[:6] for r in readme_rows] == [r[:6] for r in recorded_rows]
