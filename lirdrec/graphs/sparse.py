"""Sparse-tensor helpers: one layout for every graph in the package.

``torch.sparse.mm`` with a CSR left operand is the fastest layout for
``(N, N) @ (N, d)`` on CPU in torch 2.13 (``benchmarks/bench_core.py`` measures CSR against COO),
so every graph is returned as a ``torch.sparse_csr`` tensor.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = [
    "csr_rows",
    "edge_layout",
    "edge_scores",
    "edge_softmax",
    "propagate",
    "propagate_edges",
    "propagate_sum",
    "residual_spmm",
    "weighted_spmm",
    "sparse_from_coo",
    "spmm",
    "to_coo_parts",
    "transpose_csr",
]


def sparse_from_coo(row: Tensor, col: Tensor, value: Tensor, size: tuple[int, int]) -> Tensor:
    """Sparse CSR tensor of ``size`` from COO parts; duplicate entries are summed.

    >>> a = sparse_from_coo(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 0]),
    ...                     torch.tensor([1., 2., 3.]), (2, 2))
    >>> a.to_dense().tolist()
    [[0.0, 3.0], [3.0, 0.0]]
    """
    coo = torch.sparse_coo_tensor(
        torch.stack([row, col]), value, size, check_invariants=False
    ).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


def to_coo_parts(mat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(row, col, value)`` of a sparse CSR or COO tensor."""
    coo = mat.to_sparse_coo().coalesce() if mat.layout != torch.sparse_coo else mat.coalesce()
    idx = coo.indices()
    return idx[0], idx[1], coo.values()


class _SpMM(torch.autograd.Function):
    """``adj @ x`` whose backward multiplies by a stored transpose instead of transposing CSR."""

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj_t = adj_t
        return _mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, _mm(ctx.adj_t, grad)


def _csr_kernel(adj: Tensor, x: Tensor) -> bool:
    """Whether ``addmm`` can run ``adj @ x`` as torch's CPU CSR kernel (same dtype, CPU, CSR)."""
    return adj.layout == torch.sparse_csr and x.device.type == "cpu" and x.dtype == adj.dtype


def _mm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x``; on CPU with a CSR ``adj``, written into an uninitialised output.

    ``torch.sparse.mm`` zero-fills and copies its ``(N, d)`` output around the CSR kernel, about
    4x the kernel's own time for LIRDRec's ``(U+I, 3d)`` propagation on CPU; ``addmm`` with
    ``beta=0`` into an empty tensor runs the kernel alone (``beta=0`` ignores the output's
    contents, rows without entries come out 0). Issue 4, ``benchmarks/bench_lirdrec.py``.
    """
    if _csr_kernel(adj, x):
        out = torch.empty(adj.shape[0], x.shape[1], dtype=x.dtype)
        return torch.addmm(out, adj, x, beta=0.0, out=out)
    return torch.sparse.mm(adj, x)


def spmm(adj: Tensor, x: Tensor, adj_t: Tensor | None = None) -> Tensor:
    r"""Sparse-dense product :math:`A X` with a fast backward :math:`A^\top G`.

    ``torch.sparse.mm`` transposes a CSR operand in every backward (about 7x slower than the
    forward on 2 CPU cores); passing the transpose once (or nothing when :math:`A` is symmetric,
    as the normalised bipartite adjacency is) avoids that. Values of ``adj`` get no gradient.

    Shapes:
        - adj :math:`(N, M)` sparse, x :math:`(M, d)` -> :math:`(N, d)`
    """
    if not x.requires_grad:
        return _mm(adj, x)
    return _SpMM.apply(adj, adj if adj_t is None else adj_t, x)


def _addmm(base: Tensor, adj: Tensor, x: Tensor) -> Tensor:
    """``base + adj @ x`` in one sparse kernel (``beta=1``); ``torch.sparse.mm`` + add elsewhere."""
    if _csr_kernel(adj, x):
        return torch.addmm(base, adj, x)
    return base + torch.sparse.mm(adj, x)


def _horner(adj: Tensor, x: Tensor, steps: int) -> Tensor:
    r""":math:`\sum_{l=0}^{L} A^l x` by Horner's rule :math:`t \leftarrow x + A t` (``steps`` =
    :math:`L`): one sparse kernel per step that accumulates onto a copy of :math:`x`
    (``addmm``, ``beta=1``), no separate layer tensors or additions.
    """
    out = x
    for _ in range(steps):
        out = _addmm(x, adj, out)
    return out


def _residual(adj: Tensor, x: Tensor, power: int) -> Tensor:
    r""":math:`x + A^n x`: :math:`n - 1` plain products, the last one accumulating onto ``x``."""
    h = x
    for _ in range(power - 1):
        h = _mm(adj, h)
    return _addmm(x, adj, h)


class _Polynomial(torch.autograd.Function):
    r"""``propagate_sum`` / ``residual_spmm`` with the same polynomial in :math:`A^\top` as
    backward; nothing is saved for backward (the graph is constant).
    """

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor, steps: int, cumulative: bool):  # type: ignore[override]
        ctx.adj_t, ctx.steps, ctx.cumulative = adj_t, steps, cumulative
        return (_horner if ctx.cumulative else _residual)(adj, x, steps)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        fn = _horner if ctx.cumulative else _residual
        return None, None, fn(ctx.adj_t, grad.contiguous(), ctx.steps), None, None


def propagate_sum(adj: Tensor, x: Tensor, num_layers: int, adj_t: Tensor | None = None) -> Tensor:
    r"""LightGCN-style layer sum :math:`\sum_{l=0}^{L} A^l X` (SUM, not mean, over the layers).

    Evaluated by Horner's rule, :math:`T \leftarrow X + A T` repeated :math:`L` times, and
    nothing is kept for backward, whose gradient :math:`\sum_l (A^\top)^l G` is the same
    recursion with :math:`A^\top` (``adj`` itself when ``adj_t`` is ``None``, i.e. :math:`A`
    symmetric, as the normalised bipartite adjacency is). Each step is one sparse kernel that
    accumulates onto a copy of :math:`X` (``addmm`` with ``beta=1``): no layer tensors, no
    separate additions. The same numbers as summing the layers one by one, up to float rounding.

    Shapes:
        - adj :math:`(N, N)` sparse, x :math:`(N, d)` -> :math:`(N, d)`
    """
    if num_layers == 0:
        return x
    if not x.requires_grad:
        return _horner(adj, x, num_layers)
    return _Polynomial.apply(adj, adj if adj_t is None else adj_t, x, num_layers, True)


def propagate(adj: Tensor, x: Tensor, num_layers: int, combine: str = "mean") -> Tensor:
    r"""The propagation of LightGCN and of every model built on it (FREEDOM, BM3, LIRDRec):
    :math:`\sum_{l=0}^{L}\alpha_l \hat A^l X`.

    ``combine="mean"`` uses :math:`\alpha_l = 1/(L+1)` (LightGCN, MMRec's LightGCN, FREEDOM,
    BM3), ``"sum"`` uses :math:`\alpha_l = 1` (LIRDRec's combination) and is
    :func:`propagate_sum`. The mean adds the layers one by one (:math:`L` calls of
    :func:`spmm`), the order every recorded LightGCN, FREEDOM and BM3 run used, so those numbers
    reproduce to the last bit; :func:`propagate_sum` gives the same sum by Horner's rule, equal
    up to float rounding.

    Shapes:
        - adj :math:`(N, N)` sparse, x :math:`(N, d)` -> :math:`(N, d)`

    >>> a = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).to_sparse_csr()
    >>> x = torch.tensor([[1.0], [3.0]])
    >>> propagate(a, x, 1).tolist(), propagate(a, x, 1, "sum").tolist()   # (x + Ax) / 2, x + Ax
    ([[2.0], [2.0]], [[4.0], [4.0]])
    """
    if combine == "sum":
        return propagate_sum(adj, x, num_layers)
    out = x
    h = x
    for _ in range(num_layers):
        h = spmm(adj, h)
        out = out + h
    return out / (num_layers + 1)


def residual_spmm(adj: Tensor, x: Tensor, power: int = 1, adj_t: Tensor | None = None) -> Tensor:
    r"""Residual graph term :math:`X + A^n X` (LIRDRec's item-item kNN residual), the last product
    accumulated onto :math:`X` in the sparse kernel; backward :math:`G + (A^\top)^n G`.

    Shapes:
        - adj :math:`(N, N)` sparse, x :math:`(N, d)` -> :math:`(N, d)`
    """
    if power == 0:
        return x + x
    if not x.requires_grad:
        return _residual(adj, x, power)
    return _Polynomial.apply(adj, adj if adj_t is None else adj_t, x, power, False)


def csr_rows(mat: Tensor, rows: Tensor) -> Tensor:
    r"""Rows ``rows`` of a sparse CSR matrix as a dense :math:`(B, M)` tensor, gathered from
    ``crow_indices`` without a loop (torch has no ``index_select`` for CSR).

    Shapes:
        - mat :math:`(N, M)` sparse CSR, rows int64 :math:`(B,)` -> :math:`(B, M)`

    >>> m = torch.tensor([[0., 2.], [0., 0.], [5., 7.]]).to_sparse_csr()
    >>> csr_rows(m, torch.tensor([2, 1, 0, 2])).tolist()
    [[5.0, 7.0], [0.0, 0.0], [0.0, 2.0], [5.0, 7.0]]
    """
    crow, col, val = mat.crow_indices(), mat.col_indices(), mat.values()
    rows = rows.to(crow.device)
    starts = crow[rows]
    counts = crow[rows + 1] - starts  # (B,)
    out_row = torch.repeat_interleave(torch.arange(len(rows), device=crow.device), counts)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    idx = torch.repeat_interleave(starts, counts) + torch.arange(len(out_row),
                                                                 device=crow.device) - first
    out = torch.zeros(len(rows), mat.shape[1], dtype=val.dtype, device=val.device)
    out[out_row, col[idx]] = val[idx]
    return out


def propagate_edges(row: Tensor, col: Tensor, val: Tensor, h: Tensor) -> Tensor:
    r""":math:`S\mathbf{H}` for :math:`S` given as edges, differentiable in ``val`` and ``h``
    (learned edge weights: LATTICE's item graph, GRCN's refined user-item graph):
    :math:`(S\mathbf{H})_r = \sum_{e: \mathrm{row}_e = r}
    \mathrm{val}_e\,\mathbf{h}_{\mathrm{col}_e}`.

    Shapes:
        - row, col, val :math:`(E,)`, h :math:`(N, d)` -> :math:`(N, d)`

    >>> propagate_edges(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([2., 3.]),
    ...                 torch.tensor([[1.], [10.]])).tolist()
    [[32.0], [0.0]]
    """
    return torch.zeros_like(h).index_add(0, row, val[:, None] * h[col])


def edge_scores(pattern: Tensor, a: Tensor, b: Tensor) -> Tensor:
    r"""Sampled dense-dense product: :math:`\mathbf{a}_r^\top\mathbf{b}_c` for every entry
    :math:`(r, c)` of the sparse CSR ``pattern``, in its CSR order (by row, then column),
    differentiable in ``a`` and ``b`` (``torch.sparse.sampled_addmm``; about 4x faster on CPU
    than gathering both rows per edge).

    Shapes:
        - pattern :math:`(N, M)` sparse CSR with :math:`E` entries, a :math:`(N, d)`,
          b :math:`(M, d)` -> :math:`(E,)`

    >>> p = torch.tensor([[0., 1.], [1., 1.]]).to_sparse_csr()
    >>> edge_scores(p, torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([[1., 0.], [0., 1.]]))
    tensor([2., 3., 4.])
    """
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


def edge_layout(row: Tensor, col: Tensor, num_rows: int, num_cols: int) -> tuple[Tensor, ...]:
    r"""The index tensors :func:`weighted_spmm` needs for a fixed edge set with changing weights:
    ``(crow, col, crow_t, col_t, perm_t)``, the CSR layout of the edges and of their transpose,
    ``perm_t`` mapping transposed entries to edges. Built once (a model keeps them as buffers).
    The edges must be unique and sorted by ``(row, col)``, the CSR order of their weights.

    >>> crow, col, crow_t, col_t, perm = edge_layout(torch.tensor([0, 0, 1]),
    ...                                              torch.tensor([0, 1, 0]), 2, 2)
    >>> crow.tolist(), crow_t.tolist(), col_t.tolist(), perm.tolist()
    ([0, 2, 3], [0, 2, 3], [0, 1, 0], [0, 2, 1])
    """
    def crow_of(r: Tensor, n: int) -> Tensor:
        crow = torch.zeros(n + 1, dtype=torch.long, device=r.device)
        crow[1:] = torch.cumsum(torch.bincount(r, minlength=n), 0)
        return crow

    perm_t = torch.argsort(col * num_rows + row)
    return crow_of(row, num_rows), col, crow_of(col, num_cols), row[perm_t], perm_t


class _WeightedSpMM(torch.autograd.Function):
    """``S(val) @ h`` with ``S`` in CSR; backward ``S^T g`` (CSR of the transpose, no sort) and
    the sampled product ``(g h^T)`` at the edges for ``val`` (:math:`O(E d)`, never dense).
    """

    @staticmethod
    def forward(ctx, crow, col, crow_t, col_t, perm_t, val, h):  # type: ignore[override]
        ctx.save_for_backward(crow, col, crow_t, col_t, perm_t, val, h)
        mat = _csr(crow, col, val, (len(crow) - 1, h.shape[0]))
        return _mm(mat, h)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        crow, col, crow_t, col_t, perm_t, val, h = ctx.saved_tensors
        grad = grad.contiguous()
        grad_val = grad_h = None
        if ctx.needs_input_grad[5]:
            pattern = _csr(crow, col, torch.ones_like(val), (len(crow) - 1, h.shape[0]))
            grad_val = edge_scores(pattern, grad, h)
        if ctx.needs_input_grad[6]:
            mat_t = _csr(crow_t, col_t, val[perm_t], (h.shape[0], len(crow) - 1))
            grad_h = _mm(mat_t, grad)
        return None, None, None, None, None, grad_val, grad_h


def _csr(crow: Tensor, col: Tensor, val: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, val, size)


def weighted_spmm(layout: tuple[Tensor, ...], val: Tensor, h: Tensor) -> Tensor:
    r""":func:`propagate_edges` for edges with learned weights, as a sparse CSR product whose
    backward reaches ``val`` through a sampled product (:math:`O(E d)`; ``torch.sparse.mm`` of
    a COO matrix with value gradients forms the dense :math:`N \times M` product instead).
    ``layout`` is :func:`edge_layout` of the edges, ``val`` their weights in that order.

    Shapes:
        - val :math:`(E,)`, h :math:`(M, d)` -> :math:`(N, d)`

    >>> layout = edge_layout(torch.tensor([0, 0]), torch.tensor([0, 1]), 2, 2)
    >>> weighted_spmm(layout, torch.tensor([2., 3.]), torch.tensor([[1.], [10.]])).tolist()
    [[32.0], [0.0]]
    """
    return _WeightedSpMM.apply(*layout, val, h)


def edge_softmax(score: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    r"""Softmax of edge scores over the edges that share ``index`` (their target node), as
    torch_geometric's ``utils.softmax``: :math:`\alpha_e = \exp(s_e) / \sum_{e':
    \mathrm{index}_{e'} = \mathrm{index}_e} \exp(s_{e'})`, shifted by each group's maximum
    (a constant inside a group, taken without gradient) for stability.

    Shapes:
        - score, index :math:`(E,)` -> :math:`(E,)`

    >>> a = edge_softmax(torch.tensor([0., 0., 5.]), torch.tensor([1, 1, 0]), 2)
    >>> a.tolist()
    [0.5, 0.5, 1.0]
    """
    top = torch.full((num_nodes,), -torch.inf, dtype=score.dtype, device=score.device)
    top = top.scatter_reduce(0, index, score.detach(), "amax")
    e = torch.exp(score - top[index])
    total = torch.zeros(num_nodes, dtype=score.dtype, device=score.device).index_add(0, index, e)
    return e / total[index]


def transpose_csr(adj: Tensor) -> Tensor:
    """The transpose of a sparse matrix as a CSR tensor."""
    row, col, val = to_coo_parts(adj)
    return sparse_from_coo(col, row, val, (adj.shape[1], adj.shape[0]))
