"""Hyper-parameter search beyond the full grid: Optuna's TPE sampler, selected by validation.

A search space is a YAML mapping ``key -> spec``; the keys are the same as ``--set`` keys::

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # float (log-uniform)
    reg_weight: {low: 1.0e-5, high: 1.0e-2, log: true}
    n_ui_layers: {low: 1, high: 4}                  # int (both bounds integers)
    embedding_dim: [32, 64, 128]                    # categorical

:func:`tune` runs ``n_trials`` trainings, each to early stopping in its own run directory, and
maximises the validation metric (never test). The study lives in ``<out>/study.db`` (SQLite), so
running the same command again continues it: finished trials are kept, a trial killed mid-way is
marked failed and its parameters are tried again, resuming its run directory from the checkpoint
(a trial's directory is named by its parameters, not its number).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lirdrec.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["SearchSpace", "parse_space", "tune", "TuneResult"]


@dataclass(frozen=True)
class SearchSpace:
    """Parsed search space: ``{key: ("float"|"int", low, high, log) | ("cat", choices)}``."""

    params: dict[str, tuple]

    def suggest(self, trial) -> dict[str, Any]:
        """One point from an Optuna ``trial``."""
        out: dict[str, Any] = {}
        for key, spec in self.params.items():
            if spec[0] == "cat":
                out[key] = trial.suggest_categorical(key, list(spec[1]))
            elif spec[0] == "int":
                out[key] = trial.suggest_int(key, spec[1], spec[2], log=spec[3])
            else:
                out[key] = trial.suggest_float(key, spec[1], spec[2], log=spec[3])
        return out


def parse_space(space: dict[str, Any], where: str = "search space") -> SearchSpace:
    """Check a search-space mapping (see the module docstring); errors name the key.

    >>> parse_space({"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "d": [32, 64]}).params["d"]
    ('cat', (32, 64))
    """
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: expected a non-empty mapping key -> range or list of values")
    params: dict[str, tuple] = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{where}: {key}: an empty list of choices")
            params[key] = ("cat", tuple(spec))
            continue
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec):
            raise ConfigError(f"{where}: {key}: expected a list of choices or "
                              f"{{low: ..., high: ..., log: true|false}}, got {spec!r}")
        extra = set(spec) - {"low", "high", "log"}
        if extra:
            raise ConfigError(f"{where}: {key}: unknown field(s) {sorted(extra)}; valid: low, "
                              "high, log")
        low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"{where}: {key}: low and high must be numbers, got {low!r}, "
                              f"{high!r}")
        if not low < high or (log and low <= 0):
            raise ConfigError(f"{where}: {key}: need low < high (and low > 0 with log), got "
                              f"{low}, {high}")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        params[key] = (kind, low, high, log)
    return SearchSpace(params)


@dataclass
class TuneResult:
    """The best trial by validation metric and every finished trial."""

    best_params: dict[str, Any]
    best_valid: float
    best_test: dict[str, float]
    best_dir: Path
    trials: list[dict[str, Any]]


def _point_dir(out: Path, params: dict[str, Any]) -> Path:
    key = json.dumps(params, sort_keys=True, default=str)
    return out / "trials" / hashlib.sha256(key.encode()).hexdigest()[:12]


def tune(train: Callable[[dict[str, Any], Path, bool], Any], space: SearchSpace, out: str | Path,
         n_trials: int, seed: int = 999, metric: str = "Recall@20") -> TuneResult:
    """Run (or continue) a TPE study maximising validation ``metric``.

    Args:
        train: ``train(params, run_dir, resume) -> FitResult``: one training with ``params``
            layered over the fixed settings (the CLI passes :func:`lirdrec.train.run_training`).
        space: from :func:`parse_space`.
        out: study folder (``study.db``, ``trials/<hash>/`` run directories, ``trials.csv``).
        n_trials: finished trials wanted in total (a continued study counts earlier ones).
        seed: TPE sampler seed (the same seed and trials give the same suggestions).
        metric: validation metric to maximise.
    """
    try:
        import optuna
    except ImportError:
        raise ConfigError("lirdrec tune needs optuna: pip install optuna (or lirdrec[tune])"
                          ) from None
    import pandas as pd

    from lirdrec.utils.io import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="lirdrec", storage=f"sqlite:///{(out / 'study.db').resolve()}",
        sampler=optuna.samplers.TPESampler(seed=seed), direction="maximize", load_if_exists=True)
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        # killed mid-trial by an earlier process: fail it, try its point again (it resumes)
        study._storage.set_trial_state_values(t._trial_id, state.FAIL)
        study.enqueue_trial(t.params)
        logger.info("trial %d was interrupted; its point is tried again", t.number)

    def objective(trial) -> float:
        params = space.suggest(trial)
        run_dir = _point_dir(out, params)
        resume = (run_dir / "checkpoint.pt").is_file() and not (run_dir / "metrics.json").is_file()
        if (run_dir / "metrics.json").is_file():
            res = json.loads((run_dir / "metrics.json").read_text())
            valid, test = res["valid"], res["test"]
        else:
            result = train(params, run_dir, resume)
            valid, test = result.valid, result.test
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("test", {k: test[k] for k in test if k.split("@")[0] in
                                     ("Recall", "NDCG")})
        logger.info("trial %d: %s -> valid %s %.4f", trial.number, params, metric, valid[metric])
        return float(valid[metric])

    done = len(study.get_trials(deepcopy=False, states=(state.COMPLETE,)))
    if done < n_trials:
        study.optimize(objective, n_trials=n_trials - done, catch=())
    complete = study.get_trials(deepcopy=False, states=(state.COMPLETE,))
    rows = [{"trial": t.number, **t.params, f"valid/{metric}": t.value,
             **{f"test/{k}": v for k, v in t.user_attrs.get("test", {}).items()},
             "run_dir": t.user_attrs.get("run_dir")} for t in complete]
    with atomic_write(out / "trials.csv", "w") as fh:
        pd.DataFrame(rows).to_csv(fh, index=False)
    best = study.best_trial
    return TuneResult(dict(best.params), float(best.value), dict(best.user_attrs.get("test", {})),
                      Path(best.user_attrs["run_dir"]), rows)
