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
    return float(re.sub(r"[*%†]", "", cell).strip())


def test_main_table_is_the_one_rendered_from_the_result_files():
    import runpy

    script = runpy.run_path(str(REPO / "results" / "readme_main_table.py"))
    block = script["render"]()
    assert block in README, "README's main table differs from the result files: run " \
        "`python results/readme_main_table.py --write`"
    rows = [line for line in block.splitlines() if line.startswith("| ")]
    ran = set(pd.read_csv(REPO / "results" / "main_table_seeds" / "results.csv")["variant"])
    assert rows[0].split("|")[1].strip() == "Model"
    assert len(rows) == 1 + len(ran & set(script["MODELS"])) + 1 and len(rows) >= 1 + 8 + 1
    assert any(r.startswith("| Pop |") for r in rows)


def test_main_table_rows_of_models_not_run_yet(tmp_path):
    """Issue 17: the zoo's rows appear as their runs land; until the first one the table is the
    eight-model one; after it, the models without runs are listed under the table."""
    import runpy

    script = runpy.run_path(str(REPO / "results" / "readme_main_table.py"))
    src = REPO / "results" / "main_table_seeds"
    df = pd.read_csv(src / "results.csv")
    assert not set(df["variant"]) & set(script["ZOO"])  # (update this test when the zoo lands)
    before = script["render"](src)
    assert "Not run yet" not in before and "MGCN" not in before
    fake = df[df["variant"] == "freedom"].assign(variant="mgcn", model="mgcn")
    fake.loc[fake["dataset"] == "hm", "value"] = 0.5  # a new best cell on hm
    pd.concat([df, fake]).to_csv(tmp_path / "results.csv", index=False)
    after = script["render"](tmp_path).splitlines()
    mgcn = next(line for line in after if line.startswith("| MGCN |"))
    lirdrec = next(line for line in after if line.startswith("| LIRDRec |"))
    assert after.index(mgcn) == after.index(lirdrec) - 1  # zoo rows come before LIRDRec's
    assert "**0.5000 ± 0.0000**" in mgcn or "**0.5000**" in mgcn
    rest = [v for k, v in script["ZOO"].items() if k != "mgcn"]
    assert after[-3:] == ["", "Not run yet: " + ", ".join(rest) + ".", script["END"]]
    # the gap row compares LIRDRec with the best baseline, MGCN's 0.5 on hm included
    gap = next(line for line in after if line.startswith("| *LIRDRec"))
    lird = df[(df.variant == "lirdrec") & (df.dataset == "hm") & (df.split == "test") &
              (df.metric == "Recall") & (df.K == 20)]["value"].mean()
    assert f"{100 * (lird / 0.5 - 1):+.1f}%" in gap


def test_main_table_cells_are_seed_means_of_results_csv():
    """Independently of the renderer: every numeric cell is the mean (± sample std) of the
    seeds in results.csv."""
    df = pd.read_csv(REPO / "results" / "main_table_seeds" / "results.csv")
    df = df[df["split"] == "test"]
    names = {"Pop": "pop", "MF-BPR": "mf", "LightGCN": "lightgcn", "VBPR": "vbpr",
             "LATTICE": "lattice", "BM3": "bm3", "FREEDOM": "freedom", "LIRDRec": "lirdrec",
             **{n: n.lower() for n in ("ItemKNNCBF", "LayerGCN", "MMGCN", "GRCN", "DualGNN",
                                       "SLMRec", "DRAGON", "MGCN", "LGMRec", "SMORE")}}
    start = README.index("<!-- main-table:")
    lines = README[start:].splitlines()
    header = [c.strip() for c in lines[1].strip().strip("|").split("|")][1:]
    checked = 0
    for line in lines[3:]:
        if not line.startswith("| ") or line.startswith("| *"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for col, cell in zip(header, cells[1:]):
            if cell == "–":
                continue
            dataset, short = col.split()
            metric = {"R": "Recall", "N": "NDCG"}[short[0]]
            vals = df[(df.dataset == dataset) & (df.variant == names[cells[0]]) &
                      (df.metric == metric) & (df.K == int(short[2:]))]["value"]
            mean, *rest = re.sub(r"[*†]", "", cell).split("±")
            assert round(vals.mean(), 4) == _num(mean), (cells[0], col, cell)
            if rest:
                assert round(vals.std(ddof=1), 4) == _num(rest[0]), (cells[0], col, cell)
            checked += 1
    assert checked >= 8 * 4  # at least ml100k and tiktok for every model


def test_demo_table_equals_the_recorded_demo_output():
    recorded = (REPO / "results" / "demo.txt").read_text()
    readme_rows = _table_after("## What the demo shows")
    recorded_rows = [[c.strip() for c in line.strip().strip("|").split("|")]
                     for line in recorded.splitlines() if line.startswith("| ")][1:]
    assert readme_rows and [r[:6] for r in readme_rows] == [r[:6] for r in recorded_rows]
