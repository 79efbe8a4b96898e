r"""User-side channel fusion of LIRDRec: per-channel scorers and progressive weight copying (PWC).

LIRDRec (Zhou et al., arXiv:2505.04960) represents a user by :math:`C` channel vectors
:math:`\mathbf{u}_c \in \mathbb{R}^{d}` (one per modality plus the shared DCT channel) and fuses
them with per-user channel weights :math:`\boldsymbol\alpha_u \in \Delta^{C-1}`:

.. math::
    \mathrm{User}_u = [\,\alpha_{u,1}\mathbf{u}_1 \,\|\, \cdots \,\|\, \alpha_{u,C}\mathbf{u}_C\,]
    \in \mathbb{R}^{C d}.

:class:`ChannelAttention` computes :math:`\boldsymbol\alpha_u = \mathrm{softmax}(\mathbf{F}_u)`
from scorers :math:`f_c(\mathbf{x}) = \mathbf{W}_{c2}\,\mathrm{LeakyReLU}(\mathbf{W}_{c1}\mathbf{x}
+ \mathbf{b}_{c1}) + b_{c2}` (:math:`d \to d/4 \to 1`), :math:`\mathbf{F}_u = [f_1(\mathbf{u}_1),
\dots, f_C(\mathbf{u}_C)]`. :class:`PWC` adds a per-user table :math:`\Theta \in
\mathbb{R}^{U \times C}` and hands the attention over to it epoch by epoch (see :class:`PWC`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.models.base import Interval, check_arguments, check_param

__all__ = ["PWC", "ChannelAttention", "pwc_schedule"]


def pwc_schedule(w1: float, w2: float, epoch: int, decay_base: float) -> tuple[float, float]:
    r"""One start-of-epoch step of the PWC schedule, in float64 (as the reference's Python floats).

    .. math::
        (w_1, w_2) \leftarrow \frac{(w_1 b^{e},\ w_2)}{w_1 b^{e} + w_2}.

    Applied at every epoch :math:`e = 1, 2, \dots` it compounds; with :math:`r = w_1 / w_2` the
    closed form is :math:`r_e = r_0\, b^{e(e+1)/2}`.

    >>> w1, w2 = pwc_schedule(0.9, 0.1, 1, 0.9)    # 0.81 / (0.81 + 0.1)
    >>> round(w1, 6), round(w2, 6)
    (0.89011, 0.10989)
    """
    scaled = w1 * decay_base**epoch
    total = scaled + w2
    return scaled / total, w2 / total


class ChannelAttention(nn.Module):
    r"""Per-user softmax attention over :math:`C` channels from one small scorer per channel.

    .. math::
        \mathbf{F}_{u,c} = \mathbf{W}_{c2}\,\mathrm{LeakyReLU}(\mathbf{W}_{c1}\mathbf{u}_c
        + \mathbf{b}_{c1}) + b_{c2},\qquad
        \boldsymbol\alpha_u = \mathrm{softmax}(\mathbf{F}_u),\qquad
        \mathrm{User}_u = [\alpha_{u,c}\,\mathbf{u}_c]_{c=1..C}.

    LeakyReLU has slope 0.01 (torch default). This is LIRDRec's ``fusion="attention"`` ablation
    and the scorer part of :class:`PWC`.

    Args:
        channels (Sequence[str]): channel names (order of the concatenated input).
        embedding_dim (int): :math:`d`, width of one channel.
        hidden_dim (int | None): scorer width; ``None`` means :math:`\lfloor d/4 \rfloor`.
            (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, C d)` -> fused :math:`(U, C d)`, alpha :math:`(U, C)`
    """

    constraints = {
        "embedding_dim": Interval(4, integer=True),  # the scorer width is embedding_dim // 4
        "hidden_dim": Interval(1, integer=True, optional=True),
    }

    def __init__(self, channels: Sequence[str], embedding_dim: int, hidden_dim: int | None = None):
        super().__init__()
        self.channels = list(channels)
        check_param(type(self).__name__, "channels", channels, len(self.channels) >= 1,
                    "a non-empty sequence")
        check_arguments(self, locals())
        hidden = embedding_dim // 4 if hidden_dim is None else hidden_dim
        self.embedding_dim = int(embedding_dim)
        self.hidden_dim = int(hidden)
        self.scorers = nn.ModuleDict(
            {
                c: nn.Sequential(
                    nn.Linear(self.embedding_dim, self.hidden_dim),
                    nn.LeakyReLU(),
                    nn.Linear(self.hidden_dim, 1),
                )
                for c in self.channels
            }
        )

    def reset_parameters(self) -> None:
        """Torch's default ``nn.Linear`` initialisation for every scorer."""
        for c in self.channels:
            seq = self.scorers[c]
            seq[0].reset_parameters()
            seq[2].reset_parameters()

    def logits(self, users: Tensor) -> Tensor:
        r""":math:`\mathbf{F}` of shape :math:`(U, C)` for users :math:`(U, C d)`.

        The :math:`C` scorers run as two block-diagonal matrix products over the whole
        :math:`(U, C d)` input (the same numbers as :math:`C` separate scorers on column slices,
        without copying the slices).
        """
        seqs = [self.scorers[c] for c in self.channels]
        w1 = torch.block_diag(*[s[0].weight for s in seqs])  # (C h, C d)
        b1 = torch.cat([s[0].bias for s in seqs])
        w2 = torch.block_diag(*[s[2].weight for s in seqs])  # (C, C h)
        b2 = torch.cat([s[2].bias for s in seqs])
        hidden = F.leaky_relu(torch.addmm(b1, users, w1.t()))  # (U, C h)
        return torch.addmm(b2, hidden, w2.t())  # (U, C)

    def attention(self, users: Tensor) -> Tensor:
        r"""Attention :math:`\boldsymbol\alpha = \mathrm{softmax}_{\mathrm{row}}(\mathbf{F})`.

        Shapes:
            - users :math:`(U, C d)` -> :math:`(U, C)`
        """
        return torch.softmax(self.logits(users), dim=1)

    def forward(self, users: Tensor) -> tuple[Tensor, Tensor]:
        alpha = self.attention(users)  # (U, C)
        num, c = alpha.shape
        fused = (users.view(num, c, self.embedding_dim) * alpha.unsqueeze(-1)).reshape(num, -1)
        return fused, alpha

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, embedding_dim={self.embedding_dim}, "
                f"hidden={self.hidden_dim}")


class PWC(ChannelAttention):
    r"""Progressive weight copying (PWC), LIRDRec's user-side fusion.

    .. math::
        \boldsymbol\alpha = \mathrm{softmax}_{\mathrm{row}}(w_1\mathbf{F} + w_2\Theta),
        \qquad \Theta \in \mathbb{R}^{U\times C}\ \text{(Xavier-normal init)}.

    At the start of every epoch :math:`e = 1, 2, \dots` (:meth:`copy_weights`, called from the
    model's ``on_epoch_start``):

    .. math::
        (w_1, w_2) \leftarrow \frac{(w_1 b^{e},\ w_2)}{w_1 b^{e} + w_2},\qquad
        \Theta \leftarrow \boldsymbol\alpha^{\text{last}},

    with :math:`b` = ``decay_base`` and :math:`\boldsymbol\alpha^{\text{last}}` the attention of
    the last forward in training mode (a copy, no gradient flows through it). Initially
    :math:`w_1` = ``decay_weight``, :math:`w_2 = 1 - w_1` and :math:`\boldsymbol\alpha^{\text{last}}
    = \Theta`, so epoch 1 only moves :math:`w`. The schedule compounds (:func:`pwc_schedule`):
    attention starts from the scorers and moves, epoch by epoch, to the copied per-user weights.

    State: ``theta`` is a parameter (trained by the optimiser between copies, as in the
    reference); ``w1``, ``w2`` (float64 scalars), ``last_alpha`` :math:`(U, C)` and ``epoch``
    (last epoch applied) are buffers, so ``state_dict`` and checkpoints resume exactly.
    :meth:`copy_weights` is idempotent for an epoch already applied.

    Args:
        num_users (int): :math:`U`.
        channels (Sequence[str]): channel names.
        embedding_dim (int): :math:`d`.
        decay_base (float): :math:`b \in (0, 1]`. (default: ``0.9``)
        decay_weight (float): initial :math:`w_1 \in [0, 1]`. (default: ``0.9``)
        hidden_dim (int | None): scorer width, ``None`` = :math:`d/4`. (default: ``None``)

    Shapes:
        - **forward:** users :math:`(U, C d)` -> fused :math:`(U, C d)`, alpha :math:`(U, C)`
    """

    constraints = {"decay_base": Interval(0, 1, closed="right"), "decay_weight": Interval(0, 1)}

    def __init__(
        self,
        num_users: int,
        channels: Sequence[str],
        embedding_dim: int,
        decay_base: float = 0.9,
        decay_weight: float = 0.9,
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__(channels, embedding_dim, hidden_dim)
        check_arguments(self, locals())
        self.num_users = int(num_users)
        self.decay_base = float(decay_base)
        self.decay_weight = float(decay_weight)
        c = len(self.channels)
        self.theta = nn.Parameter(torch.empty(self.num_users, c))
        self.register_buffer("w1", torch.tensor(self.decay_weight, dtype=torch.float64))
        self.register_buffer("w2", torch.tensor(1.0 - self.decay_weight, dtype=torch.float64))
        self.register_buffer("last_alpha", torch.empty(self.num_users, c))
        self.register_buffer("epoch", torch.tensor(0, dtype=torch.long))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Re-draw scorers and :math:`\Theta`; reset the schedule to epoch 0."""
        super().reset_parameters()
        nn.init.xavier_normal_(self.theta)
        with torch.no_grad():
            self.last_alpha.copy_(self.theta)
            self.w1.fill_(self.decay_weight)
            self.w2.fill_(1.0 - self.decay_weight)
            self.epoch.zero_()

    def attention(self, users: Tensor) -> Tensor:
        logits = self.w1 * self.logits(users) + self.w2 * self.theta  # (U, C), float32
        alpha = torch.softmax(logits, dim=1)
        if self.training:
            with torch.no_grad():
                self.last_alpha.copy_(alpha)
        return alpha

    @torch.no_grad()
    def copy_weights(self, epoch: int) -> None:
        """Start-of-epoch update for ``epoch`` (1-based): schedule step(s), then copy Θ.

        Every schedule step between the last applied epoch and ``epoch`` is applied (normally
        exactly one); an epoch already applied is a no-op, so a resumed run does not repeat it.
        """
        epoch = int(epoch)
        done = int(self.epoch)
        if epoch <= done:
            return
        w1, w2 = float(self.w1), float(self.w2)
        for e in range(done + 1, epoch + 1):
            w1, w2 = pwc_schedule(w1, w2, e, self.decay_base)
        self.w1.fill_(w1)
        self.w2.fill_(w2)
        self.theta.copy_(self.last_alpha)
        self.epoch.fill_(epoch)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_users={self.num_users}, decay_base={self.decay_base}, "
            f"decay_weight={self.decay_weight}"
        )
