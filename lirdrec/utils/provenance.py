"""Which code produced a run: written into every run directory's ``metrics.json``.

Two runs of the same configuration and seed give bit-identical numbers only with the same code;
a change that reorders float operations (summing graph layers by Horner's rule instead of one by
one, say) moves a 150-epoch run's selected epoch and test metrics by as much as a seed does. A
run therefore records the package version, the directory the package was imported from (which
checkout ran: ``python -m`` puts the working directory before ``PYTHONPATH``), and, when that
directory is inside a git checkout, its commit and whether the package's files differed from it.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import torch

__all__ = ["__version__", "code_version", "git_state"]

#: The package version (``lirdrec.__version__``; setup.cfg carries the same number).
__version__ = "0.1.0"


def git_state(path: str | Path) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout holding ``path``; ``dirty``: tracked files under
    ``path`` differ from the commit. ``(None, None)`` outside a checkout or without git.
    """
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                                 timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit, None if status is None else bool(status)


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"lirdrec", "path", "git_commit", "git_dirty", "torch"}`` of this process, computed once
    (the trainer calls it when its first fit starts: the modules a run uses are imported by then,
    so later edits to the files do not describe it).
    """
    path = Path(__file__).resolve().parents[1]  # the lirdrec package
    commit, dirty = git_state(path)
    return {"lirdrec": __version__, "path": str(path), "git_commit": commit,
            "git_dirty": dirty, "torch": torch.__version__}
