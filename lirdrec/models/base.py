"""The interface every recommender implements.

A model is an :class:`torch.nn.Module` built from explicit sizes, tensors and hyper-parameters.
The trainer and evaluator only call the methods below, so any model that implements them trains,
evaluates, checkpoints and is diagnosed the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lirdrec.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from lirdrec.data.dataset import Dataset

__all__ = ["Recommender", "bpr_loss", "check_param"]


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    r"""Bayesian personalised ranking loss :math:`-\frac1B\sum_b \log\sigma(\hat y^+_b-\hat y^-_b)`.

    Computed as ``softplus(neg - pos)`` which is the same quantity without the underflow of
    ``log(sigmoid(.))`` (MMRec adds ``1e-10`` inside the log instead).

    Shapes:
        - pos_scores, neg_scores :math:`(B,)` -> scalar
    """
    return torch.nn.functional.softplus(neg_scores - pos_scores).mean()


def check_param(cls_name: str, name: str, value: Any, ok: bool, expectation: str) -> None:
    """Raise ``ConfigError("<cls>: <name> must be <expectation>, got <value>")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{cls_name}: {name} must be {expectation}, got {value!r}")


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
    #: Whether items without a training interaction get meaningful scores (the model computes
    #: item representations from features); ``lirdrec recommend`` ranks them only then.
    scores_cold_items: bool = False
    #: Whether ``forward()[1]`` holds item vectors worth comparing (``lirdrec similar-items``).
    item_vectors: bool = True

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        check_param(type(self).__name__, "num_users", num_users, int(num_users) > 0, "a positive int")
        check_param(type(self).__name__, "num_items", num_items, int(num_items) > 0, "a positive int")
        self.num_users = int(num_users)
        self.num_items = int(num_items)

    # ------------------------------------------------------------------ ID tables
    def _add_id_embeddings(self, dim: int) -> None:
        """Create ``user_emb`` :math:`(U, d)` and ``item_emb`` :math:`(I, d)` ID tables
        (uninitialised; :meth:`_reset_id_embeddings` draws them)."""
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

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:  # pragma: no cover
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
        """Build the model's graphs and tensors from a :class:`~lirdrec.data.Dataset`."""
        return cls(ds.num_users, ds.num_items, **kwargs)

    def extra_repr(self) -> str:
        return f"num_users={self.num_users}, num_items={self.num_items}"
