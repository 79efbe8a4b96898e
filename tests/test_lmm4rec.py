"""Aligned image-text encoders inside the recommenders (issue 16, the LMM4Rec study).

The contrastive loss by hand, the transformers CLIP path on a tiny random config, fine-tuning
on a toy set, the three feature modes (pre-trained bit for bit, end-to-end gradients for all
five feature-aware models), checkpoints and the missing-input policy.
"""

from __future__ import annotations

import inspect
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import write_tiny
from torch import nn

from lirdrec.data import load_dataset
from lirdrec.encoders.aligned import AlignedEncoder, ItemFeatureEncoder
from lirdrec.encoders.contrastive import (
    LogitScale,
    clip_loss,
    fit_contrastive,
    retrieval_recall,
)
from lirdrec.encoders.dual import DualEncoder
from lirdrec.errors import ConfigError, DataWarning
from lirdrec.train import Trainer
from lirdrec.train.encoded import build_encoder, encoder_features, encoder_settings
from lirdrec.train.run import build_model


def _trainer(**kw) -> Trainer:
    """A quiet trainer with cut-offs that fit 10 items."""
    return Trainer(ks=(2, 5), valid_metric="Recall@5", show_progress=False, **kw)


FEATURE_MODELS = ["vbpr", "lattice", "bm3", "freedom", "lirdrec"]
#: small widths; FREEDOM's features enter its loss only through the reg_weight term
MODEL_KW = {
    "vbpr": {"embedding_dim": 8},
    "lattice": {"embedding_dim": 8, "feat_embed_dim": 8, "knn_k": 3},
    "bm3": {"embedding_dim": 8},
    "freedom": {"embedding_dim": 8, "knn_k": 3, "reg_weight": 0.5},
    "lirdrec": {"embedding_dim": 8, "knn_k": 3},
}


# ----------------------------------------------------------------------------- the loss
def test_clip_loss_on_a_hand_computed_2x2_example():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[2.0, 0.0], [0.6, 0.8]])  # row 0 is normalised to [1, 0]
    # logits = 2 * v t^T = [[2, 1.2], [0, 1.6]]
    i2t = (math.log(1 + math.exp(1.2 - 2)) + math.log(1 + math.exp(0 - 1.6))) / 2
    t2i = (math.log(1 + math.exp(0 - 2)) + math.log(1 + math.exp(1.2 - 1.6))) / 2
    assert float(clip_loss(image, text, 2.0)) == pytest.approx(0.5 * (i2t + t2i), abs=1e-6)


def test_logit_scale_starts_at_one_over_0_07_and_is_capped_at_100():
    scale = LogitScale()
    assert float(scale().detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    assert float(scale().detach()) == pytest.approx(100.0, rel=1e-6)


def test_retrieval_recall_counts_own_text_in_top_k():
    image = torch.eye(4)
    text = torch.eye(4)[[0, 2, 1, 3]]  # items 1 and 2 swapped
    assert retrieval_recall(image, text, 1) == pytest.approx(0.5)
    assert retrieval_recall(image, text, 4) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- fine-tuning
def _toy_pairs(n: int, seed: int = 0):
    """Images and texts are two different linear views of one latent item vector plus noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 6, generator=g)
    image = z @ torch.randn(6, 20, generator=g) + 0.05 * torch.randn(n, 20, generator=g)
    text = z @ torch.randn(6, 12, generator=g) + 0.05 * torch.randn(n, 12, generator=g)
    return image, text


def test_fine_tuning_raises_held_out_retrieval_recall_and_only_moves_the_top():
    torch.manual_seed(0)
    image, text = _toy_pairs(240)
    enc = DualEncoder(dim=16, image_dim=20, text_dim=12)
    train, held = slice(0, 200), slice(200, 240)
    with torch.no_grad():
        before = retrieval_recall(enc.image_top(image[held]), enc.text_top(text[held]), 5)
    history = fit_contrastive(enc, image[train], text[train], epochs=60, lr=1e-2, batch_size=64)
    with torch.no_grad():
        after = retrieval_recall(enc.image_top(image[held]), enc.text_top(text[held]), 5)
    # 40 held-out texts: a random top-5 hits 1/8 of the time
    assert before < 0.4
    assert after >= 0.9
    assert history[-1] < history[0]


# ----------------------------------------------------------------------------- transformers CLIP
def _tiny_clip():
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config={"vocab_size": 40, "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=8)
    model = transformers.CLIPModel(cfg)
    words = "a red blue green poster movie of the cat dog".split()
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tk = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]",
                                               unk_token="[UNK]")
    proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32})
    from lirdrec.encoders.clip import ClipEncoder

    return ClipEncoder(model, processor=proc, tokenizer=tok, max_length=8)


def _images():
    from PIL import Image

    colours = [(200, 10, 10), (10, 10, 200), (10, 200, 10), (200, 200, 10)]
    return [Image.new("RGB", (40 + 3 * i, 30), c) for i, c in enumerate(colours)]


TEXTS = ["a red poster", "a blue movie", "the green cat", "a dog of the movie"]


def test_tiny_random_clip_through_the_transformers_path():
    enc = _tiny_clip()
    assert enc.dim == 8
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"logit_scale.log_scale", "model.visual_projection.weight",
                         "model.text_projection.weight"}
    image_ref, text_ref = enc.features(_images(), TEXTS)
    hv, ht = enc.image_trunk(_images()), enc.text_trunk(TEXTS)
    assert hv.shape == (4, 16) and ht.shape == (4, 16)
    # top(trunk(x)) is the model's own get_*_features, exactly
    torch.testing.assert_close(enc.image_top(hv), image_ref, rtol=0, atol=0)
    torch.testing.assert_close(enc.text_top(ht), text_ref, rtol=0, atol=0)
    loss = clip_loss(enc.image_top(hv), enc.text_top(ht), enc.logit_scale())
    loss.backward()
    for name, p in enc.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_tiny_clip_end_to_end_in_vbpr_trains_projections_and_nothing_frozen(tmp_path):
    enc = _tiny_clip()
    ds = _tiny_dataset(tmp_path)
    hv, ht = enc.image_trunk(_images()), enc.text_trunk(TEXTS)
    settings = encoder_settings(encoder="clip:tiny", encoder_mode="end2end", vl_loss_weight=0.5)
    ds2, source = encoder_features(ds, settings, encoder=enc, trunks=(hv, ht, None))
    model = build_model("vbpr", ds2, 0, embedding_dim=4)
    model.attach_feature_encoder(source)
    users, pos, neg = (torch.tensor(v) for v in ([0, 1, 2], [0, 1, 2], [3, 3, 0]))
    model.training_loss(users, pos, neg).backward()
    for name, p in enc.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


# ----------------------------------------------------------------------------- the three modes
def _tiny_dataset(tmp_path, num_items: int = 4):
    """The conftest tiny dataset (3 users, 4 items) with image 4x3 and text 4x5 files."""
    rows = [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
            (1, 1, 0), (1, 2, 0), (1, 0, 1), (1, 3, 2),
            (2, 2, 0), (2, 3, 0), (2, 1, 1), (2, 0, 2)]
    rng = np.random.default_rng(0)
    feats = {"image": rng.normal(size=(num_items, 3)).astype(np.float32),
             "text": rng.normal(size=(num_items, 5)).astype(np.float32)}
    return load_dataset(write_tiny(tmp_path / "tiny", rows, feats))


def _larger_dataset(tmp_path):
    """12 users, 10 items, every user with train, valid and test items."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(12):
        items = rng.permutation(10)[:6]
        rows += [(u, int(i), 0) for i in items[:4]] + [(u, int(items[4]), 1),
                                                       (u, int(items[5]), 2)]
    feats = {"image": rng.normal(size=(10, 3)).astype(np.float32),
             "text": rng.normal(size=(10, 5)).astype(np.float32)}
    return load_dataset(write_tiny(tmp_path / "larger", rows, feats))


def _trunks(num_items: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_items, 7, generator=g), torch.randn(num_items, 5, generator=g)


def _dual(seed: int = 0) -> DualEncoder:
    torch.manual_seed(seed)
    return DualEncoder(dim=6, image_dim=7, text_dim=5)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_pretrained_mode_trains_bit_identically_to_feature_files(tmp_path, name):
    ds = _larger_dataset(tmp_path)
    hv, ht = _trunks(ds.num_items)
    settings = encoder_settings(encoder="dual", encoder_mode="pretrained")
    ds_enc, source = encoder_features(ds, settings, encoder=_dual(), trunks=(hv, ht, None))
    assert source is None
    # today's path: the same matrices as feature files
    folder = tmp_path / "files"
    shutil.copytree(ds.path, folder)
    for m, x in ds_enc.features.items():
        np.save(folder / f"{m}_feat.npy", x.numpy())
    ds_files = load_dataset(folder)
    runs = []
    for data in (ds_enc, ds_files):
        model = build_model(name, data, 3, **MODEL_KW[name])
        result = _trainer(epochs=2, batch_size=16, seed=3).fit(model, data)
        runs.append(([r["loss"] for r in result.history], result.test,
                     {k: v.clone() for k, v in model.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]
    for k in runs[0][2]:
        assert torch.equal(runs[0][2][k], runs[1][2][k]), k


class _IdentityTops(AlignedEncoder):
    """Trunk outputs pass through unchanged (a scalar gain of 1 makes them trainable)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))
        self.dim = -1

    def image_top(self, h):
        return h * self.gain

    def text_top(self, h):
        return h * self.gain


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_attached_encoder_reproducing_the_features_gives_the_same_forward(tmp_path, name):
    ds = _tiny_dataset(tmp_path)
    model = build_model(name, ds, 0, **MODEL_KW[name])
    model.eval()
    with torch.no_grad():
        ref = model.forward()
    source = ItemFeatureEncoder(_IdentityTops(), ds.features["image"], ds.features["text"])
    model.attach_feature_encoder(source)
    with torch.no_grad():
        got = model.forward()
    for a, b in zip(ref, got):
        if name == "lirdrec":  # the cached DCT input is folded into the weights: float rounding
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_end_to_end_gradient_reaches_the_encoder_top_and_training_moves_it(tmp_path, name):
    ds = _larger_dataset(tmp_path)
    hv, ht = _trunks(ds.num_items)
    enc = _dual()
    settings = encoder_settings(encoder="dual", encoder_mode="end2end")
    ds_enc, source = encoder_features(ds, settings, encoder=enc, trunks=(hv, ht, None))
    model = build_model(name, ds_enc, 0, **MODEL_KW[name])
    model.attach_feature_encoder(source)
    users = torch.tensor([0, 1, 2, 3])
    pos = torch.tensor([int(ds.train.items[ds.train.users == u][0]) for u in range(4)])
    neg = torch.tensor([9, 8, 7, 6])
    model.training_loss(users, pos, neg).backward()
    for p in (enc.image_head.weight, enc.text_head.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert enc.logit_scale.log_scale.grad is None  # vl_loss_weight = 0: no contrastive term
    # the frozen inputs: trunk outputs (buffers) and the model's own constant feature tables
    assert not source.image_trunk.requires_grad and not source.text_trunk.requires_grad
    for p in getattr(model, "features", []):
        assert p.grad is None
    # the encoder top is in the model's parameters and state_dict; the trunk outputs are not
    params = {id(p) for p in model.parameters()}
    assert id(enc.image_head.weight) in params
    keys = set(model.state_dict())
    assert "feature_encoder.encoder.image_head.weight" in keys
    assert not any(k.endswith("_trunk") for k in keys)
    before = enc.image_head.weight.detach().clone()
    _trainer(epochs=1, batch_size=8, seed=0).fit(model, ds_enc)
    assert not torch.equal(before, enc.image_head.weight)


def test_vl_loss_weight_adds_the_contrastive_loss_of_the_batch_items(tmp_path):
    ds = _larger_dataset(tmp_path)
    hv, ht = _trunks(ds.num_items)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 2])
    losses = {}
    for w in (0.0, 0.5):
        enc = _dual()
        settings = encoder_settings(encoder="dual", encoder_mode="end2end", vl_loss_weight=w)
        ds_enc, source = encoder_features(ds, settings, encoder=enc, trunks=(hv, ht, None))
        model = build_model("vbpr", ds_enc, 0, embedding_dim=4)
        model.attach_feature_encoder(source)
        losses[w] = model.training_loss(users, pos, neg)
        if w:
            losses[w].backward()
            assert enc.logit_scale.log_scale.grad is not None
    items = torch.tensor([0, 1, 2])
    expected = clip_loss(enc.image_top(hv[items]), enc.text_top(ht[items]), 1 / 0.07)
    torch.testing.assert_close(losses[0.5] - losses[0.0], 0.5 * expected.detach(),
                               rtol=1e-5, atol=1e-6)


def test_contrastive_loss_leaves_out_unpaired_items():
    hv, ht = _trunks(5)
    enc = _dual()
    paired = torch.tensor([True, True, False, True, True])
    source = ItemFeatureEncoder(enc, hv, ht, paired)
    got = source.contrastive_loss(torch.tensor([0, 2, 3, 3]))
    keep = torch.tensor([0, 3])
    expected = clip_loss(enc.image_top(hv[keep]), enc.text_top(ht[keep]), enc.logit_scale())
    torch.testing.assert_close(got, expected)
    assert float(source.contrastive_loss(torch.tensor([2, 0]))) == 0.0  # one pair: no negative


# ----------------------------------------------------------------------------- checkpoints
def _fit_end2end(ds, out_dir, epochs, resume=False, mode="end2end"):
    hv, ht = _trunks(ds.num_items)
    settings = encoder_settings(encoder="dual", encoder_mode=mode, vl_loss_weight=0.1,
                                finetune_epochs=3, finetune_batch_size=4)
    enc = _dual()
    ds_enc, source = encoder_features(ds, settings, seed=5, out_dir=out_dir, encoder=enc,
                                      trunks=(hv, ht, None))
    model = build_model("lattice", ds_enc, 5, **MODEL_KW["lattice"])
    if source is not None:
        model.attach_feature_encoder(source)
    trainer = _trainer(epochs=epochs, batch_size=8, seed=5, out_dir=out_dir, patience=100)
    result = trainer.fit(model, ds_enc, resume=resume)
    return result, enc, ds_enc


def test_checkpoint_carries_the_encoder_top_and_resumes_exactly(tmp_path):
    ds = _larger_dataset(tmp_path)
    full, enc_full, _ = _fit_end2end(ds, tmp_path / "full", 4)
    _fit_end2end(ds, tmp_path / "cut", 2)
    from lirdrec.train.checkpoint import load_checkpoint

    ck = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert "feature_encoder.encoder.image_head.weight" in ck["model"]
    resumed, enc_resumed, _ = _fit_end2end(ds, tmp_path / "cut", 4, resume=True)
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    assert full.test == resumed.test
    for a, b in zip(enc_full.parameters(), enc_resumed.parameters()):
        assert torch.equal(a, b)


def test_fine_tuned_top_is_saved_in_the_run_and_read_back(tmp_path):
    ds = _larger_dataset(tmp_path)
    _, _, first = _fit_end2end(ds, tmp_path / "ft", 1, mode="finetuned")
    assert (tmp_path / "ft" / "encoder_top.pt").is_file()
    state = torch.load(tmp_path / "ft" / "encoder_top.pt", weights_only=True)
    assert set(state) == {"logit_scale.log_scale", "image_head.weight", "text_head.weight"}
    # fine-tuning moved the features away from the pre-trained ones
    _, _, pre = _fit_end2end(ds, tmp_path / "pre", 1, mode="pretrained")
    assert not torch.equal(first.features["image"], pre.features["image"])
    # read back (not re-fitted) on a second run in the same directory
    _, _, again = _fit_end2end(ds, tmp_path / "ft", 1, mode="finetuned", resume=True)
    assert torch.equal(first.features["image"], again.features["image"])


# ----------------------------------------------------------------------------- missing inputs
class _MeanColour(AlignedEncoder):
    """Trunk: the mean RGB of an image; text trunk: the text's length (no weights needed)."""

    def __init__(self):
        super().__init__()
        self.dim = 3
        self.head = nn.Linear(3, 3)

    def image_trunk(self, images):
        return torch.tensor(np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1))
                                      for im in images]))

    def text_trunk(self, texts):
        return torch.tensor([[float(len(t))] * 3 for t in texts])

    def image_top(self, h):
        return self.head(h)

    def text_top(self, h):
        return self.head(h)


def test_missing_image_and_empty_text_follow_the_prepare_fill_policy_and_warn(tmp_path):
    from PIL import Image

    paths = []
    for i, c in enumerate([(200, 0, 0), (0, 0, 100)]):
        Image.new("RGB", (8, 8), c).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    paths.append(tmp_path / "absent.png")
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    paths.append(tmp_path / "corrupt.png")
    texts = ["red", "", "blue", "green"]
    with pytest.warns(DataWarning) as record:
        hv, ht, paired = _MeanColour().item_trunks(paths, texts, ["a", "b", "c", "d"])
    messages = [str(w.message) for w in record]
    assert any("2 of 4 item(s) have no image (items c, d)" in m for m in messages)
    assert any("1 of 4 item(s) have no text (items b)" in m for m in messages)
    # missing rows: the mean of the present rows, MMRec's and prepare's convention
    torch.testing.assert_close(hv[2], torch.tensor([100.0, 0.0, 50.0]))
    torch.testing.assert_close(hv[3], hv[2])
    assert ht[1].tolist() == [0.0, 0.0, 0.0]  # the empty string is encoded, as prepare does
    assert paired.tolist() == [True, False, False, False]


def test_encoder_settings_and_config_keys():
    from lirdrec.cli.config import resolve

    cfg = resolve("vbpr", [{"encoder": "dual", "encoder_mode": "end2end",
                            "vl_loss_weight": "0.1"}])
    assert cfg.encoder["encoder"] == "dual" and cfg.encoder["vl_loss_weight"] == 0.1
    assert cfg.to_dict()["encoder_mode"] == "end2end"
    assert "encoder" not in resolve("vbpr", [{}]).to_dict()  # older configs are unchanged
    with pytest.raises(ConfigError, match="encoder_mode must be one of"):
        encoder_settings(encoder="dual", encoder_mode="frozen")
    with pytest.raises(ConfigError, match="encoder must be"):
        encoder_settings(encoder="vlmo")
    with pytest.raises(ConfigError, match="dual:last_block"):
        encoder_settings(encoder="dual:all")
    assert set(encoder_settings(encoder="dual:last_block")) == set(
        inspect.signature(encoder_settings).parameters)


def test_encoder_without_raw_items_is_a_clear_error(tmp_path):
    ds = _tiny_dataset(tmp_path)
    with pytest.raises(ConfigError, match="needs the dataset's raw items: set raw_items"):
        encoder_features(ds, encoder_settings(encoder="dual"), encoder=_dual())


def test_dual_encoder_with_its_last_image_block_unfrozen():
    pytest.importorskip("efficientnet_lite_pytorch")
    from lirdrec.features.image import ImageEncoder

    torch.manual_seed(0)
    enc = build_encoder(encoder_settings(encoder="dual:last_block", encoder_dim=8))
    assert enc.unfreeze_last_block
    images = _images()[:2]
    h = enc.image_trunk(images)
    assert h.shape == (2, 192, 7, 7)
    # the trainable block reproduces the frozen pooled features exactly where it starts
    head, enc.image_head = enc.image_head, nn.Identity()
    with torch.no_grad():
        pooled = enc.image_top(h)
    enc.image_head = head
    expected = torch.from_numpy(ImageEncoder(show_progress=False).encode(images))
    torch.testing.assert_close(pooled, expected, rtol=1e-4, atol=1e-4)
    # it trains (batch norm statistics stay frozen); the shared cached network is untouched
    stats = enc.image_bn.running_mean.clone()
    enc.train()
    clip_loss(enc.image_top(h), torch.randn(2, 8), 10.0).backward()
    assert enc.image_block._project_conv.weight.grad.abs().sum() > 0
    assert torch.equal(stats, enc.image_bn.running_mean)
    from lirdrec.features.image import _load_efficientnet

    assert _load_efficientnet("cpu")._blocks[-1]._project_conv.weight.grad is None
    assert "image_block._project_conv.weight" in enc.top_state_dict()


# ----------------------------------------------------------------------------- the command line
def _raw_dataset(tmp_path):
    """6 items with a recipe, an item table and pillow images (item 5 has none), 4 users."""
    from PIL import Image

    rows = []
    for u in range(4):
        items = [(u + k) % 6 for k in range(5)]
        rows += [(u, i, 0) for i in items[:3]] + [(u, items[3], 1), (u, items[4], 2)]
    rng = np.random.default_rng(0)
    folder = write_tiny(tmp_path / "data", rows,
                        {"image": rng.normal(size=(6, 3)).astype(np.float32),
                         "text": rng.normal(size=(6, 4)).astype(np.float32)})
    raw = folder / "raw"
    (raw / "img").mkdir(parents=True)
    lines = ["id,title,plot"]
    for i in range(6):
        lines.append(f"{101 + i},Movie {i},A story number {i} about {['cats', 'dogs'][i % 2]}.")
        if i < 5:
            colour = (40 * i, 200 - 30 * i, 90)
            Image.new("RGB", (40, 60), colour).save(raw / "img" / f"{101 + i}.png")
    (raw / "items.csv").write_text("\n".join(lines) + "\n")
    (folder / "i_id_mapping.csv").write_text(
        "item_id\titemID\n" + "".join(f"{101 + i}\t{i}\n" for i in range(6)))
    (raw / "recipe.yaml").write_text(
        "name: tiny\nraw_dir: .\ninteractions: {path: none.csv}\n"
        "items: {path: items.csv, id_col: id, title_col: title}\n"
        "images: {dir: img, pattern: '{id}.png'}\n"
        "modalities:\n  text: {encoder: text, template: '{title}. {plot}'}\n")
    return folder


@pytest.mark.parametrize("mode", ["finetuned", "end2end"])
def test_cli_trains_with_the_dual_encoder_from_raw_items(tmp_path, capsys, mode):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("sentence_transformers")
    from lirdrec.cli.main import main

    data = _raw_dataset(tmp_path)
    out = tmp_path / "run"
    args = ["-q", "train", "--model", "vbpr", "--data", str(data), "--out", str(out),
            "--epochs", "2", "--set", "encoder=dual", "--set", f"encoder_mode={mode}",
            "--set", "encoder_dim=8", "--set", "finetune_epochs=2", "--set", "ks=2,5",
            "--set", "valid_metric=Recall@5", "--set", "vl_loss_weight=0.1",
            "--set", f"encoder_cache={tmp_path / 'cache'}"]
    with pytest.warns(DataWarning, match="1 of 6 image"):
        assert main(args) == 0
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["encoder"] == "dual" and saved["encoder_mode"] == mode
    assert (out / "encoder_top.pt").is_file() == (mode == "finetuned")
    capsys.readouterr()
    assert main(["-q", "evaluate", str(out)]) == 0  # rebuilds the encoder features, reads back
    assert "| vbpr  | test  |" in capsys.readouterr().out
