"""Catalogue-size check of docs/gradient_bias.md on SYNTHETIC data (same users, features and
interactions per user; only the number of items changes).

Usage: ``python results/gradient_bias/catalogue_sweep.py``

For VBPR and LIRDRec with item IDs, trains 5 epochs per catalogue size with the recorder and
prints, for the last epoch: the group ratio ||grad theta|| / ||grad E||, the per-item ratio
rho = ||grad theta|| / mean_i ||grad e_i|| (mean over items seen in training) and two predictions
scaled to the smallest catalogue: rho ~ 1 / mean(pi) (an item occurs at most about once per batch,
aligned gradients) and rho ~ 1 / mean E[sqrt(n)], n ~ Poisson(B pi) (several occurrences per
batch with random directions).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import poisson

from lirdrec.data.synthetic import generate
from lirdrec.diagnostics.gradient_bias import GradientBiasRecorder
from lirdrec.train.run import run_training
from lirdrec.utils.table import format_table


def main() -> None:
    rows = []
    for label, name, kw, lr in (
        ("vbpr", "vbpr", {}, 1e-3),
        ("lirdrec-id", "lirdrec", {"item_id": "add"}, 1e-4),
    ):
        base = base_sqrt = None
        for num_items in (300, 900, 2700):
            ds = generate(seed=0, num_users=600, num_items=num_items, cold_fraction=0.0)
            rec = GradientBiasRecorder(probe=False)
            run_training(
                name,
                ds,
                kw,
                {"epochs": 5, "patience": 5, "lr": lr, "seed": 999},
                callbacks=[rec],
                show_progress=False,
            )
            deg = rec.item_epoch["degree"]
            seen = deg > 0
            pi = deg[seen] / len(ds.train) + 1.0 / seen.sum()
            theta = float(rec.item_epoch["theta_grad"])
            rho = theta / rec.item_epoch["id_grad"][seen].mean()
            steps = [r for r in rec.step_rows if r[1] == 5 and r[3] == "grad_norm"]
            g = {
                grp: np.mean([v for _, _, gg, _, v in steps if gg == grp])
                for grp in ("item_id", "item_feature")
            }
            pred = 1.0 / pi.mean()
            n = np.arange(400)
            esqrt = (np.sqrt(n)[None, :] * poisson.pmf(n[None, :], 2048 * pi[:, None])).sum(1)
            pred_sqrt = 1.0 / esqrt.mean()
            base = base or (rho / pred)
            base_sqrt = base_sqrt or (rho / pred_sqrt)
            rows.append(
                {
                    "model": label,
                    "items": num_items,
                    "train pairs": len(ds.train),
                    "mean pi*B": round(float(pi.mean() * 2048), 3),
                    "||g_theta||/||g_E||": round(g["item_feature"] / g["item_id"], 2),
                    "rho (per item)": round(float(rho), 1),
                    "rho pred. 1/pi": round(float(base * pred), 1),
                    "rho pred. 1/E[sqrt n]": round(float(base_sqrt * pred_sqrt), 1),
                }
            )
            print(format_table(rows[-1:]), flush=True)
    print()
    print(format_table(rows))


if __name__ == "__main__":
    main()
