"""The configuration core: YAML files and ``--set key=value`` -> constructor keyword arguments.

Every driver (``lirdrec train``/``grid``/``evaluate``, the experiment runner, the gradient-bias
driver) resolves its configuration here, with :func:`resolve`: the one merge of config layers.
A driver adds a layer; it never re-implements the layering.

Precedence, lowest first: constructor defaults < the model's ``trainer_defaults`` (its reference
training settings, e.g. LIRDRec's ``lr=1e-4``) < config file < ``--set`` < explicit flags.
The valid keys are read from the signatures of the model class, :class:`~lirdrec.train.Trainer`
and the data options, so the config can never drift from the code. MMRec's key names are
accepted through one alias table (logged when used).

This module sits at the bottom of the house (it imports only :mod:`lirdrec.errors`): the model
registry and the trainer class live higher up, so they are handed to it with :func:`provide`
when their modules are imported (``import lirdrec``, which any ``import lirdrec.config`` runs
first, imports both).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from lirdrec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["ALIASES", "DATA_KEYS", "RunConfig", "config_layers", "parse_value", "parse_sets",
           "provide", "read_yaml", "model_defaults", "trainer_defaults", "resolve"]

#: MMRec / reference key -> lirdrec key.
ALIASES = {
    "embedding_size": "embedding_dim",
    "learning_rate": "lr",
    "train_batch_size": "batch_size",
    "eval_batch_size": "eval_batch_size",
    "stopping_step": "patience",
    "n_layers": "num_layers",
    "valid_metric": "valid_metric",
    "topk": "ks",
}

#: Keys that select data rather than model or trainer arguments.
DATA_KEYS = {"data": None, "modalities": None, "cold_items": 0.0}

#: Keys of the run itself.
RUN_KEYS = {"model": None, "out": None,
            "logger": None}  # experiment trackers: "tensorboard", "mlflow" or both, comma-separated

_NOT_HYPER = {"self", "num_users", "num_items"}

#: What higher stages hand to the config core: ``model_class`` (name -> class, the model
#: registry's ``get``), ``model_names`` and ``trainer`` (the trainer class).
_PROVIDED: dict[str, Any] = {}


def provide(**owners: Any) -> None:
    """Hand the config core what it reads signatures from (called by the model registry and the
    trainer module on import, so that this module never imports a higher stage).
    """
    _PROVIDED.update(owners)


def _provided(key: str) -> Any:
    if key not in _PROVIDED:  # only while ``lirdrec/__init__`` itself is half imported
        raise RuntimeError(f"lirdrec.config: {key} not provided yet; import lirdrec first")
    return _PROVIDED[key]


def parse_value(text: str, key: str | None = None) -> Any:
    """Parse a command-line value with ``yaml.safe_load`` (never ``eval``); ``1e-4`` is a float.

    Raises:
        ConfigError: one line naming the key (when given), the value and YAML's complaint.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = " ".join(str(getattr(exc, "problem", None) or "not valid YAML").split())
        where = f"--set {key}={text}" if key is not None else f"value {text!r}"
        raise ConfigError(f"{where}: cannot parse the value ({problem}); give a number, a word or "
                          "a comma-separated list such as image,text") from None
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text.strip()  # YAML 1.1 reads on/off/yes/no as booleans: keep the word (item_id=off)
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            return value
    return value


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["lr=1e-3", "modalities=image,text"]`` -> ``{"lr": 0.001, "modalities": "image,text"}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip(), key.strip())
    return out


#: The model configs and grids shipped inside the package (``datasets/configs`` in a checkout
#: is a link to this folder).
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def packaged_configs() -> list[str]:
    """Names of the shipped configs (``lirdrec``, ``lirdrec_grid``, ...), usable as
    ``--config NAME`` / ``--grid NAME``.
    """
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, or from the shipped config of that name (``"lirdrec"``,
    ``"freedom_grid.yaml"``) when no such file exists (a ConfigError names the file otherwise).
    """
    path = Path(path)
    if not path.is_file() and len(path.parts) == 1:
        shipped = PACKAGED_CONFIGS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
        if shipped.is_file():
            path = shipped
    if not path.is_file():
        hint = (f"; shipped configs: {', '.join(packaged_configs())}"
                if len(path.parts) == 1 else "")
        raise ConfigError(f"{path}: config file not found{hint}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, found {type(data).__name__}")
    return data


def _hyper_parameters(fn) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {name: p.default for name, p in sig.parameters.items()
            if name not in _NOT_HYPER and p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def model_defaults(cls: type) -> dict[str, Any]:
    """Hyper-parameters of a model class with their defaults (constructor arguments with a
    default; tensors and graphs have none and are built by ``from_dataset``).
    """
    return _hyper_parameters(cls.__init__)


def trainer_defaults() -> dict[str, Any]:
    """Trainer arguments that a config may set."""
    d = _hyper_parameters(_provided("trainer").__init__)
    for k in ("callbacks", "out_dir", "config", "show_progress"):
        d.pop(k, None)
    return d


def encoder_defaults() -> dict[str, Any]:
    """Keys of the aligned-encoder settings (:func:`lirdrec.train.encoded.encoder_settings`);
    empty until that module is imported (it hands itself in with :func:`provide`).
    """
    fn = _PROVIDED.get("encoder_settings")
    return {} if fn is None else _hyper_parameters(fn)


def _coerce(key: str, value: Any, default: Any, owner: str) -> Any:
    """Cast ``value`` to the type of ``default`` where that is unambiguous."""
    if default is None or value is None:
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            raise TypeError
        if isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (tuple, list)):
            if isinstance(value, str):
                value = [parse_value(v) for v in value.split(",") if v]
            return type(default)(value) if isinstance(value,
                                                      (list, tuple)) else type(default)([value])
        if isinstance(default, str) and isinstance(value, bool):
            return "on" if value else "off"  # `item_id: off` in a YAML file
        if isinstance(default, str) and not isinstance(value, str):
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigError(f"{owner}: {key} must be of type {type(default).__name__}, "
                          f"got {value!r}") from None
    return value


class RunConfig:
    """A resolved run: ``model`` name, ``model_kwargs``, ``trainer_kwargs``, ``data`` options."""

    def __init__(self, model: str, model_kwargs: dict[str, Any], trainer_kwargs: dict[str, Any],
                 data: dict[str, Any], run: dict[str, Any],
                 encoder: dict[str, Any] | None = None) -> None:
        self.model = model
        self.encoder = dict(encoder or {})
        self.model_kwargs = model_kwargs
        self.trainer_kwargs = trainer_kwargs
        self.data = data
        self.run = run

    def to_dict(self) -> dict[str, Any]:
        """Every resolved value, flat, as written to ``config.yaml``."""
        out: dict[str, Any] = {"model": self.model}
        out.update(self.data)
        out.update({k: v for k, v in self.run.items() if k != "model"})
        out.update(self.model_kwargs)
        if self.encoder.get("encoder", "none") != "none":  # older configs stay as they were
            out.update(self.encoder)
        out.update({k: list(v) if isinstance(v, tuple) else v
                    for k, v in self.trainer_kwargs.items()})
        return out


def config_layers(config: str | Path | dict[str, Any] | None = None,
                  sets: Iterable[str] | dict[str, Any] = (), *extra: dict[str, Any] | None,
                  drop: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The layers of one run in precedence order: a config file (a path or a mapping) without
    the keys in ``drop``, the ``--set`` items, then each driver's extra layers (grid point, fixed
    arguments, explicit flags), lowest first; ``None`` layers are skipped.

    >>> config_layers({"lr": 0.1, "seed": 1}, ["lr=0.2"], {"epochs": 3}, None, drop=["seed"])
    [{'lr': 0.1}, {'lr': 0.2}, {'epochs': 3}]
    """
    layers: list[dict[str, Any]] = []
    if config is not None:
        data = read_yaml(config) if isinstance(config, (str, Path)) else dict(config)
        layers.append({k: v for k, v in data.items() if k not in set(drop)})
    layers.append(dict(sets) if isinstance(sets, dict) else parse_sets(sets))
    layers += [dict(layer) for layer in extra if layer is not None]
    return layers


def resolve(model: str | None, layers: Iterable[dict[str, Any]]) -> RunConfig:
    """Merge config layers (lowest precedence first) into a :class:`RunConfig`.

    Raises:
        ConfigError: unknown model, unknown key (listing the valid keys) or a value of the wrong
            type.
    """
    model_class: Callable[[str], type] = _provided("model_class")
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key in ALIASES and ALIASES[key] != key:
                logger.info("config key %r read as %r (MMRec alias)", key, ALIASES[key])
                key = ALIASES[key]
            merged[key] = value
    name = model or merged.get("model")
    if not name:
        raise ConfigError(f"no model given; valid models: {', '.join(_provided('model_names')())}")
    cls = model_class(str(name))
    merged = {**getattr(cls, "trainer_defaults", {}), **merged}
    merged["model"] = cls.registry_name
    m_def, t_def, e_def = model_defaults(cls), trainer_defaults(), encoder_defaults()
    valid = set(m_def) | set(t_def) | set(e_def) | set(DATA_KEYS) | set(RUN_KEYS)
    unknown = sorted(k for k in merged if k not in valid)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(map(repr, unknown))} for model "
                          f"{cls.registry_name!r}; valid keys: {', '.join(sorted(valid))}")
    model_kwargs = {k: _coerce(k, merged[k], m_def[k], cls.__name__) for k in m_def if k in merged}
    trainer_kwargs = {k: _coerce(k, merged[k], t_def[k], "Trainer") for k in t_def if k in merged}
    data = {k: merged.get(k, d) for k, d in DATA_KEYS.items()}
    if isinstance(data["modalities"], (list, tuple)):
        data["modalities"] = ",".join(map(str, data["modalities"]))
    data["cold_items"] = float(data["cold_items"] or 0.0)
    run = {k: merged.get(k, d) for k, d in RUN_KEYS.items()}
    # defaults are resolved too, so config.yaml records every value actually used
    full_model = {**m_def, **model_kwargs}
    full_trainer = {**t_def, **trainer_kwargs}
    encoder = {k: _coerce(k, merged.get(k, d), d, "encoder") for k, d in e_def.items()}
    return RunConfig(cls.registry_name, full_model, full_trainer, data, run, encoder)
