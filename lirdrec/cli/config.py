"""Moved to :mod:`lirdrec.config` (the configuration core); names re-exported for old imports."""

from lirdrec.config import (  # noqa: F401
    ALIASES,
    DATA_KEYS,
    RUN_KEYS,
    RunConfig,
    config_layers,
    model_defaults,
    parse_sets,
    parse_value,
    read_yaml,
    resolve,
    trainer_defaults,
)
