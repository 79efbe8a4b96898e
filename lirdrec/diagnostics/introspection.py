r"""Model introspection for the gradient-bias diagnostic: parameter groups, the feature branch,
and the ID-only / feature-only probe (:func:`keep_only`).

The feature branch is found through an optional class attribute ``feature_branch``: a tuple of
submodule names whose forward output is an :math:`(I, \cdot)` item representation computed from
the features (a ``ModuleList``/``ModuleDict`` stands for each of its children), e.g.
``feature_branch = ("item_linear",)`` in VBPR.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from lirdrec.errors import ConfigError

__all__ = ["GROUPS", "checked_groups", "feature_branch_modules", "item_id_tables", "keep_only"]

#: The parameter groups of :meth:`~lirdrec.models.base.Recommender.parameter_groups`.
GROUPS = ("item_id", "item_feature", "user", "other")


def feature_branch_modules(model: nn.Module) -> list[nn.Module]:
    """Modules named by ``model.feature_branch`` (containers expanded to their children).

    Returns an empty list for a model without the attribute (no feature branch to observe).

    Raises:
        ConfigError: a name that is not a submodule of ``model``.
    """
    mods: list[nn.Module] = []
    for name in getattr(model, "feature_branch", ()):
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(
                f"{type(model).__name__}: feature_branch names {name!r}, which is not a submodule"
            ) from None
        if isinstance(mod, (nn.ModuleList, nn.ModuleDict)):
            mods.extend(mod.children())
        else:
            mods.append(mod)
    return mods


def checked_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """``model.parameter_groups()``, checked to be a partition of the trainable parameters."""
    groups = model.parameter_groups()
    missing = [g for g in GROUPS if g not in groups]
    if missing:
        raise ConfigError(f"{type(model).__name__}.parameter_groups() lacks {missing}")
    seen: dict[int, str] = {}
    for g in GROUPS:
        for p in groups[g]:
            if id(p) in seen:
                raise ConfigError(
                    f"{type(model).__name__}.parameter_groups(): a parameter of shape "
                    f"{tuple(p.shape)} is in both {seen[id(p)]!r} and {g!r}"
                )
            seen[id(p)] = g
    extra = [tuple(p.shape) for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if extra:
        raise ConfigError(
            f"{type(model).__name__}.parameter_groups() misses parameters of shapes {extra}"
        )
    return {g: [p for p in groups[g] if p.requires_grad] for g in GROUPS}


def item_id_tables(model: nn.Module) -> list[nn.Parameter]:
    """Item ID tables: parameters of the ``item_id`` group with ``num_items`` rows."""
    return [
        p
        for p in model.parameter_groups()["item_id"]
        if p.dim() == 2 and p.shape[0] == model.num_items
    ]


@contextlib.contextmanager
def keep_only(model: nn.Module, part: str) -> Iterator[bool]:
    """Temporarily keep only one part of the item representation.

    ``part="id"`` zeroes the output of every feature-branch module (a forward hook replacing it
    by zeros); ``part="feature"`` zeroes the item ID tables (saved and copied back bit-exactly on
    exit). What is zeroed is the input of the rest of the model, so graph propagation, fusion and
    normalisation run as usual on the remaining part.

    Yields:
        whether the ablation touched anything: ``False`` if the model has no such part (no ID
        table, no feature branch) or, for ``"id"``, if no feature-branch module ran inside the
        block (the features do not enter the scored representation, e.g. FREEDOM and BM3).
    """
    if part == "feature":
        tables = item_id_tables(model)
        saved = [p.detach().clone() for p in tables]
        try:
            with torch.no_grad():
                for p in tables:
                    p.zero_()
            yield bool(tables)
        finally:
            with torch.no_grad():
                for p, s in zip(tables, saved):
                    p.copy_(s)
    elif part == "id":
        calls = [0]

        def zero(module, inputs, output):
            calls[0] += 1
            return torch.zeros_like(output)

        handles = [m.register_forward_hook(zero) for m in feature_branch_modules(model)]
        flag = _Flag()
        try:
            yield flag
        finally:
            for h in handles:
                h.remove()
            flag.value = calls[0] > 0
    else:
        raise ConfigError(f"keep_only: part must be 'id' or 'feature', got {part!r}")


class _Flag:
    """Truth value filled in when a :func:`keep_only` block exits."""

    value: bool | None = None

    def __bool__(self) -> bool:
        return bool(self.value)
