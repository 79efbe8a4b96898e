"""Shared test fixtures: tiny datasets written to tmp_path and the ../shared data location."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


#: Set by .ci/run: there ../shared must exist, and a test that needs it fails instead of skipping.
REQUIRE_SHARED = os.environ.get("LIRDREC_REQUIRE_SHARED", "") not in ("", "0")


def shared_path(*parts: str) -> Path:
    """A path under ../shared (the real datasets and reference fixtures).

    Missing: the test is skipped with a one-line reason on a researcher's machine (README says how
    to get data without it), and FAILS under CI (``LIRDREC_REQUIRE_SHARED=1``), so a CI run can
    never pass by skipping what it was meant to check.
    """
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"needs {path} (the repository's sibling ../shared, provided by CI)"
        if REQUIRE_SHARED:
            pytest.fail(msg + "; LIRDREC_REQUIRE_SHARED is set")
        pytest.skip(msg)
    return path


def write_tiny(directory: Path, rows: list[tuple], features: dict[str, np.ndarray] | None = None,
               name: str = "tiny",
               header: str = "userID\titemID\trating\ttimestamp\tx_label") -> Path:
    """Write a small .inter (rows of (user, item, x_label) or full 5-tuples) and feature files."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for r in rows:
        if len(r) == 3:
            u, i, x = r
            lines.append(f"{u}\t{i}\t1\t0\t{x}")
        else:
            lines.append("\t".join(str(v) for v in r))
    (directory / f"{name}.inter").write_text("\n".join(lines) + "\n")
    for m, arr in (features or {}).items():
        np.save(directory / f"{m}_feat.npy", arr)
    return directory


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """3 users, 4 items; every user has train, valid and test rows; image 4x3, text 4x5."""
    rows = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
            (1, 1, 0), (1, 2, 0), (1, 0, 1), (1, 3, 2),
            (2, 2, 0), (2, 3, 0), (2, 1, 1), (2, 0, 2)]
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(4, 3)).astype(np.float32),
             "text": rng.normal(size=(4, 5)).astype(np.float32)}
    return write_tiny(tmp_path / "tiny", rows, feats)


def synthetic_experiment(tmp_path: Path, text: str, num_users: int = 80,
                         num_items: int = 120) -> Path:
    """A synthetic dataset (seed 0, no encoders) in ``tmp_path/syn`` and the experiment file
    ``tmp_path/exp.yaml`` written from ``text`` with ``{data}`` replaced by the dataset's path
    (``str.format``: literal braces doubled, as in an f-string)."""
    from lirdrec.data.synthetic import write_synthetic

    data, _ = write_synthetic(tmp_path / "syn", seed=0, use_encoders=False,
                              num_users=num_users, num_items=num_items)
    f = tmp_path / "exp.yaml"
    f.write_text(text.format(data=data))
    return f
