"""RepresentationTrainer and ``lirdrec represent``: tiny LLM / CLIP / Q-Former saved to tmp_path,
a toy dataset with an item table and images; train -> resume -> evaluate -> export -> load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lirdrec.cli.main import main
from lirdrec.data.pairs import PairSplit
from lirdrec.encoders.notellm2 import ItemInputs, NoteLLM2, tiny_llm
from lirdrec.train.represent import RepresentationTrainer

pytestmark = pytest.mark.filterwarnings("ignore::lirdrec.errors.DataWarning")

NUM_ITEMS = 10
TINY = [
    "--set",
    "num_query_tokens=2",
    "--set",
    "qformer_layers=1",
    "--set",
    "qformer_hidden_size=16",
    "--set",
    "qformer_heads=2",
    "--set",
    "qformer_intermediate_size=32",
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Dataset dir, recipe, tiny LLM folder, tiny CLIP folder."""
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    root = tmp_path_factory.mktemp("toy")
    raw = root / "raw"
    (raw / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["id,name,desc"]
    for i in range(NUM_ITEMS):
        cluster = i // 5
        rows.append(f"{100 + i},Thing {i},{'red round ball' if cluster == 0 else 'blue box'} {i}")
        if i != 3:  # item 3 has no image: mean-filled with a warning
            colour = (200, 30, 30) if cluster == 0 else (30, 30, 200)
            Image.new("RGB", (40, 40), colour).save(raw / "img" / f"{100 + i}.png")
    (raw / "items.csv").write_text("\n".join(rows) + "\n")
    data = root / "data"
    data.mkdir()
    lines = ["userID\titemID\trating\ttimestamp\tx_label"]
    for u in range(12):
        base = 0 if u % 2 == 0 else 5
        its = rng.permutation(np.arange(base, base + 5))
        for k, i in enumerate(its):
            lines.append(f"{u}\t{i}\t1\t{k}\t{0 if k < 3 else 1 if k == 3 else 2}")
    (data / "toy.inter").write_text("\n".join(lines) + "\n")
    (data / "i_id_mapping.csv").write_text(
        "item\titemID\n" + "".join(f"{100 + i}\t{i}\n" for i in range(NUM_ITEMS))
    )
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"name: toy\nraw_dir: {raw}\ninteractions: {{path: u.csv}}\n"
        "items: {path: items.csv, id_col: id, title_col: name}\n"
        "images: {dir: img, pattern: '{id}.png'}\n"
    )
    tok, llm = tiny_llm()
    llm.save_pretrained(root / "llm")
    tok.save_pretrained(root / "llm")
    torch.manual_seed(0)
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=12,
            intermediate_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        )
    )
    clip.save_pretrained(root / "clip")
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(root / "clip")
    return {
        "root": root,
        "data": data,
        "recipe": recipe,
        "llm": root / "llm",
        "clip": root / "clip",
    }


def _train_args(toy, out, *extra):
    return [
        "represent",
        "train",
        "--data",
        str(toy["data"]),
        "--recipe",
        str(toy["recipe"]),
        "--text-template",
        "{desc}",
        "--vision",
        str(toy["clip"]),
        "--llm",
        str(toy["llm"]),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--eval-every",
        "2",
        "--max-steps",
        "4",
        "--top-k",
        "3",
        "--valid",
        "0.2",
        "--test",
        "0.2",
        "--lr",
        "1e-3",
        "--cache-dir",
        str(toy["root"] / "cache"),
        *TINY,
        *extra,
    ]


def test_cli_train_evaluate_export(toy, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_args(toy, run)) == 0
    printed = capsys.readouterr().out
    assert "Recall@100" in printed and "run directory" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test_by_input"]) == {"both", "image", "text"}
    assert [h["step"] for h in metrics["history"]] == [2, 4]
    for f in ("config.json", "log.csv", "checkpoint.pt", "pairs.npz", "best/model.safetensors"):
        assert (run / f).is_file(), f
    # evaluate the run again (same best model, same pairs) -> the training's test numbers
    assert (
        main(
            [
                "represent",
                "evaluate",
                "--run",
                str(run),
                "--modes",
                "both,image",
                "--json",
                str(tmp_path / "eval.jsonl"),
            ]
        )
        == 0
    )
    got = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert got[0]["Recall@10"] == pytest.approx(metrics["test"]["Recall@10"])
    assert got[1]["input"] == "image"
    # export into a new dataset directory: it loads and validates with the new modality
    out = tmp_path / "data2"
    assert main(["represent", "export", str(run), "--out", str(out), "--name", "nl2"]) == 0
    from lirdrec.data import load_dataset

    ds = load_dataset(out)
    assert ds.features["nl2"].shape == (NUM_ITEMS, 64)
    model = NoteLLM2.load(run / "best")
    assert np.isfinite(ds.features["nl2"].numpy()).all() and model.variant == "notellm2"


def test_cli_train_modes_choose_the_test_inputs(toy, tmp_path):
    """--modes both,text: only the text-only check runs after training (the default runs both
    image-only and text-only encodings, which on a real dataset cost two more encodings)."""
    run = tmp_path / "run"
    assert main(_train_args(toy, run, "--modes", "both,text", "--variant", "basic")) == 0
    by_input = json.loads((run / "metrics.json").read_text())["test_by_input"]
    assert set(by_input) == {"both", "text"}
    assert by_input["text"]["queries"] == by_input["both"]["queries"] >= 1


def test_cli_errors_are_one_line(toy, tmp_path, capsys):
    assert main(_train_args(toy, tmp_path / "r0", "--modes", "both,colour")) == 1
    assert "--modes must be a comma list" in capsys.readouterr().err
    assert main(_train_args(toy, tmp_path / "r1", "--set", "no_such_key=1")) == 1
    assert "unknown key 'no_such_key'" in capsys.readouterr().err
    args = _train_args(toy, tmp_path / "r2")
    args[args.index("--vision") + 1] = str(tmp_path / "no-such-model")
    assert main(args) == 1
    assert "unknown vision backend" in capsys.readouterr().err
    assert main(["represent", "export", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "not a represent run directory" in capsys.readouterr().err


def _tiny_model_and_items():
    """The tiny mICL model (seeded) and 12 items with 3 vision tokens of width 6."""
    tok, llm = tiny_llm(seed=1)
    torch.manual_seed(1)
    model = NoteLLM2(
        llm,
        tok,
        vision_dim=6,
        variant="micl",
        num_query_tokens=2,
        qformer_layers=1,
        qformer_hidden_size=8,
        qformer_heads=2,
        qformer_intermediate_size=16,
    )
    rng = np.random.default_rng(0)
    items = ItemInputs(
        [f"t{i}" for i in range(12)],
        [f"x {i % 3}" for i in range(12)],
        rng.standard_normal((12, 3, 6)).astype(np.float32),
    )
    return model, items


def _fit(tmp_path, name, fail_at=None, **trainer_kw):
    model, items = _tiny_model_and_items()
    pairs = PairSplit(
        train=np.array([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]),
        valid=np.array([[1, 2], [5, 6]]),
        test=np.array([[3, 4], [9, 10]]),
    )
    trainer = RepresentationTrainer(
        lr=1e-2,
        batch_size=2,
        epochs=2,
        eval_every=2,
        seed=3,
        ks=(1, 3),
        valid_metric="Recall@3",
        out_dir=tmp_path / name,
        show_progress=False,
        **trainer_kw,
    )
    if fail_at is not None:
        calls = {"n": 0}
        original = model.loss

        def failing(out):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise KeyboardInterrupt
            return original(out)

        model.loss = failing
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(model, items, pairs)
        return None
    return trainer.fit(model, items, pairs, resume=(tmp_path / name / "checkpoint.pt").exists())


def test_resume_reaches_the_uninterrupted_numbers(tmp_path):
    straight = _fit(tmp_path, "a")
    _fit(tmp_path, "b", fail_at=4)  # interrupted after the step-2 checkpoint
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    assert not (tmp_path / "b" / "metrics.json").exists()
    resumed = _fit(tmp_path, "b")
    assert [h["step"] for h in resumed.history] == [2, 4, 6]
    assert resumed.history[-1]["loss"] == pytest.approx(straight.history[-1]["loss"], rel=1e-5)
    assert resumed.valid == straight.valid and resumed.test == straight.test
    assert resumed.best_step == straight.best_step
    assert len(resumed.step_losses) == 6  # the steps before the interruption come back too
    np.testing.assert_allclose(resumed.step_losses, straight.step_losses, rtol=1e-5)


def test_training_lowers_the_loss_and_selects_by_validation(tmp_path):
    result = _fit(tmp_path, "c")
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    best = max(result.history, key=lambda h: h["valid/Recall@3"])  # first of equals
    assert result.best_step == best["step"]
    assert (Path(tmp_path / "c" / "best") / "config.json").is_file()


def test_step_losses_and_the_untrained_evaluation(tmp_path):
    """step_losses: one per step, their means per evaluation window are the history's losses;
    at_start: the untrained model's numbers (the model before its first step), not selectable."""
    from lirdrec.evaluate.i2i import i2i_recall

    result = _fit(tmp_path, "d", eval_at_start=True)
    assert len(result.step_losses) == 6
    for k, h in enumerate(result.history):  # evaluations after steps 2, 4, 6
        assert h["loss"] == pytest.approx(np.mean(result.step_losses[2 * k : 2 * k + 2]))
    # the same model and inputs as _fit, encoded before any step
    model, items = _tiny_model_and_items()
    emb = model.encode(items, show_progress=False)
    want = i2i_recall(emb, np.array([[1, 2], [5, 6]]), (1, 3))
    assert result.at_start["valid"] == pytest.approx(want)
    assert set(result.at_start) == {"valid", "test"}
    assert result.best_step in {h["step"] for h in result.history}  # never step 0
    saved = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert saved["at_start"]["valid"] == pytest.approx(want)
    assert len(saved["step_losses"]) == 6
