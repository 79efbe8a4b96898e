"""Is a saved run configuration the one now asked for? One rule for a finished run's
``config.yaml`` (:func:`lirdrec.train.run.check_finished_run`) and a resume checkpoint's saved
configuration (:class:`lirdrec.train.Trainer`).
"""

from __future__ import annotations

from typing import Any, Iterable

__all__ = ["config_defaults", "config_differences"]


def config_defaults(model: str) -> dict[str, Any]:
    """Every key a run configuration of ``model`` can hold, at its default (data, model,
    trainer and encoder keys); empty for a name no model is registered under.
    """
    from lirdrec.config import DATA_KEYS, encoder_defaults, model_defaults, trainer_defaults
    from lirdrec.models import registry

    if model.lower() not in registry.names():
        return {}
    return {**DATA_KEYS, **model_defaults(registry.get(model)), **trainer_defaults(),
            **encoder_defaults()}


def config_differences(saved: dict[str, Any], new: dict[str, Any],
                       ignore: Iterable[str] = ()) -> list[str]:
    """``"key: saved -> new"`` for every key of ``new`` whose value the saved configuration
    does not have.

    Tolerated: the keys in ``ignore``; keys of ``saved`` that ``new`` no longer has (a setting a
    newer lirdrec dropped); keys missing from ``saved`` whose new value is their default (a
    setting a newer lirdrec added: the older run behaved as the default). So adding a setting
    to a model never needs a compatibility entry anywhere.
    """
    ignore = set(ignore)
    defaults = config_defaults(str(new.get("model")))
    diffs = []
    for key in sorted(set(new) - ignore):
        value = new[key]
        if key not in saved:
            if key in defaults and value == defaults[key]:
                continue
            diffs.append(f"{key}: (not set) -> {value!r}")
        elif saved[key] != value:
            diffs.append(f"{key}: {saved[key]!r} -> {value!r}")
    return diffs
