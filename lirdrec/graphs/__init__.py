"""Graphs built from the training interactions and the item features.

- :func:`bipartite_adjacency`: :math:`\\hat A = D^{-1/2} A D^{-1/2}` of the user-item graph.
- :func:`build_knn_graph`: chunked cosine top-k item-item graph.
- :func:`combine_graphs`: weighted sum of sparse graphs.
- :func:`spmm`, :func:`propagate_sum`, :func:`residual_spmm`: sparse products with fast backward.
"""

from lirdrec.graphs.bipartite import bipartite_adjacency, bipartite_edge_index
from lirdrec.graphs.knn import build_knn_graph, combine_graphs, knn_indices
from lirdrec.graphs.sparse import (
    propagate_sum,
    residual_spmm,
    sparse_from_coo,
    spmm,
    to_coo_parts,
    transpose_csr,
)

__all__ = [
    "bipartite_adjacency",
    "bipartite_edge_index",
    "build_knn_graph",
    "combine_graphs",
    "knn_indices",
    "propagate_sum",
    "residual_spmm",
    "sparse_from_coo",
    "spmm",
    "transpose_csr",
    "to_coo_parts",
]
