"""Figures of the gradient-bias diagnostic, drawn from the CSVs the script writes.

Every figure has one panel per model (a grid of at most three columns); :func:`plot_all` reads
``grad_bias.csv``, ``item_grad_by_popularity.csv`` and ``probe.csv`` from a directory and writes
``grad_norms.png``, ``grad_ratio.png``, ``popularity.png``, ``convergence.png`` and ``probe.png``
next to them. matplotlib runs with the Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "plot_all",
    "plot_convergence",
    "plot_grad_norms",
    "plot_grad_ratio",
    "plot_popularity",
    "plot_probe",
]

GROUP_COLORS = {
    "item_id": "tab:red",
    "item_feature": "tab:blue",
    "user": "tab:green",
    "other": "tab:gray",
}
GROUP_LABELS = {
    "item_id": "item ID table",
    "item_feature": "item feature params",
    "user": "user params",
    "other": "other",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8}
    )
    return plt


def _grid(models: Sequence[str], nrows_per_model: int = 1, height: float = 3.4):
    plt = _pyplot()
    n = max(len(models), 1)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows * nrows_per_model,
        ncols,
        squeeze=False,
        figsize=(5.0 * ncols, height * nrows * nrows_per_model),
    )
    panels = []
    for k, name in enumerate(models):
        r, c = divmod(k, ncols)
        panels.append([axes[r * nrows_per_model + j][c] for j in range(nrows_per_model)])
    for k in range(len(models), nrows * ncols):  # hide unused panels
        r, c = divmod(k, ncols)
        for j in range(nrows_per_model):
            axes[r * nrows_per_model + j][c].set_visible(False)
    return plt, fig, panels


def _save(plt, fig, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _steps_per_epoch(d) -> int:
    n_ep = max(d["epoch"].nunique(), 1)
    return max(1, round(d["step"].nunique() / n_ep))


def _trace(ax, x, v, color: str, label: str, window: int, ls: str = "-") -> None:
    """Raw per-step values (faint) and their rolling median over ``window`` steps (bold); a series
    that is zero in most steps (e.g. LATTICE's once-per-epoch graph gradient) is drawn as dots.
    """
    import pandas as pd

    v = np.asarray(v, dtype=float)
    pos = np.where(v > 0, v, np.nan)
    if np.isfinite(pos).mean() < 0.5:
        ax.plot(x, pos, ".", ms=3, color=color, label=f"{label} (steps with a gradient)")
        return
    ax.plot(x, pos, color=color, lw=0.6, alpha=0.3)
    med = pd.Series(pos).rolling(window, center=True, min_periods=1).median().to_numpy()
    ax.plot(x, med, color=color, lw=1.8, ls=ls, label=label)



def _log_panel(ax, title: str, ylabel: str) -> None:
    """Log-scale y axis over optimiser steps, with title, grid and legend."""
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="best")

def _clip_log(ax, values, span: float = 1e-6) -> None:
    """Keep the lowest ``span`` x max of a log axis (a vanishing series would squash the rest)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(bottom=max(v.min() * 0.8, v.max() * span))


def plot_grad_norms(steps, out: Path) -> Path:
    """Per-step gradient L2 norm of each parameter group (log scale), one panel per model."""
    models = list(dict.fromkeys(steps["model"]))
    plt, fig, panels = _grid(models)
    for name, (ax,) in zip(models, panels):
        d = steps[(steps["model"] == name) & (steps["quantity"] == "grad_norm")]
        window = _steps_per_epoch(d)
        for g, color in GROUP_COLORS.items():
            s = d[d["group"] == g].sort_values("step")
            v = s["value"].to_numpy()
            if len(v) and (v > 0).any():
                _trace(ax, s["step"].to_numpy(), v, color, GROUP_LABELS[g], window)
        _log_panel(ax, name, "gradient L2 norm")
        _clip_log(ax, d["value"])
    return _save(
        plt,
        fig,
        out,
        "Gradient norm per parameter group (faint: every step, the spikes are "
        "each epoch's small last batch; bold: rolling median over one epoch; axis clipped at "
        "1e-6 x max)",
    )


def plot_grad_ratio(steps, out: Path) -> Path:
    """Feature / ID gradient ratio per step (norm and RMS per element), log scale."""
    models = list(dict.fromkeys(steps["model"]))
    plt, fig, panels = _grid(models)
    for name, (ax,) in zip(models, panels):
        d = steps[steps["model"] == name]
        w = d.pivot_table(index="step", columns=["group", "quantity"], values="value")
        need = [("item_id", "grad_norm"), ("item_feature", "grad_norm")]
        if (
            not all(k in w.columns for k in need)
            or not (w[("item_feature", "grad_norm")] > 0).any()
        ):
            _empty(ax, f"{name}:\nno item-ID table or no gradient\nto feature parameters")
            ax.set_title(name)
            continue
        window = _steps_per_epoch(d)
        for q, color, label, ls in (
            ("grad_norm", "tab:purple", "‖g_feature‖ / ‖g_ID‖", "-"),
            ("grad_rms", "tab:orange", "RMS_feature / RMS_ID (per element)", "--"),
        ):
            den = w[("item_id", q)].where(w[("item_id", q)] > 0)
            r = (w[("item_feature", q)] / den).to_numpy(float)
            _trace(ax, w.index.to_numpy(), r, color, label, window, ls)
        ax.axhline(1.0, color="black", lw=0.8, ls="--", label="ratio = 1")
        _log_panel(ax, name, "feature / ID gradient")
    return _save(
        plt,
        fig,
        out,
        "Gradient ratio: item feature parameters vs item ID table "
        "(bold: rolling median over one epoch)",
    )


def plot_popularity(items, out: Path) -> Path:
    """Last epoch: mean per-step gradient norm reaching an item's ID row and its feature output,
    by popularity bucket (tail to head), with the fraction of steps the ID row was touched.
    """
    models = list(dict.fromkeys(items["model"]))
    plt, fig, panels = _grid(models, height=3.8)
    for name, (ax,) in zip(models, panels):
        d = items[items["model"] == name]
        d = d[d["epoch"] == d["epoch"].max()].sort_values("bucket")
        x = np.arange(len(d))
        idg, fg = d["id_grad"].to_numpy(float), d["feature_grad"].to_numpy(float)
        if not (np.nan_to_num(idg) > 0).any() and not (np.nan_to_num(fg) > 0).any():
            _empty(ax, f"{name}: no per-item gradient recorded")
            ax.set_title(name)
            continue
        ax.bar(x - 0.2, np.where(idg > 0, idg, np.nan), 0.4, color="tab:red", label="ID row")
        ax.bar(x + 0.2, np.where(fg > 0, fg, np.nan), 0.4, color="tab:blue", label="feature output")
        ax.set_yscale("log")
        labels = [
            f"{lab}\n{lo}–{hi}" for lab, lo, hi in zip(d["label"], d["degree_min"], d["degree_max"])
        ]
        ax.set_xticks(x, labels, fontsize=7)
        touched = d["id_touched"].to_numpy(float)
        for xi, t, h in zip(x, touched, idg):
            if np.isfinite(t) and np.isfinite(h) and h > 0:
                ax.annotate(f"{100 * t:.0f}%", (xi - 0.2, h), ha="center", va="bottom", fontsize=7)
        ax.set_xlabel("item popularity bucket (training degree)")
        ax.set_ylabel("mean per-step grad norm per item")
        ax.set_title(
            f"{name} (epoch {int(d['epoch'].max())}; % = steps ID row touched)", fontsize=9
        )
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.legend(loc="best")
    return _save(plt, fig, out, "Gradient reaching each item, by popularity")


def plot_convergence(steps, out: Path) -> Path:
    """Top: relative distance of each group to its final value per epoch (log); bottom: cosine
    between consecutive epoch updates.
    """
    models = list(dict.fromkeys(steps["model"]))
    plt, fig, panels = _grid(models, nrows_per_model=2, height=3.0)
    for name, (ax1, ax2) in zip(models, panels):
        d = steps[(steps["model"] == name) & steps["step"].isna()]
        for g, color in GROUP_COLORS.items():
            s = d[(d["group"] == g) & (d["quantity"] == "rel_dist_to_final")].sort_values("epoch")
            v = s["value"].to_numpy(float)
            if len(v) and (v > 0).any():
                ax1.plot(
                    s["epoch"],
                    np.where(v > 0, v, np.nan),
                    "o-",
                    ms=2.5,
                    color=color,
                    label=GROUP_LABELS[g],
                )
            c = d[(d["group"] == g) & (d["quantity"] == "update_cosine")].sort_values("epoch")
            if len(c):
                ax2.plot(c["epoch"], c["value"], "o-", ms=2.5, color=color, label=GROUP_LABELS[g])
        ax1.set_yscale("log")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("‖θ_e − θ_final‖ / ‖θ_final‖")
        ax1.set_title(f"{name}: distance to final value")
        ax1.grid(alpha=0.3, which="both")
        ax1.legend(loc="best")
        ax2.axhline(0.0, color="black", lw=0.6)
        ax2.set_ylim(-1.05, 1.05)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("cos(Δθ_e, Δθ_e−1)")
        ax2.set_title(f"{name}: consecutive epoch updates")
        ax2.grid(alpha=0.3)
    return _save(plt, fig, out, "Converged vs still moving")


def plot_probe(probe, out: Path) -> Path:
    """Validation Recall@20 per epoch: full model, ID part only, feature part only."""
    models = list(dict.fromkeys(probe["model"]))
    plt, fig, panels = _grid(models)
    for name, (ax,) in zip(models, panels):
        d = probe[probe["model"] == name].sort_values("epoch")
        for col, color, label in (
            ("full", "black", "full model"),
            ("id_only", "tab:red", "ID part only"),
            ("feature_only", "tab:blue", "feature part only"),
        ):
            v = d[col].to_numpy(float)
            if np.isfinite(v).any():
                ax.plot(d["epoch"], v, "o-", ms=2.5, color=color, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Recall@20")
        ax.set_title(name)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return _save(plt, fig, out, "Probe: item representation with one part zeroed")


def plot_all(out_dir: str | Path) -> list[Path]:
    """Read the script's CSVs in ``out_dir`` and write the five figures there."""
    import pandas as pd

    out = Path(out_dir)
    steps = pd.read_csv(out / "grad_bias.csv")
    items = pd.read_csv(out / "item_grad_by_popularity.csv")
    probe = pd.read_csv(out / "probe.csv")
    paths = [
        plot_grad_norms(steps[steps["step"].notna()], out / "grad_norms.png"),
        plot_grad_ratio(steps[steps["step"].notna()], out / "grad_ratio.png"),
        plot_popularity(items, out / "popularity.png"),
        plot_convergence(steps, out / "convergence.png"),
    ]
    if len(probe):
        paths.append(plot_probe(probe, out / "probe.png"))
    logger.info("figures written: %s", ", ".join(p.name for p in paths))
    return paths
