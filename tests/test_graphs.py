"""Graphs against their dense formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lirdrec.graphs import (
    bipartite_adjacency,
    build_knn_graph,
    combine_graphs,
    propagate_sum,
    residual_spmm,
    spmm,
    transpose_csr,
    user_item_block,
)


def test_bipartite_matches_dense_formula():
    rng = np.random.default_rng(0)
    U, I = 7, 9  # noqa: E741  (I: the item count)
    users, items = rng.integers(0, U, 30), rng.integers(0, I, 30)
    users = np.r_[users, users[:3]]  # duplicates count once
    items = np.r_[items, items[:3]]
    R = np.zeros((U, I))
    R[users, items] = 1.0
    A = np.block([[np.zeros((U, U)), R], [R.T, np.zeros((I, I))]])
    deg = A.sum(1)
    inv = np.where(deg > 0, deg, np.inf) ** -0.5  # degree-0 nodes -> zero rows
    expected = inv[:, None] * A * inv[None, :]
    got = bipartite_adjacency(U, I, users, items)
    assert got.layout == torch.sparse_csr
    np.testing.assert_allclose(got.to_dense().numpy(), expected, atol=1e-6)


def test_bipartite_adjacency_equals_torch_geometric_gcn_norm_bitwise():
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    from lirdrec.graphs.bipartite import bipartite_edge_index

    rng = np.random.default_rng(5)
    U, I = 40, 33  # noqa: E741  some users and items without interactions (degree 0)
    users, items = rng.integers(0, U - 3, 200), rng.integers(0, I - 4, 200)
    edge_index = bipartite_edge_index(U, I, users, items)
    ref_index, ref_w = gcn_norm(edge_index, None, num_nodes=U + I, add_self_loops=False)
    ref = torch.sparse_coo_tensor(ref_index, ref_w, (U + I, U + I)).coalesce()
    got = bipartite_adjacency(U, I, users, items).to_sparse_coo().coalesce()
    assert torch.equal(got.indices(), ref.indices())
    assert torch.equal(got.values(), ref.values())  # the same float32 bits


def _dense_knn(x: np.ndarray, k: int, weighted: bool, norm: str) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    S = np.zeros_like(sim)
    for i in range(len(x)):  # slow reference
        top = np.argsort(-sim[i], kind="stable")[:k]
        S[i, top] = sim[i, top] if weighted else 1.0
    d = S.sum(1)
    if norm == "sym":
        return S / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    if norm == "row":
        return S / d[:, None]
    return S


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("norm", ["sym", "row", "none"])
def test_knn_matches_dense_with_chunks_not_dividing(weighted, norm):
    x = np.random.default_rng(1).normal(size=(23, 6)).astype(np.float32)
    got = build_knn_graph(torch.from_numpy(x), k=4, normalization=norm, weighted=weighted,
                          chunk_size=5).to_dense().numpy()
    np.testing.assert_allclose(got, _dense_knn(x, 4, weighted, norm), atol=1e-5)
    assert ((got != 0).sum(1) == 4).all()


def test_knn_unweighted_sym_is_one_over_k_and_self_included():
    x = torch.randn(50, 8)
    g = build_knn_graph(x, k=5).to_dense()
    assert torch.allclose(g.diagonal(), torch.full((50,), 0.2))
    assert torch.allclose(g[g != 0], torch.tensor(0.2))


def test_combine_graphs_is_weighted_sum():
    a = build_knn_graph(torch.randn(12, 4), k=3)
    b = build_knn_graph(torch.randn(12, 5), k=3)
    c = combine_graphs([a, b], [0.1, 0.9])
    assert torch.allclose(c.to_dense(), 0.1 * a.to_dense() + 0.9 * b.to_dense(), atol=1e-7)


@pytest.mark.parametrize("layers", [0, 1, 2, 3, 4])
def test_propagate_sum_and_residual_match_dense_powers(layers):
    """Horner's layer sum and the residual term against sum_l A^l X and X + A^n X, with their
    gradients, for the symmetric adjacency and a non-symmetric graph with its transpose."""
    g = torch.Generator().manual_seed(layers)
    adj = bipartite_adjacency(5, 6, [0, 1, 2, 3, 4, 0, 2], [0, 1, 2, 3, 5, 4, 4])
    m = build_knn_graph(torch.randn(11, 4, generator=g), k=3, normalization="row")
    x = torch.randn(11, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 3, generator=g, dtype=torch.float64)
    for graph, graph_t in [(adj, None), (m, transpose_csr(m))]:
        graph = graph.double()
        graph_t = None if graph_t is None else graph_t.double()
        dense = graph.to_dense()
        powers = [torch.linalg.matrix_power(dense, k) for k in range(layers + 1)]
        expect_sum = sum(p @ x for p in powers)
        expect_res = x + powers[layers] @ x
        for got, expect in [(propagate_sum(graph, x, layers, graph_t), expect_sum),
                            (residual_spmm(graph, x, layers, graph_t), expect_res)]:
            torch.testing.assert_close(got, expect)
            (grad,) = torch.autograd.grad((got * w).sum(), x)
            (want,) = torch.autograd.grad((expect * w).sum(), x, retain_graph=True)
            torch.testing.assert_close(grad, want)
        with torch.no_grad():
            torch.testing.assert_close(propagate_sum(graph, x, layers, graph_t), expect_sum)


def test_spmm_forward_and_gradient_match_dense():
    adj = bipartite_adjacency(5, 6, [0, 1, 2, 3, 4, 0], [0, 1, 2, 3, 5, 4])
    x = torch.randn(11, 3, requires_grad=True)
    w = torch.randn(11, 3)
    (spmm(adj, spmm(adj, x)) * w).sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    dense = adj.to_dense()
    (dense @ (dense @ x) * w).sum().backward()
    assert torch.allclose(g1, x.grad, atol=1e-6)
    # non-symmetric matrix: the stored transpose is used
    m = build_knn_graph(torch.randn(11, 4), k=3, normalization="row")
    x.grad = None
    (spmm(m, x, transpose_csr(m)) * w).sum().backward()
    assert torch.allclose(x.grad, m.to_dense().t() @ w, atol=1e-6)


def test_user_item_block_is_the_dense_block_and_its_product_equals_the_padded_one():
    """MGCN's and SMORE's user aggregation: R-hat H equals the user rows of A-hat [0; H]
    bit for bit (same terms in the same order), gradient included; item 5 has no edge."""
    users, items = [0, 1, 2, 3, 0, 2, 1], [0, 1, 2, 3, 4, 4, 2]
    adj = bipartite_adjacency(4, 6, users, items)
    ui = user_item_block(adj, 4)
    assert ui.layout == torch.sparse_csr and ui.shape == (4, 6)
    assert torch.equal(ui.to_dense(), adj.to_dense()[:4, 4:])
    h = torch.randn(6, 3, dtype=torch.float32, requires_grad=True)
    w = torch.randn(4, 3)
    (spmm(ui, h, transpose_csr(ui)) * w).sum().backward()
    g = h.grad.clone()
    h.grad = None
    padded = spmm(adj, torch.cat([h.new_zeros(4, 3), h]))[:4]
    (padded * w).sum().backward()
    assert torch.equal(spmm(ui, h.detach()), padded.detach())
    torch.testing.assert_close(g, h.grad, rtol=0, atol=1e-6)
    assert g[5].abs().sum() == 0  # an item without users gets no gradient


def test_csr_rows_matches_dense_rows_with_repeats_and_empty_rows():
    from lirdrec.graphs import csr_rows

    g = torch.Generator().manual_seed(0)
    dense = torch.rand(9, 6, generator=g) * (torch.rand(9, 6, generator=g) < 0.4)
    dense[4] = 0.0  # an empty row
    rows = torch.tensor([4, 0, 8, 0, 3])
    torch.testing.assert_close(csr_rows(dense.to_sparse_csr(), rows), dense[rows])


def test_weighted_spmm_and_edge_scores_match_dense_with_gradients():
    """Learned edge weights (GRCN): the CSR product and its hand-written backward against the
    dense formula S(val) h, S[r, c] = val_e, and the sampled product a_r . b_c."""
    from lirdrec.graphs import (
        edge_layout,
        edge_scores,
        edge_softmax,
        sparse_from_coo,
        weighted_spmm,
    )

    g = torch.Generator().manual_seed(1)
    n, m = 7, 5
    mask = torch.rand(n, m, generator=g) < 0.45
    mask[3] = False  # a row without edges
    row, col = mask.nonzero(as_tuple=True)  # sorted by (row, col)
    val = torch.rand(len(row), generator=g, dtype=torch.float64).requires_grad_()
    h = torch.randn(m, 3, generator=g, dtype=torch.float64).requires_grad_()
    dense = torch.zeros(n, m, dtype=torch.float64).index_put((row, col), val)
    layout = edge_layout(row, col, n, m)
    torch.testing.assert_close(weighted_spmm(layout, val, h), dense @ h)
    assert torch.autograd.gradcheck(lambda v, x: weighted_spmm(layout, v, x), (val, h))
    a = torch.randn(n, 3, generator=g, dtype=torch.float64)
    pattern = sparse_from_coo(row, col, torch.ones(len(row)), (n, m)).double()
    torch.testing.assert_close(edge_scores(pattern, a, h), (a[row] * h[col]).sum(1))
    soft = edge_softmax(edge_scores(pattern, a, h), row, n)
    expected = (a @ h.t()).masked_fill(~mask, float("-inf")).softmax(1)[row, col]
    torch.testing.assert_close(soft, expected)


def test_user_cooccurrence_graph_matches_dense_counts_in_chunks():
    """DualGNN's user graph against C = R R^T (zero diagonal): the kept neighbours are the ones
    with the largest counts, a user with fewer than k repeats them cyclically, an isolated user
    points at herself with count 0; chunks that do not divide U change nothing."""
    from lirdrec.graphs import user_cooccurrence_graph

    rng = np.random.default_rng(3)
    n_u, n_i, k = 13, 9, 4
    r = (rng.random((n_u, n_i)) < 0.3).astype(np.float32)
    r[5] = 0.0
    r[5, 8] = 1.0
    r[:, 8] = 0.0
    r[5, 8] = 1.0  # user 5: only item 8, which nobody else has -> isolated
    r[7] = 0.0
    r[7, 0] = 1.0
    r[:, 0] = 0.0
    r[[7, 2], 0] = 1.0  # user 7: one neighbour (2), sharing item 0
    users, items = np.nonzero(r)
    idx, cnt = user_cooccurrence_graph(n_u, n_i, users, items, k, chunk_size=5)
    assert idx.shape == cnt.shape == (n_u, k)
    c = torch.from_numpy(r) @ torch.from_numpy(r).t()
    c.fill_diagonal_(0)
    for u in range(n_u):
        pos = int((c[u] > 0).sum())
        assert torch.equal(cnt[u], c[u, idx[u]])  # counts are the dense counts
        if pos == 0:
            assert idx[u].tolist() == [u] * k and cnt[u].tolist() == [0.0] * k
        elif pos < k:
            first = idx[u, :pos]
            assert set(first.tolist()) == set(torch.nonzero(c[u] > 0).flatten().tolist())
            assert idx[u].tolist() == [int(first[j % pos]) for j in range(k)]
        else:
            kept = set(idx[u].tolist())
            assert len(kept) == k and u not in kept
            dropped = [v for v in range(n_u) if v not in kept and v != u]
            assert min(c[u, list(kept)]) >= max(c[u, dropped])  # the top k by count
    assert idx[5].tolist() == [5] * k and idx[7].tolist() == [2] * k
    again = user_cooccurrence_graph(n_u, n_i, users, items, k, chunk_size=13)
    assert torch.equal(again[1], cnt)


def test_hypergraph_propagate_matches_hand_computation():
    """Two items in hyperedge 0 with weights 1 and 0.5, one in hyperedge 1; two layers."""
    from lirdrec.graphs import hypergraph_propagate

    hi = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]])
    hu = torch.tensor([[1.0, 1.0]])
    x = torch.tensor([[2.0], [4.0], [3.0]])
    u, i = hypergraph_propagate(hi, hu, x, 2)
    # layer 1: z = (2 + 0.5 * 4, 3) = (4, 3); x = (4, 2, 3)
    # layer 2: z = (4 + 0.5 * 2, 3) = (5, 3); x = (5, 2.5, 3); user = 5 + 3
    assert i.tolist() == [[5.0], [2.5], [3.0]] and u.tolist() == [[8.0]]


def test_max_combine_graphs_takes_the_entrywise_maximum_over_the_union():
    from lirdrec.graphs import max_combine_graphs

    g = torch.Generator().manual_seed(4)
    a = torch.rand(6, 6, generator=g) * (torch.rand(6, 6, generator=g) < 0.4)
    b = torch.rand(6, 6, generator=g) * (torch.rand(6, 6, generator=g) < 0.4)
    out = max_combine_graphs([a.to_sparse_csr(), b.to_sparse_csr()]).to_dense()
    torch.testing.assert_close(out, torch.maximum(a, b))  # values are >= 0: 0 = not stored
    assert max_combine_graphs([a.to_sparse_csr()]).to_dense().equal(a)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_knn_graph_built_on_cuda_equals_the_cpu_graph():
    from lirdrec.graphs.knn import build_knn_graph

    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    for weighted in (False, True):
        cpu = build_knn_graph(x, k=5, weighted=weighted).to_dense()
        gpu = build_knn_graph(x.cuda(), k=5, weighted=weighted)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.to_dense().cpu(), cpu, rtol=1e-5, atol=1e-6)


def test_cold_item_graph_matches_brute_force_with_chunks_not_dividing():
    """Issue 18: each cold item's row is 1/k on its k most similar WARM items under
    sum_m w_m cos_m; warm rows empty; the chunk size changes nothing."""
    from lirdrec.graphs import build_cold_item_graph, knn_indices

    g = torch.Generator().manual_seed(0)
    feats = {"image": torch.randn(31, 5, generator=g), "text": torch.randn(31, 4, generator=g)}
    warm = torch.rand(31, generator=g) > 0.3
    k = 4
    nrm = {m: torch.nn.functional.normalize(x.double(), dim=1) for m, x in feats.items()}
    sim = 0.3 * nrm["image"] @ nrm["image"].T + 0.7 * nrm["text"] @ nrm["text"].T
    sim[:, ~warm] = -np.inf
    expected = torch.zeros(31, 31, dtype=torch.float64)
    for i in (~warm).nonzero().squeeze(1).tolist():
        expected[i, torch.topk(sim[i], k).indices] = 1.0 / k
    for chunk in (None, 3, 7):
        got = build_cold_item_graph(feats, warm, k, 0.3, chunk_size=chunk)
        assert got.layout == torch.sparse_csr
        np.testing.assert_allclose(got.to_dense().numpy(), expected.numpy(), atol=1e-7)
    # knn_indices without keys is unchanged; with keys = x it is the same search
    x = torch.randn(13, 6, generator=g)
    v0, i0 = knn_indices(x, 3, 5)
    v1, i1 = knn_indices(x, 3, 5, keys=x)
    assert torch.equal(v0, v1) and torch.equal(i0, i1)
    with pytest.raises(Exception, match="warm items"):
        build_cold_item_graph(feats, warm, int(warm.sum()) + 1)


def test_degree_features_by_hand():
    """Issue 18: [log1p(n)/log1p(max n), one-hot of the quantile bucket among warm items]; a cold
    item is all zeros."""
    from lirdrec.graphs import bipartite_adjacency, degree_features, item_degrees

    # items 0..4 with degrees 0, 1, 2, 4, 8 (user u has items with index >= ...)
    users = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 6, 7, 3]
    items = [1, 2, 3, 4, 2, 3, 4, 3, 4, 3, 4, 4, 4, 4, 4]
    adj = bipartite_adjacency(8, 5, users, items)
    deg = item_degrees(adj, 8)
    assert deg.tolist() == [0, 1, 2, 4, 8]
    f = degree_features(deg, num_buckets=4)
    assert f.shape == (5, 5)
    np.testing.assert_allclose(f[:, 0].numpy(), [0, np.log(2) / np.log(9), np.log(3) / np.log(9),
                                                 np.log(5) / np.log(9), 1.0], rtol=1e-6)
    # warm degrees [1, 2, 4, 8]: quartile edges 1.75, 3.0, 5.0 -> buckets 0, 1, 2, 3
    assert f[:, 1:].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                 [0, 0, 0, 1]]
    # 8 buckets by default: width 9; ties share a bucket
    f8 = degree_features(torch.tensor([0, 3, 3, 3, 5]))
    assert f8.shape == (5, 9) and f8[0].abs().sum() == 0
    assert torch.equal(f8[1], f8[2]) and (f8[1:, 1:].sum(1) == 1).all()
