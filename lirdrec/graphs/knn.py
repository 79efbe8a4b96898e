"""Item-item k-nearest-neighbour graphs from feature matrices, built in row chunks."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lirdrec.errors import ConfigError
from lirdrec.graphs.sparse import sparse_from_coo, to_coo_parts

__all__ = ["knn_indices", "build_knn_graph", "combine_graphs", "auto_chunk_size"]


#: Bytes of the (chunk, I) similarity block when ``chunk_size`` is ``None``.
CHUNK_BYTES = 128 * 2**20


def auto_chunk_size(num_items: int, budget_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk so one float32 ``(chunk, I)`` similarity block stays within the budget.

    >>> auto_chunk_size(100_000)
    335
    """
    return max(1, min(num_items, budget_bytes // (4 * max(num_items, 1))))


@torch.no_grad()
def knn_indices(x: Tensor, k: int, chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    r"""Cosine top-``k`` neighbours of every row of ``x``, the row itself included.

    Rows are L2-normalised once; each chunk of ``chunk_size`` rows (default: see
    :func:`auto_chunk_size`) is multiplied with all rows and
    only its top-``k`` kept, so peak memory is :math:`O(\text{chunk}\cdot I + I\cdot k)`, never
    :math:`I \times I`.

    Shapes:
        - x :math:`(I, d)` -> values, indices :math:`(I, k)` (cosine, descending)
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ConfigError(f"knn: k must be in [1, {n}] for {n} items, got {k}")
    chunk_size = auto_chunk_size(n) if chunk_size is None else int(chunk_size)
    xn = F.normalize(x.float(), dim=1)
    values = torch.empty(n, k, device=x.device)
    indices = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sim = xn[start:stop] @ xn.t()  # (c, I)
        v, i = torch.topk(sim, k, dim=1)
        values[start:stop] = v
        indices[start:stop] = i
    return values, indices


@torch.no_grad()
def build_knn_graph(
    x: Tensor,
    k: int = 10,
    normalization: str = "sym",
    weighted: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Sparse item-item kNN graph of cosine similarity.

    Row :math:`i` keeps its top-:math:`k` cosine neighbours (itself included). Kept entries are 1
    (``weighted=False``, LIRDRec, FREEDOM) or the cosine (``weighted=True``, LATTICE's learned
    graph), then normalised with the row sums :math:`d_i = \sum_j S_{ij}`:

    - ``"sym"``: :math:`S_{ij} / \sqrt{d_i d_j}` (the reference's ``D^{-1/2} S D^{-1/2}`` with
      :math:`D` the row sums; with unit weights every kept value is :math:`1/k`);
    - ``"row"``: :math:`S_{ij} / d_i`;
    - ``"none"``: unnormalised.

    Args:
        x (Tensor): features :math:`(I, d)`.
        k (int): neighbours per row. (default: ``10``)
        normalization (str): ``"sym"``, ``"row"`` or ``"none"``. (default: ``"sym"``)
        weighted (bool): keep cosine values instead of ones. (default: ``False``)
        chunk_size (int | None): rows per similarity chunk; ``None`` keeps each
            ``(chunk, I)`` block under 128 MiB. (default: ``None``)

    Returns:
        Sparse CSR tensor :math:`(I, I)` with exactly :math:`k` entries per row.

    >>> g = build_knn_graph(torch.eye(3), k=1).to_dense()
    >>> g.tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if normalization not in ("sym", "row", "none"):
        raise ConfigError(f"knn: normalization must be 'sym', 'row' or 'none', got {normalization!r}")
    n = x.shape[0]
    values, indices = knn_indices(x, k, chunk_size)
    row = torch.arange(n).repeat_interleave(k)
    col = indices.reshape(-1)
    val = values.reshape(-1) if weighted else torch.ones(n * k)
    deg = torch.zeros(n).index_add_(0, row, val)
    if normalization == "sym":
        inv = deg.clamp_min(1e-12).pow(-0.5)
        val = val * inv[row] * inv[col]
    elif normalization == "row":
        val = val / deg.clamp_min(1e-12)[row]
    return sparse_from_coo(row, col, val, (n, n))


def combine_graphs(graphs: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    r"""Weighted sum :math:`\sum_m w_m S_m` of sparse graphs of equal shape, as one CSR tensor."""
    if len(graphs) != len(weights) or not graphs:
        raise ConfigError(f"combine_graphs: {len(graphs)} graphs but {len(weights)} weights")
    rows, cols, vals = [], [], []
    for g, w in zip(graphs, weights):
        r, c, v = to_coo_parts(g)
        rows.append(r)
        cols.append(c)
        vals.append(v * float(w))
    return sparse_from_coo(torch.cat(rows), torch.cat(cols), torch.cat(vals), tuple(graphs[0].shape))
