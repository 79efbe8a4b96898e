"""Nothing lirdrec opens can run code: checkpoints load weights-only; no unsafe loader exists."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lirdrec.cli.main import main
from lirdrec.data.synthetic import write_synthetic
from lirdrec.errors import CheckpointError
from lirdrec.train.checkpoint import decode_state, encode_state, load_checkpoint, save_checkpoint

PACKAGE = Path(__file__).resolve().parents[1] / "lirdrec"


class _Payload:
    """Unpickling this creates ``path``: the proof that a loader ran code from the file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _plant(ckpt: Path, sentinel: Path) -> None:
    torch.save({"format": "lirdrec-checkpoint/2", "train": _Payload(sentinel)}, ckpt)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    data, _ = write_synthetic(base / "syn", seed=0, use_encoders=False, num_users=60, num_items=80)
    out = base / "run"
    assert main(["-q", "train", "--model", "mf", "--data", str(data), "--epochs", "1",
                 "--set", "embedding_dim=4", "--out", str(out)]) == 0
    return data, out


def test_the_payload_does_run_code_under_pickle(tmp_path):
    # the test below is only meaningful if the payload works when unpickled unsafely
    sentinel = tmp_path / "ran"
    _plant(tmp_path / "c.pt", sentinel)
    torch.load(tmp_path / "c.pt", weights_only=False)
    assert sentinel.exists()


def test_every_command_that_opens_a_checkpoint_refuses_a_code_carrying_one(run_dir, tmp_path,
                                                                           capsys):
    data, out = run_dir
    sentinel = tmp_path / "ran"
    _plant(out / "checkpoint.pt", sentinel)
    exp = tmp_path / "exp.yaml"
    exp_out = tmp_path / "exp"
    exp.write_text(f"name: t\nout: {exp_out}\ndatasets: {{syn: {{data: {data}}}}}\n"
                   "models: {mf: {params: {embedding_dim: 4}}}\nseeds: [1]\ntrainer: {epochs: 1}\n")
    point = exp_out / "runs" / "syn" / "mf" / "seed-1" / "point-000"
    point.mkdir(parents=True)
    _plant(point / "checkpoint.pt", sentinel)
    for argv in (["evaluate", str(out)], ["train", "--resume", str(out), "--epochs", "2"],
                 ["experiment", str(exp)]):
        capsys.readouterr()
        assert main(["-q", *argv]) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert err.startswith("lirdrec: error: ") and "refused" in err and "run code" in err, err
        assert "checkpoint.pt" in err
        assert not sentinel.exists(), f"{argv[0]} ran code from the checkpoint"
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(out / "checkpoint.pt")
    assert not sentinel.exists()


def test_old_pickled_checkpoint_gets_a_recreate_message(tmp_path):
    torch.save({"model": {}, "numpy_rng": np.random.get_state()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="lirdrec 0.1.*Re-create it by training again"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_foreign_and_corrupt_files_are_not_checkpoints(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="format mark"):
        load_checkpoint(tmp_path / "a.pt")
    (tmp_path / "b.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a lirdrec checkpoint"):
        load_checkpoint(tmp_path / "b.pt")


def test_state_round_trips_exactly_through_a_safe_file(tmp_path):
    rng = np.random.RandomState(3).get_state()
    state = {"rng": rng, "u64": np.array([2**64 - 1], dtype=np.uint64),
             "be": np.arange(3, dtype=">f4"),
             "n": np.int64(7), "f": np.float64(0.25), "p": Path("/x/y"), "t": (torch.ones(2), None),
             "rows": [{"a": 1.5, "b": True}], "inf": -float("inf")}
    save_checkpoint(tmp_path / "c.pt", state)
    # the file opens under torch's own weights-only loader: no global of ours or numpy's in it
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert raw["format"] == "lirdrec-checkpoint/2"
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["rng"][0] == "MT19937" and back["rng"][1].dtype == np.uint32
    assert np.array_equal(back["rng"][1], rng[1]) and back["rng"][2:] == rng[2:]
    assert back["u64"].dtype == np.uint64 and int(back["u64"][0]) == 2**64 - 1
    assert back["be"].tolist() == [0.0, 1.0, 2.0]
    assert type(back["n"]) is int and type(back["f"]) is float and back["p"] == "/x/y"
    assert torch.equal(back["t"][0], torch.ones(2)) and back["t"][1] is None
    assert back["rows"] == [{"a": 1.5, "b": True}] and back["inf"] == -float("inf")
    np.random.set_state(back["rng"])  # numpy accepts the restored state
    assert decode_state(encode_state({"x": [1, (2, 3)]})) == {"x": [1, (2, 3)]}


def test_unsafe_state_is_refused_at_save_time_naming_its_key(tmp_path):
    with pytest.raises(CheckpointError, match=r"state\['cb'\]\['f'\]: a function"):
        save_checkpoint(tmp_path / "c.pt", {"cb": {"f": _plant}})
    with pytest.raises(CheckpointError, match="object arrays"):
        save_checkpoint(tmp_path / "c.pt", {"a": np.array([None, 1], dtype=object)})
    assert not (tmp_path / "c.pt").exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            kwargs = {k.arg: k.value for k in node.keywords}
            yield node, owner, name, kwargs


def test_no_unsafe_loader_anywhere_in_the_package():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = lambda n: f"{path.relative_to(PACKAGE.parent)}:{n.lineno}"  # noqa: E731
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                roots = {n.split(".")[0] for n in names}
                if roots & {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal"}:
                    bad.append(f"{where(node)}: imports a pickle-family module")
        for node, owner, name, kw in _calls(tree):
            if isinstance(node.func, ast.Name) and name in ("eval", "exec", "__import__"):
                bad.append(f"{where(node)}: {name}()")
            if owner == "torch" and name == "load":
                w = kw.get("weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    bad.append(f"{where(node)}: torch.load without weights_only=True")
            if owner == "np" and name == "load":
                a = kw.get("allow_pickle")
                if not (isinstance(a, ast.Constant) and a.value is False):
                    bad.append(f"{where(node)}: np.load without allow_pickle=False")
            if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load"):
                bad.append(f"{where(node)}: yaml.{name} (use yaml.safe_load)")
            if owner == "pd" and name == "read_pickle":
                bad.append(f"{where(node)}: pd.read_pickle")
    assert not bad, "\n".join(bad)


def test_the_audit_sees_what_it_forbids(tmp_path):
    # the grep test above must fail on each forbidden call; check its walker on a planted module
    src = ("import pickle\nimport torch, numpy as np, yaml\n"
           "torch.load('a')\nnp.load('b', allow_pickle=True)\nyaml.load(s)\neval('1')\n")
    found = [(o, n) for _, o, n, _ in _calls(ast.parse(src))]
    assert ("torch", "load") in found and ("np", "load") in found and ("yaml", "load") in found
    assert ("", "eval") in found


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_get_the_umask_mode_not_mkstemps_private_one(tmp_path, umask):
    from lirdrec.utils.io import atomic_write, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_write(tmp_path / "f.txt", "w") as fh:
            fh.write("x")
        save_checkpoint(tmp_path / "c.pt", {"a": 1})
    finally:
        os.umask(old)
    for name in ("f.txt", "c.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
