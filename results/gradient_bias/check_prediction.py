"""Check the per-item prediction of docs/gradient_bias.md against item_grad_by_popularity.csv.

Usage::

    python results/gradient_bias/check_prediction.py ../shared/data/tiktok \
        results/gradient_bias/tiktok

Per popularity bucket (last epoch) it prints, for each model with an item ID table:
- the fraction of steps whose batch touched the ID row, measured and predicted
  (``1 - (1 - pi)^b`` averaged over the epoch's batches, ``pi = d/N + 1/I+``);
- the per-step ID-row gradient norm, measured, divided by the prediction up to one constant,
  ``E[sqrt(n)]`` with ``n ~ Poisson(b pi)`` occurrences per batch (random-direction sum); a flat
  column means the popularity dependence is as predicted;
- rho = ||grad theta_feature|| / ||grad e_i||, the per-item bias (grows towards the tail).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from scipy.stats import poisson

from lirdrec import load_dataset
from lirdrec.diagnostics.gradient_bias import popularity_buckets, predicted_touch_fraction


def expected_sqrt_occurrences(lam: np.ndarray, nmax: int = 200) -> np.ndarray:
    """E[sqrt(n)] for n ~ Poisson(lam), element-wise."""
    n = np.arange(nmax)
    return (np.sqrt(n)[None, :] * poisson.pmf(n[None, :], lam[:, None])).sum(1)


def main(data: str, out: str, batch_size: int = 2048, buckets: int = 5) -> None:
    ds = load_dataset(data)
    degree = ds.item_degree()
    n_pairs = len(ds.train)
    seen = degree > 0
    pi = degree / n_pairs + seen / seen.sum()
    full, last = divmod(n_pairs, batch_size)
    sizes = [batch_size] * full + ([last] if last else [])
    esqrt = np.mean([expected_sqrt_occurrences(pi * b) for b in sizes], axis=0)
    touch = predicted_touch_fraction(degree, n_pairs, batch_size)
    bucket, _info = popularity_buckets(degree, buckets)
    items = pd.read_csv(f"{out}/item_grad_by_popularity.csv")
    print(f"{ds.name}: I={ds.num_items} (I+={int(seen.sum())}), N={n_pairs}, B={batch_size}")
    for model, d in items.groupby("model", sort=False):
        d = d[(d["epoch"] == d["epoch"].max()) & (d["bucket"] > 0)].set_index("bucket")
        if d["id_grad"].isna().all():
            continue
        rows = []
        for b in d.index:
            m = bucket == b
            rows.append(
                {
                    "bucket": d.loc[b, "label"],
                    "mean pi*B": float((pi[m] * batch_size).mean()),
                    "touched": d.loc[b, "id_touched"],
                    "touched pred": float(touch[m].mean()),
                    "id_grad / E[sqrt n]": d.loc[b, "id_grad"] / float(esqrt[m].mean()),
                    "rho": d.loc[b, "theta_row_ratio"],
                }
            )
        t = pd.DataFrame(rows)
        t["id_grad / E[sqrt n]"] /= t["id_grad / E[sqrt n]"].iloc[-1]  # relative to the head bucket
        print(f"\n{model}\n{t.to_string(index=False, float_format=lambda x: f'{x:.3g}')}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
