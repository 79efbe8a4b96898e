"""TensorBoard and MLflow trackers record what the trainer logged, epoch by epoch."""

from __future__ import annotations

import pytest

from lirdrec.data import synthetic
from lirdrec.errors import ConfigError
from lirdrec.models import MF
from lirdrec.train import Trainer
from lirdrec.train.tracking import MLflowLogger, TensorBoardLogger, make_loggers


@pytest.fixture(scope="module")
def ds():
    return synthetic.generate(seed=0, num_users=40, num_items=60)


def _fit(ds, out, callbacks):
    model = MF.from_dataset(ds, embedding_dim=4)
    return Trainer(epochs=3, batch_size=256, seed=1, out_dir=out, show_progress=False,
                   callbacks=callbacks, config={"model": "mf", "lr": 1e-3, "ks": [5, 20]}
                   ).fit(model, ds)


def test_tensorboard_scalars_equal_the_trainers_log(ds, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _fit(ds, tmp_path, [TensorBoardLogger()])
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    losses = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in losses] == [1, 2, 3]
    assert [v for _, v in losses] == pytest.approx([r["loss"] for r in result.history], rel=1e-6)
    valid = [e.value for e in acc.Scalars("valid/Recall@20")]
    assert valid == pytest.approx([r["valid/Recall@20"] for r in result.history], rel=1e-6)
    test = acc.Scalars("test/Recall@20")
    assert test[0].step == result.best_epoch
    assert test[0].value == pytest.approx(result.test["Recall@20"], rel=1e-6)


def test_mlflow_run_holds_params_and_metrics(ds, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    result = _fit(ds, tmp_path, [MLflowLogger()])
    mlflow.set_tracking_uri(f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    runs = mlflow.search_runs(experiment_names=["lirdrec"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["model"] == "mf" and run.data.params["ks"] == "5,20"
    assert run.data.metrics["test/Recall_at_20"] == pytest.approx(result.test["Recall@20"])
    client = mlflow.tracking.MlflowClient()
    hist = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in hist] == [1, 2, 3]
    assert [m.value for m in hist] == pytest.approx([r["loss"] for r in result.history])


def test_logger_names():
    assert make_loggers("none") == [] and make_loggers(None) == []
    assert [type(c).__name__ for c in make_loggers("tensorboard,mlflow")] == [
        "TensorBoardLogger", "MLflowLogger"]
    with pytest.raises(ConfigError, match=r"logger: unknown \['wandb'\]; valid: tensorboard"):
        make_loggers("wandb")


def test_set_logger_from_the_command_line(tmp_path):
    pytest.importorskip("tensorboard")
    from lirdrec.cli.main import main
    from lirdrec.data.synthetic import write_synthetic

    data, _ = write_synthetic(tmp_path / "syn", seed=0, use_encoders=False, num_users=40,
                              num_items=60)
    out = tmp_path / "run"
    assert main(["-q", "train", "--model", "mf", "--data", str(data), "--epochs", "2",
                 "--set", "logger=tensorboard", "--out", str(out)]) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "logger: tensorboard" in (out / "config.yaml").read_text()
    assert main(["-q", "train", "--model", "mf", "--data", str(data), "--epochs", "1",
                 "--set", "logger=wandb", "--out", str(tmp_path / "r2")]) == 1
