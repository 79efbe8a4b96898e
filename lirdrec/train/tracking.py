"""Experiment tracking as trainer callbacks: TensorBoard and MLflow (both optional installs).

``lirdrec train ... --set logger=tensorboard`` (or ``mlflow``, or ``tensorboard,mlflow``) adds
them; in Python pass them in ``Trainer(callbacks=[TensorBoardLogger(...)])``. Per epoch they
record the training loss, the learning rate, the epoch's seconds and every validation metric; at
the end the test metrics of the selected epoch and the run's hyper-parameters.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from lirdrec.errors import ConfigError
from lirdrec.train.trainer import Callback

__all__ = ["TensorBoardLogger", "MLflowLogger", "LOGGERS", "make_loggers"]


def _flat(config: dict[str, Any] | None) -> dict[str, Any]:
    """Scalar hyper-parameters only (what both trackers accept), lists joined by commas."""
    out: dict[str, Any] = {}
    for k, v in (config or {}).items():
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        if isinstance(v, (bool, int, float, str)):
            out[str(k)] = v
    return out


def _run_dir(trainer) -> Path:
    """Where trackers write by default: the trainer's run directory, else ``runs/``."""
    return Path(trainer.out_dir) if trainer.out_dir is not None else Path("runs")


def _epoch_scalars(trainer) -> dict[str, float]:
    row = trainer.state.history[-1]
    out = {"train/loss": row["loss"], "train/lr": row["lr"], "time/train_s": row["train_s"],
           "time/eval_s": row["eval_s"]}
    out.update({k: v for k, v in row.items() if k.startswith("valid/")})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard event files (``torch.utils.tensorboard``; needs ``tensorboard``).

    Args:
        log_dir: event folder (default: ``<run dir>/tensorboard``, or ``runs/tensorboard``
            without a run directory).
    """

    def __init__(self, log_dir: str | Path | None = None):
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._writer = None

    def on_fit_start(self, trainer, model, ds) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger=tensorboard needs the tensorboard package: "
                              "pip install tensorboard (or lirdrec[tracking])") from None
        if self.log_dir is None:
            self.log_dir = _run_dir(trainer) / "tensorboard"
        self._writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, trainer, model, epoch, metrics) -> None:
        for key, value in _epoch_scalars(trainer).items():
            self._writer.add_scalar(key, value, epoch)
        self._writer.flush()

    def on_fit_end(self, trainer, model, result) -> None:
        test = {f"test/{k}": float(v) for k, v in result.test.items()
                if isinstance(v, (int, float)) and math.isfinite(v)}
        for key, value in test.items():
            self._writer.add_scalar(key, value, result.best_epoch)
        hp = _flat(getattr(trainer, "config", None))
        if hp:
            self._writer.add_hparams(hp, test or {"test/none": 0.0}, run_name=".")
        self._writer.close()


class MLflowLogger(Callback):
    """Parameters and metrics to an MLflow run (needs ``mlflow`` or ``mlflow-skinny``).

    Args:
        tracking_uri: where runs go (default: ``sqlite:///<run dir>/mlflow.db``, so nothing
            leaves the machine unless you point it at a server; ``mlflow ui --backend-store-uri``
            shows it).
        experiment: MLflow experiment name. (default: ``"lirdrec"``)
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "lirdrec"):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self._mlflow = None

    def on_fit_start(self, trainer, model, ds) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError("logger=mlflow needs the mlflow package: pip install mlflow-skinny "
                              "(or lirdrec[tracking])") from None
        self._mlflow = mlflow
        uri = self.tracking_uri
        if uri is None:
            base = _run_dir(trainer)
            base.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{(base / 'mlflow.db').resolve()}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(self.experiment)
        mlflow.start_run(run_name=type(model).__name__)
        hp = _flat(getattr(trainer, "config", None))
        if hp:
            mlflow.log_params(hp)

    def on_epoch_end(self, trainer, model, epoch, metrics) -> None:
        clean = {k.replace("@", "_at_"): v for k, v in _epoch_scalars(trainer).items()}
        self._mlflow.log_metrics(clean, step=epoch)

    def on_fit_end(self, trainer, model, result) -> None:
        test = {f"test/{k}".replace("@", "_at_"): float(v) for k, v in result.test.items()
                if isinstance(v, (int, float)) and math.isfinite(v)}
        self._mlflow.log_metrics(test | {"best_epoch": float(result.best_epoch)})
        self._mlflow.end_run()


LOGGERS = {"tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}


def make_loggers(names: str | Sequence[str] | None) -> list[Callback]:
    """``"tensorboard,mlflow"`` -> the callbacks (``None`` / ``""`` / ``"none"``: none).

    >>> [type(c).__name__ for c in make_loggers("tensorboard")]
    ['TensorBoardLogger']
    """
    if names is None:
        return []
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n and n != "none"]
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"logger: unknown {unknown}; valid: {', '.join(LOGGERS)} "
                          "(comma-separated)")
    return [LOGGERS[n]() for n in names]
