"""The interface every recommender implements.

A model is an :class:`torch.nn.Module` built from explicit sizes, tensors and hyper-parameters.
The trainer and evaluator only call the methods below, so any model that implements them trains,
evaluates, checkpoints and is diagnosed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from lirdrec.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["Constraint", "Interval", "OneOf", "Recommender", "Shape", "bpr_loss", "check_arguments",
           "check_param", "emb_loss", "info_nce", "logsumexp_mm"]


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian personalised ranking loss :math:`-\frac1B\sum_b \log\sigma(\hat y^+_b-\hat y^-_b)`.

    Computed as ``softplus(neg - pos)`` which is the same quantity without the underflow of
    ``log(sigmoid(.))`` (MMRec adds ``1e-10`` inside the log instead).

    Shapes:
        - pos_scores, neg_scores :math:`(B,)` -> scalar
    """
    return torch.nn.functional.softplus(neg_scores - pos_scores).mean()


class _LogSumExpMM(torch.autograd.Function):
    """``logsumexp_mm``: the ``(n, m)`` logits live only inside; backward rescales ``(n, d)``
    products instead of passing over an ``(n, m)`` gradient.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, scale: float, log_weight: Tensor | None):  # type: ignore[override]
        logits = (a * scale) @ b.t()  # (n, m): scale the (n, d) operand, not the logits
        if log_weight is not None:
            logits.add_(log_weight)
        top = logits.amax(1, keepdim=True)
        e = logits.sub_(top).exp_()  # w_j exp(s_ij - max_i), in place: no second (n, m)
        total = e.sum(1)
        ctx.save_for_backward(a, b, e, total)
        ctx.scale = scale
        return top.squeeze(1) + total.log()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        a, b, e, total = ctx.saved_tensors
        # d lse_i / d s_ij = p_ij = e_ij / total_i: the row scale goes on the (n, d) side
        w = (grad / total)[:, None] * ctx.scale  # (n, 1)
        ga = (e @ b) * w if ctx.needs_input_grad[0] else None
        gb = e.t() @ (a * w) if ctx.needs_input_grad[1] else None
        return ga, gb, None, None


def logsumexp_mm(a: Tensor, b: Tensor, scale: float = 1.0,
                 weight: Tensor | None = None) -> Tensor:
    r"""Row log-sum-exp of a scaled product, :math:`\ell_i = \log\sum_j w_j
    e^{s\,\mathbf{a}_i^\top\mathbf{b}_j}` (:math:`w_j = 1` without ``weight``), the denominator
    of InfoNCE and softmax cross-entropy.

    Equal to ``torch.logsumexp(a @ b.t() * scale + weight.log(), 1)`` up to rounding, in fewer
    passes over the :math:`(n, m)` logits: they are formed once and exponentiated in place,
    and the backward, :math:`\partial\ell_i/\partial\mathbf{a}_i = s\sum_j p_{ij}\mathbf{b}_j`
    and :math:`\partial\ell/\partial\mathbf{b}_j = s\sum_i g_i p_{ij}\mathbf{a}_i` with
    :math:`p_{ij} = w_je^{s\,\mathbf{a}_i^\top\mathbf{b}_j - \ell_i}`, is two matrix products
    with the normalisation applied to their :math:`(n, d)` sides. Not twice differentiable.

    Shapes:
        - a :math:`(n, d)`, b :math:`(m, d)`, weight :math:`(m,)` positive -> :math:`(n,)`

    >>> a, b = torch.tensor([[1., 0.]]), torch.tensor([[1., 0.], [0., 1.]])
    >>> round(float(logsumexp_mm(a, b, 2.0)), 4)   # log(e^2 + e^0)
    2.1269
    >>> round(float(logsumexp_mm(a, b, 2.0, torch.tensor([1., 3.]))), 4)   # log(e^2 + 3)
    2.3408
    """
    return _LogSumExpMM.apply(a, b, float(scale), None if weight is None else weight.log())


def info_nce(a: Tensor, b: Tensor, temperature: float, rows_a: Tensor | None = None,
             rows_b: Tensor | None = None, normalize: bool = False) -> Tensor:
    r"""In-batch InfoNCE: cross-entropy of :math:`\mathbf{a}_b^\top\mathbf{b}_{b'}/\tau` with
    the matching row :math:`b' = b` as the label,
    :math:`-\frac1B\sum_b \log\frac{e^{\mathbf{a}_b^\top\mathbf{b}_b/\tau}}
    {\sum_{b'} e^{\mathbf{a}_b^\top\mathbf{b}_{b'}/\tau}}`.

    Without ``rows_a``/``rows_b``, ``a`` and ``b`` are the batch's :math:`B` row pairs. With
    them, ``a`` and ``b`` are tables and the batch is ``a[rows_a]``, ``b[rows_b]``: then every
    row repeated in the batch is computed once, a repeated :math:`\mathbf{b}` row entering the
    denominator with its count, :math:`\log\sum_{k} c_k e^{\mathbf{a}_b^\top\mathbf{b}_k/\tau}`
    over the distinct rows :math:`k` (the same sum; 2048 drawn tiktok pairs hold about 240
    distinct users and 1,400 distinct items). ``normalize`` L2-normalises the rows first (the
    cosine form); otherwise rows are used as given. The denominators come from
    :func:`logsumexp_mm`.

    Shapes:
        - a, b :math:`(B, d)` -> scalar; or a :math:`(N_a, d)`, b :math:`(N_b, d)`, rows_a,
          rows_b :math:`(B,)` -> scalar

    >>> round(float(info_nce(torch.eye(2), torch.eye(2), 1.0)), 4)   # -log(e / (e + 1))
    0.3133
    >>> t, r = torch.eye(2), torch.tensor([0, 0, 1])   # row 0 twice: its column counts 2
    >>> round(float(info_nce(t, t, 1.0, r, r)), 4)   # (2 log((2e + 1)/e) + log((2 + e)/e)) / 3
    0.7585
    """
    import torch.nn.functional as F

    if (rows_a is None) != (rows_b is None):
        raise ValueError("info_nce: give both rows_a and rows_b, or neither")
    if rows_a is None:
        if normalize:
            a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        pos = (a * b).sum(1) / temperature
        return (logsumexp_mm(a, b, 1.0 / temperature) - pos).mean()
    ua, ia = torch.unique(rows_a, return_inverse=True)
    ub, ib, count = torch.unique(rows_b, return_inverse=True, return_counts=True)
    a, b = a[ua], b[ub]  # distinct rows only
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    lse = logsumexp_mm(a, b, 1.0 / temperature, count.to(b.dtype))  # (|ua|,)
    pos = (a[ia] * b[ib]).sum(1) / temperature  # (B,)
    return (lse[ia] - pos).mean()


def content_side_loss(content: Tensor, side: Tensor, num_users: int, users: Tensor,
                      pos_items: Tensor, neg_items: Tensor, reg_weight: float, cl_loss: float,
                      temperature: float) -> Tensor:
    r"""The loss MGCN and SMORE share: BPR on :math:`E = E^{content} + E^{side}` (users then items
    stacked, :math:`(U + I, d)`), plus ``reg_weight`` times half the squared norms of the batch's
    rows over :math:`B`, plus ``cl_loss`` times two InfoNCE terms aligning the L2-normalised side
    and content rows of the positive items and of the users.

    Shapes:
        - content, side :math:`(U + I, d)`; users, pos_items, neg_items :math:`(B,)` -> scalar
    """
    out = content + side
    u, p, n = out[users], out[pos_items + num_users], out[neg_items + num_users]
    rank = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
    reg = 0.5 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / len(users)
    if cl_loss == 0.0:
        return rank + reg_weight * reg
    rows = pos_items + num_users
    cl = (info_nce(side, content, temperature, rows, rows, normalize=True)
          + info_nce(side, content, temperature, users, users, normalize=True))
    return rank + reg_weight * reg + cl_loss * cl


def emb_loss(*embeddings: Tensor) -> Tensor:
    r"""MMRec's embedding regulariser: :math:`\frac1B\sum_t \lVert E_t\rVert_2` (unsquared
    Frobenius norms of the batch's embedding rows, divided by the batch size :math:`B`).
    """
    return sum(torch.linalg.vector_norm(e) for e in embeddings) / embeddings[-1].shape[0]


# ---------------------------------------------------------------------- argument validation
def check_param(cls_name: str, name: str, value: Any, ok: bool, expectation: str) -> None:
    """The one message template: ``ConfigError("<cls>: <name> must be <expectation>, got
    <value>")`` unless ``ok`` (used by :func:`check_arguments` and by checks of whole inputs,
    such as a feature dict, that no table row describes).
    """
    if not ok:
        raise ConfigError(f"{cls_name}: {name} must be {expectation}, got {value!r}")


class Constraint:
    """One row of a class's ``constraints`` table: what an argument must be."""

    def ok(self, value: Any, owner: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, owner: Any) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def shown(self, value: Any) -> Any:
        """What the error message prints as the value found."""
        return value


def _bound(bound: float | str | None, owner: Any) -> Any:
    return getattr(owner, bound) if isinstance(bound, str) else bound


@dataclass(frozen=True)
class Interval(Constraint):
    """A number in an interval; a bound may name an attribute of the owner (``"num_items"``).

    ``closed`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"``; ``integer`` asks for an int;
    ``optional`` also accepts ``None``.

    >>> Interval(0, 1, closed="right").describe(None), Interval(1, integer=True).describe(None)
    ('in (0, 1]', 'an int >= 1')
    """

    low: float | str | None = None
    high: float | str | None = None
    closed: str = "both"
    integer: bool = False
    optional: bool = False

    def ok(self, value: Any, owner: Any) -> bool:
        if value is None:
            return self.optional
        try:
            v = int(value) if self.integer else float(value)
        except (TypeError, ValueError):
            return False
        lo, hi = _bound(self.low, owner), _bound(self.high, owner)
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        return ((lo is None or v > lo or (left and v == lo))
                and (hi is None or v < hi or (right and v == hi)))

    def describe(self, owner: Any) -> str:
        return self._describe(owner) + (" or None" if self.optional else "")

    def _describe(self, owner: Any) -> str:
        kind = "an int " if self.integer else ""
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")

        def fmt(b):
            return f"{b}={_bound(b, owner)}" if isinstance(b, str) else f"{b}"

        if self.high is None:
            return f"{kind}{'>=' if left else '>'} {fmt(self.low)}"
        if self.low is None:
            return f"{kind}{'<=' if right else '<'} {fmt(self.high)}"
        opening, closing = "[" if left else "(", "]" if right else ")"
        return f"{kind}in {opening}{fmt(self.low)}, {fmt(self.high)}{closing}"


@dataclass(frozen=True, init=False)
class OneOf(Constraint):
    """One of a few values.

    >>> OneOf("mean", "sum").describe(None), OneOf(None, "bfloat16").describe(None)
    ('one of mean, sum', "None or 'bfloat16'")
    """

    options: tuple

    def __init__(self, *options: Any) -> None:
        object.__setattr__(self, "options", tuple(options))

    def ok(self, value: Any, owner: Any) -> bool:
        try:
            return value in self.options
        except (TypeError, RuntimeError):  # e.g. a tensor, whose == is element-wise
            return False

    def describe(self, owner: Any) -> str:
        if all(isinstance(o, str) for o in self.options):
            return f"one of {', '.join(self.options)}"
        return " or ".join(map(repr, self.options))


@dataclass(frozen=True)
class Shape(Constraint):
    """A tensor of shape ``(rows, cols)``; each size is a number or an attribute of the owner."""

    rows: int | str
    cols: int | str
    optional: bool = False

    def ok(self, value: Any, owner: Any) -> bool:
        if value is None:
            return self.optional
        shape = (_bound(self.rows, owner), _bound(self.cols, owner))
        return isinstance(value, Tensor) and tuple(value.shape) == shape

    def describe(self, owner: Any) -> str:
        shape = f"({_bound(self.rows, owner)}, {_bound(self.cols, owner)})"
        return f"a tensor of shape {shape}" + (" or None" if self.optional else "")

    def shown(self, value: Any) -> Any:
        return tuple(value.shape) if hasattr(value, "shape") else value


def check_arguments(owner: Any, values: Mapping[str, Any], cls: type | None = None) -> None:
    """Check ``values`` (a constructor's ``locals()``) against the ``constraints`` table of every
    class in the MRO of ``cls`` (default ``type(owner)``), with the one message template of
    :func:`check_param`; sizes a row names (``"num_items"``) are read from ``owner``.

    Raises:
        ConfigError: ``"<class>: <argument> must be <expectation>, got <value>"`` for the first
            argument that breaks its row; the class named is ``cls`` (right for subclasses too).
    """
    cls = type(owner) if cls is None else cls
    for klass in reversed(cls.__mro__):
        for name, constraint in vars(klass).get("constraints", {}).items():
            if name in values:
                value = values[name]
                check_param(cls.__name__, name, constraint.shown(value),
                            constraint.ok(value, owner), constraint.describe(owner))


def check_arguments_early(cls: type, values: Mapping[str, Any]) -> None:
    """The rows of ``cls``'s ``constraints`` tables that need no data, checked before any is read.

    Rows whose bounds name a size of the data (``"num_items"``) and tensor shapes are left to
    the constructor; everything else (``lr``-like ranges, ``fusion`` choices) fails here, so a
    bad setting costs no data loading.

    Raises:
        ConfigError: the constructor's own message for the first bad argument.
    """
    for klass in reversed(cls.__mro__):
        for name, c in vars(klass).get("constraints", {}).items():
            if name not in values or isinstance(c, Shape):
                continue
            if isinstance(c, Interval) and (isinstance(c.low, str) or isinstance(c.high, str)):
                continue
            value = values[name]
            check_param(cls.__name__, name, c.shown(value), c.ok(value, None), c.describe(None))


class GeneratorStateMixin:
    """For models that draw per-epoch randomness (pruned graphs, dropout, noise) from their own
    ``self.generator``, seeded with ``self.generator_seed`` (``_features.make_generator``): the
    generator's state travels in the checkpoint, so a resumed run draws what an uninterrupted
    one would. List it before :class:`Recommender` in the bases.
    """

    def extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "generator_seed": self.generator_seed}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.generator_seed = int(state["generator_seed"])


class Recommender(nn.Module):
    """Base class of every model.

    Subclasses implement :meth:`forward` and :meth:`loss`; :meth:`score` has a default in terms of
    :meth:`forward` (inner product of user and item representations).

    Attributes:
        num_users (int): :math:`U`.
        num_items (int): :math:`I`.
        uses_negatives (bool): whether :meth:`loss` reads ``neg_items`` (BM3 does not).
        trainer_defaults (dict): trainer settings of the model's reference configuration that
            differ from :class:`~lirdrec.train.Trainer`'s defaults (LIRDRec: ``lr=1e-4``);
            the config resolver applies them below any user setting.
        unregistered_tensors (tuple[str, ...]): names of tensor attributes that are on purpose
            neither parameters nor buffers (so ``.to(device)`` does not move them): per-epoch
            caches rebuilt from buffers on their device, or CPU-side sampling inputs. Every other
            tensor a model holds is a parameter or a buffer (``tests/test_models_common.py``).
        scores_cold_items (bool): items without training interactions are scored from features.
        item_vectors (bool): ``forward()[1]`` are item vectors (Pop's are its degrees: no).
    """

    num_users: int
    num_items: int
    uses_negatives: bool = True
    trainer_defaults: dict[str, Any] = {}
    unregistered_tensors: tuple[str, ...] = ()
    #: Constructor-argument table (argument -> :class:`Constraint`), one per class, checked by
    #: :func:`check_arguments`; a subclass lists its own arguments.
    constraints: dict[str, Constraint] = {
        "num_users": Interval(1, integer=True),
        "num_items": Interval(1, integer=True),
    }
    #: Whether items without a training interaction get meaningful scores (the model computes
    #: item representations from features); ``lirdrec recommend`` ranks them only then.
    scores_cold_items: bool = False
    #: Whether ``forward()[1]`` holds item vectors worth comparing (``lirdrec similar-items``).
    item_vectors: bool = True

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        check_arguments(self, {"num_users": num_users, "num_items": num_items})
        self.num_users = int(num_users)
        self.num_items = int(num_items)

    @property
    def num_nodes(self) -> int:
        """:math:`U + I`, the size of the user-item graph."""
        return self.num_users + self.num_items

    # ------------------------------------------------------------------ ID tables
    def _add_id_embeddings(self, dim: int) -> None:
        """Create ``user_emb`` :math:`(U, d)` and ``item_emb`` :math:`(I, d)` ID tables
        (uninitialised; :meth:`_reset_id_embeddings` draws them).
        """
        self.user_emb = nn.Parameter(torch.empty(self.num_users, dim))
        self.item_emb = nn.Parameter(torch.empty(self.num_items, dim))

    def _reset_id_embeddings(self) -> None:
        """Xavier-uniform user then item ID table (the MMRec models' initialisation)."""
        nn.init.xavier_uniform_(self.user_emb)
        nn.init.xavier_uniform_(self.item_emb)

    # ------------------------------------------------------------------ interface
    def forward(self) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Return ``(user_emb (U, d'), item_emb (I, d'))``, the representations that are scored."""
        raise NotImplementedError

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:  # pragma: no cover
        """Training loss of a batch: three int64 ``(B,)`` tensors -> scalar."""
        raise NotImplementedError

    def score(self, users: Tensor, reps: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Scores of every item for ``users``: ``(B,)`` -> ``(B, I)``.

        ``reps`` is the output of :meth:`forward`; the evaluator computes it once per evaluation
        and passes it to every batch.
        """
        user_emb, item_emb = self.forward() if reps is None else reps
        return user_emb[users] @ item_emb.t()

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before epoch ``epoch`` (1-based). Default: nothing."""

    def training_loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        r"""What the trainer minimises: :meth:`loss`, plus, with a feature encoder attached
        whose ``vl_loss_weight`` :math:`\beta > 0`, :math:`\beta` times its contrastive loss on
        the batch's distinct items (``pos_items``, and ``neg_items`` when the model reads them).
        """
        loss = self.loss(users, pos_items, neg_items)
        encoder = getattr(self, "feature_encoder", None)
        if encoder is not None and encoder.vl_loss_weight > 0:
            items = torch.cat([pos_items, neg_items]) if self.uses_negatives else pos_items
            loss = loss + encoder.vl_loss_weight * encoder.contrastive_loss(items)
        return loss

    # ------------------------------------------------------------------ end-to-end features
    def attach_feature_encoder(self, encoder: nn.Module) -> None:
        """Read the item features from ``encoder`` from now on (the end-to-end mode).

        ``encoder`` is an :class:`~lirdrec.encoders.aligned.ItemFeatureEncoder` (calling it
        returns ``{modality: (I, d_m)}`` with gradient into its trainable top); it becomes the
        submodule ``feature_encoder``, so its trainable parameters are trained by the model's
        optimiser and saved in the model's ``state_dict``. The model must have been built from
        the same modalities and widths (the encoder's initial output). Anything the model built
        from its features at construction (kNN item graphs) stays as built.

        Raises:
            ConfigError: the model reads no features, or a modality the encoder lacks.
        """
        names = list(getattr(self, "modalities", []))
        check_param(type(self).__name__, "feature encoder", names, bool(names),
                    "attached to a model that reads item features")
        missing = [m for m in names if m not in encoder.modalities]
        check_param(type(self).__name__, "feature encoder", list(encoder.modalities), not missing,
                    f"an encoder providing the model's modalities {names}")
        self.feature_encoder = encoder

    def encoded_features(self) -> list[Tensor] | None:
        """The attached encoder's item features in the order of ``self.modalities``, recomputed
        with gradient, each :math:`(I, d_m)`; ``None`` without an encoder (constant features).
        """
        encoder = getattr(self, "feature_encoder", None)
        if encoder is None:
            return None
        feats = encoder()
        return [feats[m] for m in self.modalities]

    def extra_state(self) -> dict[str, Any]:
        """Per-epoch state outside ``state_dict`` (buffers are preferred; default empty)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Partition of the parameters for the gradient-bias diagnostic.

        Returns a dict with keys ``"item_id"``, ``"item_feature"``, ``"user"`` and ``"other"``;
        every parameter appears in exactly one group. The default puts everything in ``"other"``.
        """
        return {"item_id": [], "item_feature": [], "user": [], "other": list(self.parameters())}

    # ------------------------------------------------------------------ helpers
    @classmethod
    def from_dataset(cls, ds: "Dataset", **kwargs: Any) -> "Recommender":  # pragma: no cover
        """Ask :mod:`lirdrec.graphs` for the model's graphs, take its tensors from a
        :class:`~lirdrec.data.Dataset`, and pass them to the constructor.
        """
        return cls(ds.num_users, ds.num_items, **kwargs)

    @classmethod
    def check_kwargs(cls, ds: "Dataset", kwargs: Mapping[str, Any]) -> None:
        """Check hyper-parameters against the table before ``from_dataset`` builds graphs with
        them (the same error as the constructor would raise).
        """
        import types

        sizes = types.SimpleNamespace(num_users=ds.num_users, num_items=ds.num_items,
                                      num_nodes=ds.num_users + ds.num_items)
        check_arguments(sizes, kwargs, cls)

    @classmethod
    def default(cls, name: str, kwargs: Mapping[str, Any]) -> Any:
        """``kwargs[name]``, else the constructor's default (what ``from_dataset`` needs to build
        a graph with the same setting the constructor will get).
        """
        import inspect

        if name in kwargs:
            return kwargs[name]
        return inspect.signature(cls.__init__).parameters[name].default

    def extra_repr(self) -> str:
        return f"num_users={self.num_users}, num_items={self.num_items}"
