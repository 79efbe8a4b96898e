"""Item-item k-nearest-neighbour graphs from feature matrices, built in row chunks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lirdrec.errors import ConfigError
from lirdrec.graphs.sparse import sparse_from_coo, to_coo_parts

__all__ = ["auto_chunk_size", "build_cold_item_graph", "build_item_graph", "build_knn_graph",
           "combine_graphs", "knn_indices", "knn_modality_weights", "max_combine_graphs"]


#: Bytes of the (chunk, I) float32 similarity block when ``chunk_size`` is ``None`` ...
CHUNK_BYTES = 4 * 2**20
#: ... but at least this many rows (each chunk reads every feature row once: fewer rows cost time).
MIN_CHUNK_ROWS = 128


def auto_chunk_size(num_items: int, budget_bytes: int = CHUNK_BYTES,
                    min_rows: int = MIN_CHUNK_ROWS) -> int:
    """The kNN chunk policy: rows per chunk so one float32 ``(chunk, I)`` similarity block stays
    within ``budget_bytes`` (4 MiB), but at least ``min_rows`` rows and at most ``num_items``.

    Every kNN builder of the library uses it when given no ``chunk_size``. The chunk changes
    memory and time only: neighbours and values are the same for any chunk size (tested with
    sizes that do not divide :math:`I`).

    >>> auto_chunk_size(100_000), auto_chunk_size(1_000), auto_chunk_size(50)
    (128, 1000, 50)
    """
    rows = max(int(min_rows), budget_bytes // (4 * max(num_items, 1)))
    return max(1, min(num_items, rows))


@torch.no_grad()
def knn_indices(x: Tensor, k: int, chunk_size: int | None = None, *,
                shrink: float = 0.0, keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""Cosine top-``k`` neighbours of every row of ``x``, the row itself included (or, given
    ``keys``, its top-``k`` among the rows of ``keys``; indices are then rows of ``keys``).

    Rows are L2-normalised once; each chunk of ``chunk_size`` rows (default: see
    :func:`auto_chunk_size`) is multiplied with all rows and
    only its top-``k`` kept, so peak memory is :math:`O(\text{chunk}\cdot I + I\cdot k)`, never
    :math:`I \times I`. With ``shrink`` :math:`h > 0` the similarity is the shrunk cosine of
    ItemKNN (Dacrema et al., RecSys 2019)
    :math:`s_{ij} = \mathbf{x}_i^\top\mathbf{x}_j / (\lVert\mathbf{x}_i\rVert
    \lVert\mathbf{x}_j\rVert + h)`, which ranks pairs of short vectors lower.

    Shapes:
        - x :math:`(I, d)`, keys :math:`(J, d)` -> values, indices :math:`(I, k)` (similarity,
          descending)

    >>> v, i = knn_indices(torch.tensor([[3., 4.], [6., 8.], [0., 1.]]), 2, shrink=25.)
    >>> i[0].tolist(), [round(float(s), 4) for s in v[0]]   # 50/(5*10+25), 25/(5*5+25)
    ([1, 0], [0.6667, 0.5])
    """
    n = x.shape[0]
    m = n if keys is None else keys.shape[0]
    if not 1 <= k <= m:
        raise ConfigError(f"knn: k must be in [1, {m}] for {m} items, got {k}")
    if shrink < 0:
        raise ConfigError(f"knn: shrink must be >= 0, got {shrink!r}")
    chunk_size = auto_chunk_size(m) if chunk_size is None else int(chunk_size)
    x = x.float()
    xn = F.normalize(x, dim=1) if shrink == 0 else x
    norms = x.norm(dim=1)  # (I,), read only with shrink
    if keys is None:
        kn, key_norms = xn, norms
    else:
        keys = keys.float()
        kn = F.normalize(keys, dim=1) if shrink == 0 else keys
        key_norms = keys.norm(dim=1)
    values = torch.empty(n, k, device=x.device)
    indices = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        sim = xn[start:stop] @ kn.t()  # (c, J)
        if shrink > 0:
            sim = sim / (norms[start:stop, None] * key_norms[None, :] + shrink)
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
    shrink: float = 0.0,
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
        chunk_size (int | None): rows per similarity chunk; ``None``: :func:`auto_chunk_size`.
            (default: ``None``)
        shrink (float): :math:`h` of the shrunk cosine of :func:`knn_indices` (ItemKNNCBF);
            ``0`` is the plain cosine. (default: ``0.0``)

    Returns:
        Sparse CSR tensor :math:`(I, I)` with exactly :math:`k` entries per row.

    >>> g = build_knn_graph(torch.eye(3), k=1).to_dense()
    >>> g.tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if normalization not in ("sym", "row", "none"):
        raise ConfigError("knn: normalization must be 'sym', 'row' or 'none', "
                          f"got {normalization!r}")
    n = x.shape[0]
    values, indices = knn_indices(x, k, chunk_size, shrink=shrink)
    dev = x.device  # built where the features are (a CUDA kNN stays on the GPU)
    row = torch.arange(n, device=dev).repeat_interleave(k)
    col = indices.reshape(-1)
    val = values.reshape(-1) if weighted else torch.ones(n * k, device=dev)
    deg = torch.zeros(n, device=dev).index_add_(0, row, val)
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
    return sparse_from_coo(torch.cat(rows), torch.cat(cols), torch.cat(vals),
                           tuple(graphs[0].shape))


def max_combine_graphs(graphs: Sequence[Tensor]) -> Tensor:
    r"""Entry-wise maximum of sparse graphs over the union of their entries (SMORE's max-pooled
    fusion graph): :math:`S_{ij} = \max\{(S_m)_{ij} : (i, j) \text{ stored in } S_m\}`; an
    entry stored in one graph only keeps that graph's value.

    >>> a = torch.tensor([[0.5, 0.0], [0.0, 1.0]]).to_sparse_csr()
    >>> b = torch.tensor([[0.2, 0.3], [0.0, 0.0]]).to_sparse_csr()
    >>> max_combine_graphs([a, b]).to_dense().tolist()
    [[0.5, 0.30000001192092896], [0.0, 1.0]]
    """
    parts = [to_coo_parts(g) for g in graphs]
    n, m = graphs[0].shape
    row = torch.cat([p[0] for p in parts])
    col = torch.cat([p[1] for p in parts])
    val = torch.cat([p[2] for p in parts])
    keys, inverse = torch.unique(row * m + col, return_inverse=True)
    out = torch.full((len(keys),), -torch.inf, dtype=val.dtype).scatter_reduce(
        0, inverse, val, "amax")
    return sparse_from_coo(keys // m, keys % m, out, (n, m))


def knn_modality_weights(
    modalities: Sequence[str], mm_image_weight: float, image_modality: str = "image"
) -> dict[str, float]:
    r"""The mixing rule of per-modality item graphs (LIRDRec, FREEDOM): how
    ``mm_image_weight`` :math:`w` generalises to :math:`|M|` modalities.

    The references have two modalities and use :math:`S = w S_v + (1-w) S_t`. Here the modality
    in the "image slot" gets :math:`w` and the others share :math:`1 - w` equally:

    - the image slot is ``image_modality`` if present, otherwise the first modality listed
      (so ``text, meta`` puts text there; pass ``image_modality="meta"`` to put meta there, as
      the LIRDRec reference's text+meta run did);
    - with one modality its weight is 1 (:math:`w` unused).

    >>> knn_modality_weights(["image", "text", "meta"], 0.1)
    {'image': 0.1, 'text': 0.45, 'meta': 0.45}
    >>> knn_modality_weights(["text", "meta"], 0.2, image_modality="meta")
    {'text': 0.8, 'meta': 0.2}
    >>> knn_modality_weights(["image"], 0.1)
    {'image': 1.0}
    """
    names = list(modalities)
    if len(names) == 1:
        return {names[0]: 1.0}
    slot = image_modality if image_modality in names else names[0]
    rest = (1.0 - float(mm_image_weight)) / (len(names) - 1)
    return {m: float(mm_image_weight) if m == slot else rest for m in names}


def build_item_graph(
    features: Mapping[str, Tensor],
    knn_k: int = 10,
    mm_image_weight: float = 0.1,
    image_modality: str = "image",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Frozen item-item graph :math:`S = \sum_m \omega_m S_m` from raw features (LIRDRec's and
    FREEDOM's).

    :math:`S_m` is the cosine top-``knn_k`` graph of :math:`\mathbf{X}_m` (self included, unit
    weights, :math:`D^{-1/2} S D^{-1/2}` by row sums, so every kept value is :math:`1/k`) from
    :func:`build_knn_graph`, built in row chunks (memory :math:`O(c\,I + I k)`);
    :math:`\omega` from :func:`knn_modality_weights`.

    Args:
        features (Mapping[str, Tensor]): modality -> :math:`(I, d_m)`.
        knn_k (int): :math:`k`. (default: ``10``)
        mm_image_weight (float): :math:`w`. (default: ``0.1``)
        image_modality (str): modality of the image slot. (default: ``"image"``)
        chunk_size (int | None): rows per similarity chunk; ``None``: :func:`auto_chunk_size`.

    Returns:
        Sparse CSR :math:`(I, I)`.

    >>> g = build_item_graph({"image": torch.eye(3), "text": torch.eye(3)}, knn_k=1)
    >>> g.to_dense().diagonal().tolist()     # 0.1 * 1 + 0.9 * 1
    [1.0, 1.0, 1.0]
    """
    weights = knn_modality_weights(list(features), mm_image_weight, image_modality)
    graphs = [build_knn_graph(features[m], k=knn_k, chunk_size=chunk_size) for m in weights]
    return combine_graphs(graphs, list(weights.values()))


@torch.no_grad()
def build_cold_item_graph(
    features: Mapping[str, Tensor],
    warm: Tensor,
    knn_k: int = 10,
    mm_image_weight: float = 0.1,
    image_modality: str = "image",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Row-stochastic map from every cold item to its ``knn_k`` nearest WARM items in content
    space (LIRDRec's ``cold_item_rep="knn"``).

    The similarity mixes the modalities as the item graph does (:func:`knn_modality_weights`
    :math:`\omega`): :math:`s_{ij} = \sum_m \omega_m \cos(\mathbf{x}_{m,i}, \mathbf{x}_{m,j})`,
    the cosine of the concatenated :math:`[\sqrt{\omega_m}\,\mathbf{x}_{m,i}/\lVert
    \mathbf{x}_{m,i}\rVert]_m` (unit rows), searched over the warm items only
    (:func:`knn_indices` with ``keys``). Row :math:`i` of the result is
    :math:`\frac1k\mathbb{1}[j \in N_k^{\text{warm}}(i)]` for a cold item (``warm[i]`` false)
    and empty for a warm one.

    Args:
        features (Mapping[str, Tensor]): modality -> :math:`(I, d_m)`.
        warm (Tensor): bool :math:`(I,)`, items with a training interaction.
        knn_k (int): :math:`k`, at most the number of warm items. (default: ``10``)
        mm_image_weight (float): :math:`w` of :func:`knn_modality_weights`. (default: ``0.1``)
        image_modality (str): modality of the image slot. (default: ``"image"``)
        chunk_size (int | None): rows per similarity chunk.

    Returns:
        Sparse CSR :math:`(I, I)`, :math:`k` entries :math:`1/k` in each cold row.

    >>> x = torch.tensor([[1., 0.], [0., 1.], [1., .1], [.1, 1.]])
    >>> build_cold_item_graph({"image": x}, torch.tensor([1, 1, 0, 0]).bool(), 1).to_dense()
    tensor([[0., 0., 0., 0.],
            [0., 0., 0., 0.],
            [1., 0., 0., 0.],
            [0., 1., 0., 0.]])
    """
    warm = torch.as_tensor(warm, dtype=torch.bool)
    num_items = int(warm.numel())
    weights = knn_modality_weights(list(features), mm_image_weight, image_modality)
    x = torch.cat([F.normalize(features[m].float(), dim=1) * w ** 0.5
                   for m, w in weights.items()], dim=1)  # (I, sum d_m), unit rows
    warm_ids = warm.nonzero().squeeze(1)
    cold_ids = (~warm).nonzero().squeeze(1)
    if len(warm_ids) == 0:
        raise ConfigError("cold item graph: no warm item (every item lacks training data)")
    k = int(knn_k)
    if not 1 <= k <= len(warm_ids):
        raise ConfigError(f"cold item graph: knn_k must be in [1, {len(warm_ids)}] (the warm "
                          f"items), got {k}")
    _, idx = knn_indices(x[cold_ids], k, chunk_size, keys=x[warm_ids])  # (n_cold, k)
    row = cold_ids.repeat_interleave(k)
    col = warm_ids[idx.reshape(-1)]
    return sparse_from_coo(row, col, torch.full((len(row),), 1.0 / k), (num_items, num_items))
