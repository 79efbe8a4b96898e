"""Run the LMM4Rec study one seed per process (resumable), then gather both seeds.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python results/lmm4rec/run_study.py --seed 999
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python results/lmm4rec/run_study.py --seed 1000
    PYTHONPATH=$PWD python results/lmm4rec/run_study.py          # all seeds: reads finished runs

``--only`` / ``--skip`` select variants by prefix, so several processes can share one folder
without two ever training the same run. ``--out`` moves the run directories (default: the
YAML's ``out``, results/lmm4rec). The
experiment runner skips finished runs and resumes half-finished ones from their checkpoints.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from lirdrec.experiments.runner import load_experiment, run_experiment

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--yaml", default="datasets/experiments/lmm4rec.yaml")
    p.add_argument("--seed", type=int, action="append", help="only these seeds")
    p.add_argument("--out", help="output folder instead of the YAML's")
    p.add_argument("--small", action="store_true")
    p.add_argument("--only", help="only variants starting with this (e.g. lirdrec-)")
    p.add_argument("--skip", help="skip variants starting with this")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    exp = load_experiment(args.yaml)
    if args.seed:
        exp.seeds = args.seed
    exp.models = {k: v for k, v in exp.models.items()
                  if (not args.only or k.startswith(args.only))
                  and not (args.skip and k.startswith(args.skip))}
    if args.out:
        exp.out = Path(args.out)
    run_experiment(exp, small=args.small, show_progress=False)
