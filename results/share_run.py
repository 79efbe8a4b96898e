"""Reuse one finished run in a second experiment whose configuration for it is identical.

    python results/share_run.py SRC.yaml SRC_VARIANT DST.yaml DST_VARIANT DATASET [--wait]

The experiment runner treats a run directory holding ``metrics.json`` as finished and reads it
back. When, for example, the full LIRDRec model of ``ablation.yaml`` is the very same training
as ``lirdrec`` in ``main_table.yaml`` (same data, model and trainer settings, seed), this copies
the finished run directory instead of training it a second time. Training on CPU is
deterministic (same seed => bit-identical metrics), so the copy is what a second training would
produce. The configurations are resolved exactly as the runner resolves them and must be equal,
or nothing is copied. ``--wait`` polls until the source run has finished. Nothing is copied if
the destination directory already exists (the runner got there first and trains it itself).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import yaml

from lirdrec.config import resolve
from lirdrec.experiments import load_experiment


def run_config(exp_file: str, variant: str, dataset: str, seed: int = 999) -> tuple[dict, Path]:
    """The ``config.yaml`` content and run directory the runner uses (point 0, full mode)."""
    exp = load_experiment(exp_file)
    mcfg, dcfg = exp.models[variant], exp.datasets[dataset]
    if (mcfg.get("grid") or {}) or seed not in exp.seeds:
        sys.exit(f"{exp_file}: {variant} has a grid or seed {seed} is not run; not supported")
    cfg = resolve(mcfg["model"], [exp.trainer, mcfg.get("params") or {}, {}, {}, {"seed": seed}])
    config = {**cfg.to_dict(), "data": dcfg["data"], "modalities": dcfg.get("modalities"),
              "sample_users": 1.0}
    run_dir = exp.out / "runs" / dataset / variant / f"seed-{seed}" / "point-000"
    return yaml.safe_load(yaml.safe_dump(config, sort_keys=True)), run_dir


def main(argv: list[str]) -> int:
    wait = "--wait" in argv
    args = [a for a in argv if a != "--wait"]
    if len(args) != 5:
        sys.exit(__doc__)
    src_file, src_variant, dst_file, dst_variant, dataset = args
    src_cfg, src_dir = run_config(src_file, src_variant, dataset)
    dst_cfg, dst_dir = run_config(dst_file, dst_variant, dataset)
    if src_cfg != dst_cfg:
        diff = {k: (src_cfg.get(k), dst_cfg.get(k)) for k in set(src_cfg) | set(dst_cfg)
                if src_cfg.get(k) != dst_cfg.get(k)}
        print(f"not shared: configurations differ {diff}")
        return 1
    while wait and not (src_dir / "metrics.json").is_file():
        time.sleep(20)
    if not (src_dir / "metrics.json").is_file():
        print(f"not shared: {src_dir} has not finished")
        return 1
    if yaml.safe_load((src_dir / "config.yaml").read_text()) != src_cfg:
        print(f"not shared: {src_dir}/config.yaml is not the configuration of {src_file}")
        return 1
    if dst_dir.exists():
        print(f"not shared: {dst_dir} exists (trained by its own experiment)")
        return 1
    tmp = dst_dir.with_name(dst_dir.name + ".tmp")
    shutil.copytree(src_dir, tmp)
    (tmp / "SHARED_FROM").write_text(f"{src_dir}\n")
    tmp.rename(dst_dir)
    print(f"shared {src_dir} -> {dst_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
