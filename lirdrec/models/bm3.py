"""BM3: bootstrapped multimodal representations without negative sampling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.graphs import bipartite_adjacency, propagate
from lirdrec.models._features import check_features, feature_tables, make_generator
from lirdrec.models.base import (
    GeneratorStateMixin,
    Interval,
    Recommender,
    Shape,
    check_arguments,
    emb_loss,
)
from lirdrec.models.registry import register

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["BM3"]


def _cosine_gap(online: Tensor, target: Tensor) -> Tensor:
    r""":math:`1 - \frac1B\sum_b \cos(\mathbf{a}_b, \mathbf{t}_b)`; ``target`` gets no gradient."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


@register("bm3")
class BM3(GeneratorStateMixin, Recommender):
    r"""BM3 from "Bootstrap Latent Representations for Multi-modal Recommendation" (Zhou et al.,
    WWW 2023, arXiv:2207.05969), as MMRec implements it.

    Online embeddings come from LightGCN (layer mean) over the training graph, items keep a
    residual of their ID embedding; each modality is projected to :math:`d`:

    .. math::
        [\mathbf{U};\bar{\mathbf{E}}]
        = \frac{1}{L+1}\sum_{l=0}^{L}\hat A^{l}[\mathbf{P};\mathbf{E}^{id}],
        \quad \mathbf{I} = \bar{\mathbf{E}} + \mathbf{E}^{id},\quad
        \mathbf{F}_m = \mathbf{X}_m W_m^\top + \mathbf{b}_m .

    Targets are dropout-perturbed, gradient-free copies
    :math:`\tilde{\mathbf{U}} = \mathrm{drop}_p(\mathbf{U})`,
    :math:`\tilde{\mathbf{I}} = \mathrm{drop}_p(\mathbf{I})`,
    :math:`\tilde{\mathbf{F}}_m = \mathrm{drop}_p(\mathbf{F}_m)` (no separate target encoder: the
    online network with dropout is its own target). One shared predictor
    :math:`g(\mathbf{x}) = W_g\mathbf{x} + \mathbf{b}_g` maps online views. For a batch of
    observed pairs :math:`(u, i)` only (no negatives), with :math:`c(\mathbf{a},\mathbf{b}) =
    1 - \overline{\cos}(\mathbf{a},\mathbf{b})` averaged over the batch:

    .. math::
        \mathcal L = c(g(\mathbf{U}_u), \tilde{\mathbf{I}}_i)
        + c(g(\mathbf{I}_i), \tilde{\mathbf{U}}_u)
        + \lambda\,\frac{\lVert\mathbf{U}\rVert + \lVert\mathbf{I}\rVert}{I}
        + \mu \sum_m \big[c(g(\mathbf{F}_m)_i, \tilde{\mathbf{I}}_i)
        + c(g(\mathbf{F}_m)_i, (\tilde{\mathbf{F}}_m)_i)\big]

    where the regulariser is MMRec's ``EmbLoss`` on the full online tables: unsquared Frobenius
    norms divided by the number of items :math:`I` (the row count of its last argument), not by
    the batch size. Scores use the predictor on both sides:
    :math:`\hat y_{ui} = g(\mathbf{U}_u)^\top g(\mathbf{I}_i)`.

    Any number of modalities: one projection and two alignment terms per modality (the reference
    has text and image). The raw feature tables are fine-tuned (``train_features=True``, as the
    reference's ``Embedding.from_pretrained(freeze=False)``). Dropout masks come from the model's
    own :class:`torch.Generator` (state saved by :meth:`extra_state`), not torch's global RNG.

    Args:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        adj (Tensor): :math:`\hat A`, sparse CSR :math:`(U+I, U+I)` from
            :func:`lirdrec.graphs.bipartite_adjacency`.
        features (dict[str, Tensor]): modality -> :math:`(I, d_m)` raw features.
        embedding_dim (int, optional): :math:`d` (also the feature projection width).
            (default: ``64``)
        num_layers (int, optional): :math:`L` (MMRec's ``n_layers``). (default: ``1``)
        dropout (float, optional): :math:`p` of the target views. (default: ``0.3``)
        reg_weight (float, optional): :math:`\lambda`. (default: ``0.1``)
        cl_weight (float, optional): :math:`\mu`. (default: ``2.0``)
        train_features (bool, optional): fine-tune the raw features. (default: ``True``)
        generator_seed (int, optional): seed of the dropout generator; ``None`` draws it from
            torch's global RNG at construction. (default: ``None``)

    Shapes:
        - **forward:** :math:`g(\mathbf{U})` :math:`(U, d)`, :math:`g(\mathbf{I})` :math:`(I, d)`
        - **score:** users :math:`(B,)` -> :math:`(B, I)`
        - **loss:** users, pos_items :math:`(B,)` (``neg_items`` ignored) -> scalar
    """

    scores_cold_items = True  # items are computed from their features

    uses_negatives = False
    #: submodules whose output is the feature-derived item representation (gradient-bias hooks)
    feature_branch = ("projections",)

    constraints = {
        "adj": Shape("num_nodes", "num_nodes"),
        "embedding_dim": Interval(1, integer=True),
        "num_layers": Interval(0, integer=True),
        "dropout": Interval(0, 1, closed="left"),
        "reg_weight": Interval(0),
        "cl_weight": Interval(0),
    }

    def __init__(self, num_users: int, num_items: int, adj: Tensor, features: Mapping[str, Tensor],
                 embedding_dim: int = 64, num_layers: int = 1, dropout: float = 0.3,
                 reg_weight: float = 0.1, cl_weight: float = 2.0, train_features: bool = True,
                 generator_seed: int | None = None) -> None:
        super().__init__(num_users, num_items)
        check_arguments(self, locals())
        self.modalities, mats = check_features(type(self).__name__, features, self.num_items)
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.reg_weight = float(reg_weight)
        self.cl_weight = float(cl_weight)
        self.train_features = bool(train_features)
        # constant graph: a non-persistent buffer (follows .to(), rebuilt by from_dataset)
        self.register_buffer("adj", adj, persistent=False)
        self._add_id_embeddings(self.embedding_dim)
        self.predictor = nn.Linear(self.embedding_dim, self.embedding_dim)
        self.features = feature_tables(mats, self.train_features)
        self.projections = nn.ModuleList(nn.Linear(x.shape[1], self.embedding_dim) for x in mats)
        self.reset_parameters()
        self.generator, self.generator_seed = make_generator(generator_seed)

    def reset_parameters(self) -> None:
        self._reset_id_embeddings()
        for lin in [self.predictor, *self.projections]:
            lin.reset_parameters()  # bias: PyTorch default, as the reference
            nn.init.xavier_normal_(lin.weight)

    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "BM3":
        adj = bipartite_adjacency(ds.num_users, ds.num_items, ds.train.users, ds.train.items)
        return cls(ds.num_users, ds.num_items, adj, ds.features_tensor(), **kwargs)

    # ------------------------------------------------------------------ model
    def online(self) -> tuple[Tensor, Tensor]:
        """Online user :math:`(U, d)` and item :math:`(I, d)` embeddings before the predictor."""
        ego = torch.cat([self.user_emb, self.item_emb])  # (U+I, d)
        out = propagate(self.adj, ego, self.num_layers, "mean")
        return out[: self.num_users], out[self.num_users:] + self.item_emb

    def forward(self) -> tuple[Tensor, Tensor]:
        user_emb, item_emb = self.online()
        return self.predictor(user_emb), self.predictor(item_emb)

    def _drop(self, x: Tensor) -> Tensor:
        """Inverted dropout from the model's generator: zero w.p. :math:`p`, else scale
        :math:`1/(1-p)`.
        """
        if self.dropout <= 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator).to(x.device) >= self.dropout
        return x * keep.to(x.dtype) / (1.0 - self.dropout)

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor | None = None) -> Tensor:
        user_emb, item_emb = self.online()
        raw = self.encoded_features() or list(self.features)  # end-to-end: from an encoder
        feats = [proj(x) for proj, x in zip(self.projections, raw)]  # M x (I, d)
        with torch.no_grad():
            user_t = self._drop(user_emb)[users]  # (B, d)
            item_t = self._drop(item_emb)[pos_items]  # (B, d)
            feats_t = [self._drop(f)[pos_items] for f in feats]
        loss = (_cosine_gap(self.predictor(user_emb[users]), item_t)
                + _cosine_gap(self.predictor(item_emb[pos_items]), user_t))
        loss = loss + self.reg_weight * emb_loss(user_emb, item_emb)
        align = 0.0
        for f, f_t in zip(feats, feats_t):
            f_on = self.predictor(f[pos_items])  # (B, d)
            align = align + _cosine_gap(f_on, item_t) + _cosine_gap(f_on, f_t)
        return loss + self.cl_weight * align

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"item_id": [self.item_emb],
                "item_feature": list(self.features) + list(self.projections.parameters()),
                "user": [self.user_emb], "other": list(self.predictor.parameters())}

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, embedding_dim={self.embedding_dim}, "
                f"modalities={self.modalities}, num_layers={self.num_layers}, "
                f"dropout={self.dropout}")
