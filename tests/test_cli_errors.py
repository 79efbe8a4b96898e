"""Errors before work, in one line; quiet output; what an interrupted command says (issue 19)."""

from __future__ import annotations

import logging

import pytest

from lirdrec.cli import main as cli_main
from lirdrec.cli.main import main
from lirdrec.data.synthetic import write_synthetic
from lirdrec.utils import logging as lirdrec_logging

NOWHERE = "/nonexistent/dataset"  # never reached: every setting is checked first


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d, _ = write_synthetic(tmp_path_factory.mktemp("s") / "s", seed=0, use_encoders=False,
                           num_users=40, num_items=40)
    return d


@pytest.mark.parametrize("flags,message", [
    (["--set", "lr=-1"], "Trainer: lr must be > 0, got -1.0"),
    (["--set", "fusion=bogus"], "LIRDRec: fusion must be one of pwc, attention, mean, concat"),
    (["--epochs", "0"], "Trainer: epochs must be >= 1, got 0"),
    (["--device", "gpu"], "device: 'gpu' is not a device; use cpu, cuda, cuda:N or mps"),
    (["--set", "ks=0,5"], "Trainer: ks must be cut-offs >= 1"),
    (["--set", "logger=wandb"], "logger: unknown ['wandb']"),
])
def test_bad_settings_fail_before_any_data_is_read(flags, message, capsys):
    assert main(["train", "--model", "lirdrec", "--data", NOWHERE, *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and "nonexistent" not in err


def test_cuda_on_a_cpu_build_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--model", "mf", "--data", NOWHERE, "--device", "cuda"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no CUDA" in err and "--device cpu" in err


def test_cut_offs_above_the_item_count_fail_before_training_and_leave_no_run(small, tmp_path,
                                                                             capsys, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, "lirdrec"):
        assert main(["train", "--model", "mf", "--data", str(small), "--set", "ks=5,20,50",
                     "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the loader's INFO lines
    assert err.startswith("lirdrec: error: ") and "ks [50] exceed the 40 items" in err
    assert "ks=5,10,20" in err
    assert not any("epoch 1" in r.getMessage() for r in caplog.records)  # before any epoch
    assert not out.exists()  # a failed run does not leave a folder that looks like a run


def test_a_run_that_fails_after_a_checkpoint_is_marked(small, tmp_path, monkeypatch, capsys):
    from lirdrec.train.trainer import Trainer

    real = Trainer._write_metrics

    def broken(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Trainer, "_write_metrics", broken)
    out = tmp_path / "run"
    assert main(["-q", "train", "--model", "mf", "--data", str(small), "--epochs", "1",
                 "--set", "ks=5,10,20", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the loader's warnings
    assert err.startswith("lirdrec: internal error: RuntimeError: disk full at ")
    assert "--debug" in err and "Traceback" not in err
    assert (out / "checkpoint.pt").is_file() and not (out / "metrics.json").exists()
    assert (out / "FAILED.txt").read_text() == "RuntimeError: disk full\n"
    monkeypatch.setattr(Trainer, "_write_metrics", real)
    with pytest.raises(RuntimeError, match="disk full"):  # --debug: the traceback is the user's
        monkeypatch.setattr(Trainer, "_write_metrics", broken)
        main(["-q", "--debug", "train", "--model", "mf", "--data", str(small), "--epochs", "1",
              "--set", "ks=5,10,20", "--out", str(tmp_path / "run2")])


@pytest.mark.parametrize("command,argv,says", [
    ("train", ["train", "--model", "mf", "--data", "D", "--out", "R"],
     "continue with `lirdrec train --resume R`"),
    ("prepare", ["prepare", "recipe.yaml"], "run the same command again to continue (finished "
                                            "chunks of each modality are cached)"),
    ("experiment", ["experiment", "e.yaml"], "finished runs are kept"),
])
def test_ctrl_c_says_how_each_command_continues(command, argv, says, monkeypatch, capsys):
    module = {"train": "train", "prepare": "prepare", "experiment": "experiment"}[command]
    mod = __import__(f"lirdrec.cli.{module}", fromlist=["run"])

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "run", interrupted)
    parser = cli_main.build_parser()
    args = parser.parse_args(argv)
    args.func = interrupted
    monkeypatch.setattr(cli_main, "build_parser", lambda: _Fixed(parser, args))
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"lirdrec: interrupted; {says}" if command == "train" else says in err
    assert "train --resume" not in err or command == "train"


class _Fixed:
    def __init__(self, parser, args):
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args


def test_progress_bars_follow_one_rule(monkeypatch):
    monkeypatch.setattr(lirdrec_logging, "_QUIET", False)
    monkeypatch.setattr(lirdrec_logging, "_interactive", lambda: True)
    assert lirdrec_logging.progress_enabled() is True
    assert lirdrec_logging.progress_enabled(False) is False
    monkeypatch.setattr(lirdrec_logging, "_interactive", lambda: False)  # output redirected
    assert lirdrec_logging.progress_enabled() is False
    assert lirdrec_logging.progress_enabled(True) is True
    monkeypatch.setattr(lirdrec_logging, "_interactive", lambda: True)
    lirdrec_logging.setup_logging(-1)  # lirdrec -q
    try:
        assert lirdrec_logging.progress_enabled() is False
    finally:
        lirdrec_logging.setup_logging(0)
    assert lirdrec_logging.progress_enabled() is True


def test_model_structure_only_with_verbose(small, tmp_path, caplog):
    def structure(argv):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, "lirdrec"):
            assert main([*argv, "train", "--model", "lightgcn", "--data", str(small), "--epochs",
                         "1", "--set", "ks=5,10,20", "--out", str(tmp_path / f"r{len(argv)}")]) == 0
        return [r for r in caplog.records if r.getMessage().startswith("LightGCN(")]

    assert structure([]) == []  # default: no ~40 lines of model structure
    shown = structure(["-v"])
    assert len(shown) == 1 and shown[0].levelno == logging.DEBUG
