r"""Graphs built from the training interactions and the item features.

- :func:`bipartite_adjacency`: :math:`\hat A = D^{-1/2} A D^{-1/2}` of the user-item graph;
  :func:`mean_adjacency`: :math:`D^{-1} A` (neighbour mean).
- :func:`build_knn_graph`: chunked cosine top-k item-item graph (:func:`auto_chunk_size`, the
  one chunk policy); :func:`build_item_graph`: the frozen multimodal item graph of LIRDRec and
  FREEDOM, mixed by :func:`knn_modality_weights`; :func:`build_cold_item_graph`: each cold item's
  mean over its nearest warm items (LIRDRec's ``cold_item_rep="knn"``).
- :func:`degree_sensitive_prune`: FREEDOM's and LayerGCN's edge pruning of the user-item graph,
  over the edges :func:`user_item_edges` reads off it.
- :func:`user_cooccurrence_graph`: each user's top-k users by items in common (DualGNN), chunked;
  :func:`adjacency_and_user_graph`: it and :math:`\hat A` together (DualGNN, DRAGON).
- :func:`hypergraph_propagate`: LGMRec's item -> hyperedge -> item/user passing.
- :func:`item_degrees`, :func:`degree_features`: items' training degrees and the popularity
  input channel built from them (LIRDRec's ``popularity_channel="degree"``).
- :func:`interaction_matrix`: the binary :math:`U \times I` training matrix :math:`R`;
  :func:`user_item_block`: the normalised block :math:`\hat A_{UI}` of :math:`\hat A`.
- :func:`combine_graphs`: weighted sum of sparse graphs (:func:`max_combine_graphs`: maximum).
- :func:`csr_rows`: dense rows of a CSR matrix.
- :func:`propagate_edges`, :func:`weighted_spmm` (+ :func:`edge_layout`), :func:`edge_scores`,
  :func:`edge_softmax`: products, sampled products and per-node softmax over learned edge
  weights.
- :func:`propagate`: LightGCN's layer mean or sum; :func:`spmm`, :func:`propagate_sum`,
  :func:`residual_spmm`: sparse products with fast backward.

Models never build graphs themselves: their ``from_dataset`` asks this package and passes the
graphs to the constructor.
"""

from lirdrec.graphs.bipartite import (
    bipartite_adjacency,
    bipartite_edge_index,
    degree_sensitive_prune,
    interaction_matrix,
    mean_adjacency,
    user_item_block,
    user_item_edges,
)
from lirdrec.graphs.cooccurrence import adjacency_and_user_graph, user_cooccurrence_graph
from lirdrec.graphs.degree import degree_features, item_degrees
from lirdrec.graphs.hypergraph import hypergraph_propagate
from lirdrec.graphs.knn import (
    auto_chunk_size,
    build_cold_item_graph,
    build_item_graph,
    build_knn_graph,
    combine_graphs,
    knn_indices,
    knn_modality_weights,
    max_combine_graphs,
)
from lirdrec.graphs.sparse import (
    csr_rows,
    edge_layout,
    edge_scores,
    edge_softmax,
    propagate,
    propagate_edges,
    propagate_sum,
    residual_spmm,
    sparse_from_coo,
    spmm,
    to_coo_parts,
    transpose_csr,
    weighted_spmm,
)

__all__ = [
    "adjacency_and_user_graph",
    "auto_chunk_size",
    "bipartite_adjacency",
    "bipartite_edge_index",
    "build_cold_item_graph",
    "build_item_graph",
    "build_knn_graph",
    "combine_graphs",
    "csr_rows",
    "degree_features",
    "degree_sensitive_prune",
    "edge_layout",
    "edge_scores",
    "edge_softmax",
    "hypergraph_propagate",
    "interaction_matrix",
    "item_degrees",
    "mean_adjacency",
    "knn_indices",
    "knn_modality_weights",
    "max_combine_graphs",
    "propagate",
    "propagate_edges",
    "propagate_sum",
    "residual_spmm",
    "sparse_from_coo",
    "spmm",
    "transpose_csr",
    "user_item_block",
    "user_item_edges",
    "to_coo_parts",
    "user_cooccurrence_graph",
    "weighted_spmm",
]
