"""Registry of models by their lowercase CLI names."""

from __future__ import annotations

from typing import Callable, TypeVar

from lirdrec.config import provide
from lirdrec.errors import ConfigError

__all__ = ["register", "get", "names"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: ``@register("lightgcn")`` makes the class ``get("lightgcn")``."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return deco


def get(name: str) -> type:
    """The model class registered as ``name``; a :class:`ConfigError` lists the valid names."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    return _REGISTRY[key]


def names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_REGISTRY)


provide(model_class=get, model_names=names)  # the config core reads constructors through these
