"""Every LIRDRec variant of the gap study against the best baseline of each dataset.

    python results/lirdrec_gap_tests.py GAP_EXPERIMENT.yaml MAIN_TABLE_EXPERIMENT.yaml OUT_DIR

The best baseline is the one with the highest mean test Recall@20 over three seeds in the main
table (ml100k: FREEDOM, tiktok: BM3). Each LIRDRec variant with three finished seeds is tested
against it on the per-user test metrics with the runner's own paired tests
(:func:`lirdrec.experiments.runner.significance`: per-user values averaged over seeds, paired
t-test and Wilcoxon, Holm over the variants of a dataset). Writes ``vs_best_baseline.csv`` and
``vs_best_baseline.md`` into OUT_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from lirdrec.experiments import load_experiment
from lirdrec.experiments.runner import ALPHA, _run_dir, significance

METRICS = ("Recall@20", "NDCG@20")


def finished(out: Path, dataset: str, variant: str, seeds: list[int]) -> dict[int, Path] | None:
    """Each seed's run directory at the grid point selection.csv marks as selected (point 0
    without a grid), or None unless every seed has finished.
    """
    point = {}
    if (out / "selection.csv").is_file():  # a variant with a grid (issue 17's zoo)
        sel = pd.read_csv(out / "selection.csv")
        sel = sel[(sel.dataset == dataset) & (sel.variant == variant) & sel.selected]
        point = dict(zip(sel.seed, sel.point))
    dirs = {s: _run_dir(out, dataset, variant, s, int(point.get(s, 0))) for s in seeds}
    return dirs if all((d / "metrics.json").is_file() for d in dirs.values()) else None


def main(gap_file: str, main_file: str, out_dir: str) -> int:
    gap, table = load_experiment(gap_file), load_experiment(main_file)
    results = pd.read_csv(table.out / "results.csv")
    r20 = results[(results.split == "test") & (results.metric == "Recall") & (results.K == 20)]
    rows = []
    for dataset in gap.datasets:
        means = r20[(r20.dataset == dataset) & (r20.variant != table.reference)].groupby(
            "variant")["value"].mean()
        if means.empty:
            sys.exit(f"{table.out / 'results.csv'}: no test Recall@20 of a baseline on {dataset}; "
                     f"collect the main table first (lirdrec experiment {main_file} --collect)")
        best = str(means.idxmax())
        chosen = {(dataset, best): finished(table.out, dataset, best, table.seeds)}
        for variant in gap.models:
            dirs = finished(gap.out, dataset, variant, gap.seeds)
            if dirs is not None:
                chosen[(dataset, variant)] = dirs
        sig = significance(chosen, best, METRICS)
        for _, s in sig.iterrows():
            rows.append({**s.to_dict(), "baseline_mean": float(means[best])})
    df = pd.DataFrame(rows)
    out = Path(out_dir)
    df.to_csv(out / "vs_best_baseline.csv", index=False)
    lines = ["| dataset | LIRDRec variant | vs | metric | mean per-user diff (variant − baseline) "
             "| t-test p (Holm) | Wilcoxon p (Holm) | significantly below? |",
             "|:--|:--|:--|:--|--:|--:|--:|:--|"]
    for _, s in df.iterrows():
        below = s.mean_diff < 0 and (s.t_p_holm < ALPHA or s.wilcoxon_p_holm < ALPHA)
        above = s.mean_diff > 0 and (s.t_p_holm < ALPHA or s.wilcoxon_p_holm < ALPHA)
        lines.append(f"| {s.dataset} | {s.variant} | {s.reference} | {s.metric} | "
                     f"{s.mean_diff:+.4f} | {s.t_p_holm:.3g} | {s.wilcoxon_p_holm:.3g} | "
                     f"{'yes' if below else ('no, above' if above else 'no')} |")
    (out / "vs_best_baseline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
