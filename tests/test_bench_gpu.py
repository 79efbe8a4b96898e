"""benchmarks/bench_gpu.py (issue 22) on the CPU: its --small mode runs the GPU benchmark's code on
tiny shapes, and --device cuda without CUDA stops with one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lirdrec.models import registry
from lirdrec.train import Trainer
from lirdrec.utils.seed import seed_everything

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda_is_one_clear_line(bench, capsys):
    assert bench.main(["--device", "cuda", "--small"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench_gpu: device: 'cuda' asked for")
    assert "--device cpu" in err or "no CUDA device" in err


def test_unknown_model_is_one_line(bench, capsys):
    assert bench.main(["--device", "cpu", "--small", "--models", "lightgcn,sasrec"]) == 1
    err = capsys.readouterr().err
    assert err == "bench_gpu: --models: unknown ['sasrec']; expected some of lightgcn,lirdrec\n"


def test_small_cpu_run_trains_every_configuration(bench, tmp_path):
    out = tmp_path / "rows.json"
    assert bench.main(["--device", "cpu", "--small", "--epochs", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["data"], r["model"], r["dtype"]) for r in rows] == [
        (d, m, t) for d in ("tiktok (synthetic)", "100k (synthetic)")
        for m in ("lightgcn", "lirdrec") for t in ("fp32", "bf16")]
    for r in rows:
        assert "error" not in r and r["on device"] and r["peak GPU MiB"] == "-"
        assert r["epoch s"] > 0 and r["eval s"] > 0
        assert 0 < r["loss"] < 0.6932  # BPR starts at ln 2 and two epochs of Adam lower it
        assert (r["item graph s"] == "-") == (r["model"] == "lightgcn")
    # the row's loss is the trainer's on that set, model and seed: what the benchmark says it ran
    ds, _ = bench.load_data("tiktok", small=True)
    assert rows[0]["pairs"] == len(ds.train)
    seed_everything(0)
    m = registry.get("lightgcn").from_dataset(ds, **bench.MODELS["lightgcn"])
    ref = Trainer(lr=1e-3, epochs=2, batch_size=2048, patience=2, seed=0,
                  show_progress=False).fit(m, ds)
    assert rows[0]["loss"] == round(ref.history[-1]["loss"], 5)
    # LIRDRec's bfloat16 encoders change its loss a little, not a lot
    fp32, bf16 = rows[2]["loss"], rows[3]["loss"]
    assert abs(fp32 - bf16) < 1e-2


def test_gpu_check_script_runs_the_gpu_tests_and_the_benchmark():
    text = (BENCH.parent / "gpu_check.sh").read_text()
    assert "pytest -q -m gpu" in text and "bench_gpu.py" in text and "$OUT" in text
