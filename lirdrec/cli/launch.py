"""``--nproc N``: run a command in N local processes under ``torchrun``.

``lirdrec train ... --nproc 2`` is ``torchrun --standalone --nproc_per_node 2 -m lirdrec train
...``: this module rewrites the command line and calls torchrun's own entry point, whose elastic
agent starts the workers, stops the others when one fails and reports which. A worker sees
torchrun's ``RANK``/``WORLD_SIZE`` and joins the process group itself
(:func:`lirdrec.train.distributed.init_distributed`), exactly as under a hand-written
``torchrun`` command (several machines included).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

__all__ = ["add_nproc_option", "launch_if_asked", "strip_nproc", "is_worker_rank_zero"]


def add_nproc_option(p: argparse.ArgumentParser) -> None:
    """``--nproc N`` (default 1)."""
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="run in N local processes (torchrun; gloo on CPU, NCCL on GPUs); each "
                        "gets cores // N threads")


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``.

    >>> strip_nproc(["train", "--nproc", "2", "--model", "mf", "--nproc=3"])
    ['train', '--model', 'mf']
    """
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def is_worker_rank_zero() -> bool:
    """Whether this process prints results: rank 0 of a torchrun run, or a lone process."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def launch_if_asked(args: argparse.Namespace, argv: Sequence[str]) -> int | None:
    """Run ``argv`` (without ``--nproc``) under torchrun when ``--nproc`` > 1 and this process
    is not a worker already; returns the exit status, or ``None`` to run here.
    """
    from lirdrec.errors import ConfigError

    nproc = int(getattr(args, "nproc", 1) or 1)
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc == 1 or "TORCHELASTIC_RUN_ID" in os.environ or "RANK" in os.environ:
        return None
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from lirdrec.train.distributed import threads_per_rank

    # threads per rank set here, so torchrun does not print its OMP_NUM_THREADS=1 banner
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_rank(nproc)))
    cmd = ["--standalone", "--nproc_per_node", str(nproc), "-m", "lirdrec", *strip_nproc(argv)]
    try:
        run(get_args_parser().parse_args(cmd))
    except ChildFailedError as exc:
        failed = ", ".join(f"rank {r} (exit code {f.exitcode})"
                           for r, f in sorted(exc.failures.items()))
        print(f"lirdrec: error: {nproc}-process run failed: {failed}; the first failing rank's "
              "message is above", file=sys.stderr)
        return 1
    return 0
