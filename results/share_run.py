"""Reuse one finished run in a second experiment whose configuration for it is identical.

    python results/share_run.py SRC.yaml SRC_VARIANT DST.yaml DST_VARIANT DATASET [--wait]
        [--seeds 999,1,2] [--point N]

The experiment runner treats a run directory holding ``metrics.json`` as finished and reads it
back. When, for example, the full LIRDRec model of ``ablation.yaml`` is the very same training
as ``lirdrec`` in ``main_table.yaml`` (same data, model and trainer settings, seed), this copies
the finished run directory instead of training it a second time. Training on CPU is
deterministic (same seed => bit-identical metrics), so the copy is what a second training would
produce. The configurations are resolved exactly as the runner resolves them and must be equal,
or nothing is copied; the source's ``config.yaml`` must pass the runner's own check
(:func:`lirdrec.train.run.check_finished_run`: keys a newer version added at their default are
tolerated). ``--wait`` polls until the source run has finished. ``--seeds`` (default 999)
shares every listed seed; ``--point N`` copies into grid point ``N`` of the destination
variant (whose ``grid:`` then makes one of its points the source's configuration). Nothing is
copied if the destination directory already exists (the runner got there first and trains it
itself).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import yaml

from lirdrec.config import resolve
from lirdrec.errors import ConfigError
from lirdrec.experiments import load_experiment
from lirdrec.experiments.runner import _grid_points, run_layers
from lirdrec.train.run import check_finished_run


def run_config(exp_file: str, variant: str, dataset: str, seed: int = 999,
               point: int = 0) -> tuple[dict, Path]:
    """The ``config.yaml`` content and run directory the runner uses (grid point ``point``, full
    mode), resolved with the runner's own layering.
    """
    exp = load_experiment(exp_file)
    mcfg, dcfg = exp.models[variant], exp.datasets[dataset]
    points = _grid_points(mcfg.get("grid"))
    if seed not in exp.seeds or not 0 <= point < len(points):
        sys.exit(f"{exp_file}: {variant} has no grid point {point} or seed {seed} is not run")
    cfg = resolve(mcfg["model"], run_layers(exp, dataset, variant, points[point], seed))
    config = {**cfg.to_dict(), "data": dcfg["data"], "modalities": dcfg.get("modalities"),
              "sample_users": 1.0}
    run_dir = exp.out / "runs" / dataset / variant / f"seed-{seed}" / f"point-{point:03d}"
    return yaml.safe_load(yaml.safe_dump(config, sort_keys=True)), run_dir


def share(src_file: str, src_variant: str, dst_file: str, dst_variant: str, dataset: str,
          seed: int, wait: bool, point: int = 0) -> int:
    """Copy one seed's finished run (into grid point ``point`` of the destination); 0 when
    copied, 1 (with the reason printed) when not.
    """
    src_cfg, src_dir = run_config(src_file, src_variant, dataset, seed)
    dst_cfg, dst_dir = run_config(dst_file, dst_variant, dataset, seed, point)
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
    try:
        check_finished_run(src_dir, src_cfg, json.loads((src_dir / "metrics.json").read_text()))
    except ConfigError as err:
        print(f"not shared: {src_dir}/config.yaml is not the configuration of {src_file}: {err}")
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


def main(argv: list[str]) -> int:
    wait = "--wait" in argv
    args = [a for a in argv if a != "--wait"]
    seeds, point = [999], 0
    if "--seeds" in args:
        i = args.index("--seeds")
        seeds = [int(s) for s in args[i + 1].split(",")]
        del args[i:i + 2]
    if "--point" in args:
        i = args.index("--point")
        point = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 5:
        sys.exit(__doc__)
    return max(share(*args, seed, wait, point) for seed in seeds)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
