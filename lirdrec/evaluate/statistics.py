r"""Statistics for claims over seeds and users: summaries, paired tests, Holm's correction.

Two questions a results table must answer before it says "better":

1. **How much does a number move with the seed?** :func:`seed_summary` gives the mean, the sample
   standard deviation (``ddof=1``) and a 95 % Student-t confidence interval of the mean over the
   ``n`` seeds:

   .. math:: \bar x \pm t_{0.975,\,n-1}\, s / \sqrt{n}.

2. **Is the difference between two models larger than the users' spread?** :func:`paired_tests`
   compares two models' per-user metrics on the same test users (``a_u``, ``b_u``; each the mean
   over that model's seeds): the paired t-test on :math:`d_u = b_u - a_u`
   (:math:`t = \bar d / (s_d/\sqrt{N})`, ``N - 1`` degrees of freedom) and the Wilcoxon
   signed-rank test (zero differences dropped, ``scipy.stats.wilcoxon``'s default), both
   two-sided. When a table compares one reference row with ``m`` others, :func:`holm` adjusts
   the ``m`` p-values for multiple comparisons (Holm's step-down: sort ascending,
   :math:`\tilde p_{(i)} = \max_{j \le i} \min(1, (m - j + 1)\, p_{(j)})`), which controls the
   family-wise error rate without assuming independence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lirdrec.errors import DataError

__all__ = ["SeedSummary", "seed_summary", "PairedTest", "paired_tests", "holm",
           "PER_USER_FILE", "write_per_user", "read_per_user"]

#: Per-user test metrics of a run, in its run directory.
PER_USER_FILE = "per_user_test.npz"


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample std, count and 95 % t-interval of one metric over seeds."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


def seed_summary(values: Sequence[float], confidence: float = 0.95) -> SeedSummary:
    """Summarise one metric over seeds (``std`` and the interval are NaN for one seed).

    >>> s = seed_summary([0.30, 0.32, 0.34])
    >>> round(s.mean, 4), round(s.std, 4), s.n, round(s.ci_low, 4), round(s.ci_high, 4)
    (0.32, 0.02, 3, 0.2703, 0.3697)
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        raise ValueError("seed_summary: no values")
    mean = float(x.mean())
    if n == 1:
        return SeedSummary(mean, math.nan, 1, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return SeedSummary(mean, std, n, mean - half, mean + half)


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of ``b`` against ``a`` over the same users (two-sided p-values)."""

    n_users: int
    mean_diff: float  # mean of b - a
    t_stat: float
    t_p: float
    wilcoxon_stat: float
    wilcoxon_p: float


def paired_tests(a: np.ndarray, b: np.ndarray) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of ``b - a`` (same users, same order).

    Identical inputs give p = 1 for both tests (scipy returns NaN for the t-test there).
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_tests: need two 1-D arrays of one length, got {a.shape}, "
                         f"{b.shape}")
    d = b - a
    if len(d) < 2 or not np.any(d != 0):
        return PairedTest(len(d), float(d.mean()) if len(d) else 0.0, 0.0, 1.0, 0.0, 1.0)
    if np.all(d == d[0]):  # constant non-zero shift: t undefined (s_d = 0); the sign is certain
        t_stat, t_p = math.copysign(math.inf, d[0]), 0.0
    else:
        t = stats.ttest_rel(b, a)
        t_stat, t_p = float(t.statistic), float(t.pvalue)
    w = stats.wilcoxon(d)
    return PairedTest(len(d), float(d.mean()), t_stat, t_p, float(w.statistic), float(w.pvalue))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the input order (NaN entries stay NaN, not counted).

    >>> holm([0.01, 0.04, 0.03]).round(4).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def write_per_user(run_dir: str | Path, users: np.ndarray, metrics: dict[str, np.ndarray]) -> Path:
    """Save a run's per-user test metrics (``users`` + one float32 array per metric) as ``.npz``."""
    from lirdrec.utils.io import atomic_write

    path = Path(run_dir) / PER_USER_FILE
    arrays = {"users": np.asarray(users, dtype=np.int64)}
    arrays.update({k: np.asarray(v, dtype=np.float32) for k, v in metrics.items()})
    with atomic_write(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def read_per_user(run_dir: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """``(users, {metric: values})`` of a run, or ``None`` if it has no per-user file."""
    path = Path(run_dir) / PER_USER_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            users = z["users"]
            metrics = {k: z[k].astype(np.float64) for k in z.files if k != "users"}
    except (ValueError, KeyError, OSError) as exc:
        raise DataError(path, message=f"not a per-user metrics file ({exc})") from None
    return users, metrics
