r"""Connectors: frozen vision tokens -> :math:`Q` soft tokens in the LLM width.

- :class:`QFormerConnector` (reference ``MLlama.py``, ``image_projector/builder.py``): :math:`Q`
  learnable query tokens attend to every vision token through a randomly initialised
  ``transformers.Blip2QFormerModel``; a 2-layer GELU MLP maps the query outputs to the LLM width:
  :math:`\mathbf{X} = \mathbf{W}_2\,\mathrm{GELU}(\mathbf{W}_1 \mathrm{QFormer}(\mathbf{Q},
  \mathbf{V}) + \mathbf{b}_1) + \mathbf{b}_2`.
  The query tokens start at :math:`\mathcal{N}(0, 0.02^2)` (BLIP-2's choice; the reference starts
  them at exactly zero, which makes every query output equal at step 0 — ``query_init_std=0``
  reproduces that).
- :class:`MLPConnector` (the cheap alternative): the patch tokens are average-pooled into
  :math:`Q` groups along the token axis, then the same 2-layer GELU MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lirdrec.errors import ConfigError

__all__ = ["QFormerConnector", "MLPConnector", "build_connector", "CONNECTORS"]

CONNECTORS = ("qformer", "mlp")


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


class QFormerConnector(nn.Module):
    r"""Q-Former + 2-layer GELU MLP.

    Args:
        vision_dim (int): :math:`d_v`, width of the vision tokens.
        llm_dim (int): :math:`d`, the LLM width.
        num_query_tokens (int, optional): :math:`Q`. (default: ``16``)
        num_layers (int, optional): Q-Former layers. (default: ``6``, the reference)
        hidden_size (int, optional): Q-Former width. (default: ``768``)
        num_heads (int, optional): attention heads. (default: ``12``)
        intermediate_size (int, optional): feed-forward width. (default: ``3072``)
        query_init_std (float, optional): std of the initial query tokens. (default: ``0.02``)

    Shapes:
        - **input:** vision tokens :math:`(B, T, d_v)`
        - **output:** :math:`(B, Q, d)`
    """

    def __init__(
        self,
        vision_dim: int,
        llm_dim: int,
        num_query_tokens: int = 16,
        num_layers: int = 6,
        hidden_size: int = 768,
        num_heads: int = 12,
        intermediate_size: int = 3072,
        query_init_std: float = 0.02,
    ) -> None:
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        if hidden_size % num_heads:
            raise ConfigError(
                f"QFormerConnector: hidden_size ({hidden_size}) must be a multiple of "
                f"num_heads ({num_heads})"
            )
        self.num_query_tokens = int(num_query_tokens)
        self.query_init_std = float(query_init_std)
        config = Blip2QFormerConfig(
            num_hidden_layers=int(num_layers),
            hidden_size=int(hidden_size),
            num_attention_heads=int(num_heads),
            intermediate_size=int(intermediate_size),
            encoder_hidden_size=int(vision_dim),
        )
        self.qformer = Blip2QFormerModel(config)
        self.query_tokens = nn.Parameter(torch.zeros(1, self.num_query_tokens, int(hidden_size)))
        self.projector = _mlp(int(hidden_size), int(llm_dim))
        self.reset_query_tokens()

    def reset_query_tokens(self) -> None:
        if self.query_init_std > 0:
            nn.init.normal_(self.query_tokens, std=self.query_init_std)
        else:
            nn.init.zeros_(self.query_tokens)

    def forward(self, vision_tokens: Tensor) -> Tensor:
        vision_tokens = vision_tokens.to(self.query_tokens.dtype)
        queries = self.query_tokens.expand(vision_tokens.shape[0], -1, -1)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=vision_tokens)
        return self.projector(out.last_hidden_state)  # (B, Q, d)


class MLPConnector(nn.Module):
    r"""Patch tokens average-pooled into :math:`Q` groups, then a 2-layer GELU MLP.

    Args:
        vision_dim (int): :math:`d_v`.
        llm_dim (int): :math:`d`.
        num_query_tokens (int, optional): :math:`Q`. (default: ``16``)

    Shapes:
        - **input:** vision tokens :math:`(B, T, d_v)` (token 0 = CLS, not pooled)
        - **output:** :math:`(B, Q, d)`
    """

    def __init__(self, vision_dim: int, llm_dim: int, num_query_tokens: int = 16) -> None:
        super().__init__()
        self.num_query_tokens = int(num_query_tokens)
        self.projector = _mlp(int(vision_dim), int(llm_dim))

    def forward(self, vision_tokens: Tensor) -> Tensor:
        w = self.projector[0].weight
        patches = vision_tokens[:, 1:] if vision_tokens.shape[1] > 1 else vision_tokens
        pooled = F.adaptive_avg_pool1d(patches.to(w.dtype).transpose(1, 2), self.num_query_tokens)
        return self.projector(pooled.transpose(1, 2))  # (B, Q, d)


def build_connector(kind: str, vision_dim: int, llm_dim: int, **kwargs) -> nn.Module:
    """``"qformer"`` or ``"mlp"`` (the MLP ignores the Q-Former's settings)."""
    if kind == "qformer":
        return QFormerConnector(vision_dim, llm_dim, **kwargs)
    if kind == "mlp":
        return MLPConnector(vision_dim, llm_dim, kwargs.get("num_query_tokens", 16))
    raise ConfigError(f"NoteLLM2: connector must be one of {list(CONNECTORS)}, got {kind!r}")
