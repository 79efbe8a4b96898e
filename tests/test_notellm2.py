"""NoteLLM-2: reference fixtures (../shared/fixtures/notellm2_reference), hand computations,
gradient flow, save/load and bad input. Tiny randomly initialised LLM / Q-Former / vision configs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lirdrec.encoders.notellm2 import (
    IMG,
    IMG_EMB,
    Gate,
    ItemInputs,
    LateFusion,
    NoteLLM2,
    QFormerConnector,
    contrastive_loss,
    in_batch_loss,
    init_new_rows,
    micl_loss,
    pair_labels,
    pool_positions,
    splice_queries,
    tiny_llm,
)
from lirdrec.encoders.notellm2.llm import add_new_tokens, truncate_layers
from lirdrec.encoders.notellm2.pooling import gather_positions
from lirdrec.encoders.notellm2.prompts import SUFFIX, pad_batch, tokenize_prompts
from lirdrec.errors import CheckpointError, ConfigError, DataWarning

FIXTURE = Path("../shared/fixtures/notellm2_reference/vectors.json")
pytestmark = pytest.mark.filterwarnings("ignore::lirdrec.errors.DataWarning")


@pytest.fixture(scope="module")
def ref():
    if not FIXTURE.is_file():
        pytest.skip("reference fixture not available")
    return json.loads(FIXTURE.read_text())


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


def small_model(variant="notellm2", seed=0, **kw):
    tok, llm = tiny_llm(seed=seed)
    torch.manual_seed(seed)
    kw = {
        "vision_dim": 12,
        "num_query_tokens": 4,
        "qformer_layers": 1,
        "qformer_hidden_size": 16,
        "qformer_heads": 2,
        "qformer_intermediate_size": 32,
        **kw,
    }
    return NoteLLM2(llm, tok, variant=variant, **kw)


def small_items(n=6, seed=0, vision=True):
    rng = np.random.default_rng(seed)
    titles = [f"Item {i}" for i in range(n)]
    texts = [f"about thing number {i}, " * (1 + i % 3) for i in range(n)]
    v = rng.standard_normal((n, 5, 12)).astype(np.float16) if vision else None
    return ItemInputs(titles, texts, v)


# ---------------------------------------------------------------------------------- fixtures
def test_gate_matches_reference(ref):
    g = ref["gate"]
    gate = Gate(4).double()
    with torch.no_grad():
        gate.weight.weight.copy_(t64(g["W"]))
    h, v = t64(g["h"]), t64(g["v"])
    torch.testing.assert_close(gate.gate(h, v), t64(g["z"]), rtol=1e-9, atol=0)
    fused = gate(h, v)
    torch.testing.assert_close(fused, t64(g["fused"]), rtol=1e-9, atol=0)
    # the pre-Feb-2025 residual variant (+ h) is not what we compute
    legacy = t64(g["legacy_residual_fused(pre-68dd919)"])
    assert (fused - legacy).abs().max() > 0.1
    torch.testing.assert_close(fused + h, legacy, rtol=1e-9, atol=1e-12)


def test_gate_hand_computation():
    gate = Gate(1).double()
    with torch.no_grad():
        gate.weight.weight.copy_(torch.tensor([[0.5, -1.0]], dtype=torch.float64))
    h, v = torch.tensor([[2.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    z = 1 / (1 + math.exp(-(0.5 * 2.0 - 1.0 * 1.0)))  # sigma(0) = 0.5
    assert float(gate(h, v).detach()) == pytest.approx(z * 2.0 + (1 - z) * 1.0)  # = 1.5


def test_labels_match_reference(ref):
    assert pair_labels(6, 1).tolist() == ref["labels"]["local_bs6_world1"]
    assert pair_labels(4, 2).tolist() == ref["labels"]["local_bs4_world2"]


def test_loss_world1_matches_reference(ref):
    r = ref["loss_world1"]
    emb = t64(r["emb"]).requires_grad_(True)
    tau = torch.tensor(r["temperature"], dtype=torch.float64, requires_grad=True)
    loss = contrastive_loss(emb, tau)
    assert loss.item() == pytest.approx(r["loss"], rel=1e-9)
    loss.backward()
    assert float(tau.grad) == pytest.approx(r["grad_temperature"], rel=1e-9)
    torch.testing.assert_close(emb.grad, t64(r["grad_emb"]), rtol=1e-8, atol=1e-12)
    # the logits: one 2N x 2N matrix, diagonal minus 1e12 before the exp(tau) scale
    e = torch.nn.functional.normalize(t64(r["emb"]), dim=1)
    logits = (e @ e.T - torch.eye(6, dtype=torch.float64) * 1e12) * math.exp(r["temperature"])
    off = ~torch.eye(6, dtype=torch.bool)
    want = t64([[0.0 if x is None else x for x in row] for row in r["logits_offdiag_rows"]])
    torch.testing.assert_close(logits[off], want[off], rtol=1e-9, atol=1e-9)
    assert float(logits[0, 0]) == pytest.approx(r["logits_diag_value"], rel=1e-9)


def test_loss_world2_emulated_gather_matches_reference(ref):
    r = ref["loss_world2"]
    rows = [torch.nn.functional.normalize(t64(r[f"rank{k}_emb"]), dim=1) for k in (0, 1)]
    gathered = torch.cat(rows)  # rank-major, as all_gather
    tau = torch.tensor(r["temperature"], dtype=torch.float64)
    loss = in_batch_loss(gathered, tau, r["local_bs"])
    assert float(loss) == pytest.approx(r["loss"], rel=1e-9)
    assert pair_labels(r["local_bs"], 2).tolist() == r["labels"]


def test_loss_on_two_pairs_by_hand():
    # pairs (a1, b1), (a2, b2): rows [a1, a2, b1, b2]; labels [2, 3, 0, 1]
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    tau = torch.tensor(0.5, dtype=torch.float64)
    n = e / e.norm(dim=1, keepdim=True)
    s = math.exp(0.5)
    total = 0.0
    for i, partner in enumerate([2, 3, 0, 1]):
        others = [float(n[i] @ n[j]) * s for j in range(4) if j != i]  # diagonal masked
        total += -(float(n[i] @ n[partner]) * s - math.log(sum(math.exp(x) for x in others)))
    assert float(contrastive_loss(e, tau)) == pytest.approx(total / 4, rel=1e-12)


def test_micl_weighting_matches_reference(ref):
    r = ref["micl"]
    tau = torch.tensor(r["temperature"], dtype=torch.float64)
    mm, img = t64(r["mm_emb"]), t64(r["img_emb"])
    assert float(contrastive_loss(mm, tau)) == pytest.approx(r["m_loss"], rel=1e-9)
    assert float(contrastive_loss(img, tau)) == pytest.approx(r["v_loss"], rel=1e-9)
    assert float(micl_loss(mm, img, tau, 9, 1)) == pytest.approx(r["loss_tw9_vw1"], rel=1e-9)
    assert float(micl_loss(mm, img, tau, 1, 1)) == pytest.approx(r["loss_tw1_vw1"], rel=1e-9)
    # normalised by the weights' sum: (9 m + v) / 10
    assert r["loss_tw9_vw1"] == pytest.approx((9 * r["m_loss"] + r["v_loss"]) / 10, rel=1e-12)


def test_head_matches_reference(ref):
    r = ref["head"]
    fusion = LateFusion(6, 8).double()
    head = torch.nn.Linear(8, 4, bias=False).double()
    with torch.no_grad():
        fusion.project.weight.copy_(t64(r["W_late"]))
        fusion.gate.weight.weight.copy_(t64(r["W_gate"]))
        head.weight.copy_(t64(r["W_lin"]))
    tau = torch.tensor(r["temperature"], dtype=torch.float64, requires_grad=True)
    v = fusion.project(t64(r["clip_cls"]))
    e_mm = head(fusion.fuse(t64(r["h_mm"]), v))
    e_img = head(fusion.fuse(t64(r["h_img"]), v))
    torch.testing.assert_close(e_mm, t64(r["e_mm"]), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(e_img, t64(r["e_img"]), rtol=1e-9, atol=1e-12)
    loss = micl_loss(e_mm, e_img, tau, 9.0, 1.0)
    assert loss.item() == pytest.approx(r["loss"], rel=1e-9)
    loss.backward()
    assert float(tau.grad) == pytest.approx(r["grad_temperature"], rel=1e-8)
    assert float(fusion.gate.weight.weight.grad.norm()) == pytest.approx(
        r["grad_norm_W_gate"], rel=1e-8
    )
    assert float(fusion.project.weight.grad.norm()) == pytest.approx(
        r["grad_norm_W_late"], rel=1e-8
    )
    assert float(head.weight.grad.norm()) == pytest.approx(r["grad_norm_W_lin"], rel=1e-8)


@pytest.mark.parametrize(
    "block,layout,token",
    [("pool_llama", "replace", "image_token_id"), ("pool_qwen", "insert", "image_start_id")],
)
def test_splice_and_pool_match_reference(ref, block, layout, token):
    r = ref[block]
    ids = torch.tensor(r["input_ids"])
    mask = (ids != r["pad_id"]).long()
    spliced, smask = splice_queries(
        t64(r["token_embeds"]), mask, ids, t64(r["image_feats"]), r[token], layout
    )
    torch.testing.assert_close(spliced, t64(r["spliced"]), rtol=0, atol=0)
    q = r["num_query_tokens"]
    assert smask.sum(dim=1).tolist() == (mask.sum(dim=1) + q - int(layout == "replace")).tolist()
    pos_mm, pos_img = pool_positions(ids, r["pad_id"], q, r["image_emb_id"], layout)
    assert pos_mm.tolist() == r["pos_mm"] and pos_img.tolist() == r["pos_img"]
    hidden = t64(r["hidden"])
    torch.testing.assert_close(gather_positions(hidden, pos_mm), t64(r["h_mm"]), rtol=0, atol=0)
    torch.testing.assert_close(gather_positions(hidden, pos_img), t64(r["h_img"]), rtol=0, atol=0)


def test_pool_positions_on_a_hand_built_sequence():
    # [bos, x, <IMG>=9, y, <IMG_EMB>=8, z, quote, pad, pad]; Q = 4 replaces <IMG>: shift 3
    ids = torch.tensor([[1, 5, 9, 6, 8, 7, 4, 0, 0]])
    pos_mm, pos_img = pool_positions(ids, pad_id=0, num_query_tokens=4, image_emb_id=8)
    assert pos_mm.item() == 6 + 3  # the closing quote (index 6) moved by Q - 1
    assert pos_img.item() == 3 + 3  # the token before <IMG_EMB> (index 3), moved by Q - 1
    assert pool_positions(ids, pad_id=0)[0].item() == 6  # text only: no shift


def test_recall_matches_reference(ref):
    from lirdrec.evaluate.i2i import filter_pairs, i2i_recall, partner_ranks

    r = ref["recall"]
    ids = {n: i for i, n in enumerate(r["note_ids"])}
    ids["n99"] = len(ids)  # a pair partner without a vector
    emb = np.vstack([np.array(r["embeddings(l2-normalised)"]), np.zeros((1, 3))])
    embedded = np.arange(len(emb)) < 10
    pairs = np.array([[ids[a], ids[b]] for a, b in r["pairs"]])
    kept = filter_pairs(pairs, embedded)
    assert kept[:, 0].tolist() == [ids[n] for n in r["queries"]]
    ranks, pool = partner_ranks(emb, kept, embedded)
    assert pool.tolist() == [ids[n] for n in r["docs"]]
    assert [int(np.flatnonzero(pool == t)[0]) for t in kept[:, 1]] == r["gt_doc_index"]
    assert ranks.tolist() == r["ranks"]
    got = i2i_recall(emb, pairs, ks=(1, 2, 3, 5, 10, 100), embedded=embedded)
    for k in (1, 2, 3, 5, 10, 100):
        assert got[f"Recall@{k}"] == r["recall"][f"R@{k}"]


def test_i2i_recall_hand_example():
    from lirdrec.evaluate.i2i import i2i_recall

    # items 0..4 on a circle; pairs (0, 1) kept, (1, 2) dropped (1 used), (3, 4) kept
    ang = np.array([0.0, 0.1, 1.5, 3.0, 2.0])
    e = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    got = i2i_recall(e, np.array([[0, 1], [1, 2], [3, 4]]), ks=(1, 2))
    # pool = {1, 2, 4}; query 0: 1 is nearest (rank 0); query 3 (angle 3.0): 4 (2.0) nearest
    assert got == {"Recall@1": 1.0, "Recall@2": 1.0, "queries": 2}
    got = i2i_recall(e, np.array([[0, 4], [3, 1]]), ks=(1, 2, 3))
    # query 0 -> 4: pool {1, 2, 4}, order 1 (0.1), 2 (1.5), 4 (2.0): rank 2;
    # query 3 -> 1: order 4 (1.0 away), 2 (1.5), 1 (2.9): rank 2
    assert got == {"Recall@1": 0.0, "Recall@2": 0.0, "Recall@3": 1.0, "queries": 2}


def test_new_token_rows_match_reference(ref):
    r = ref["new_token_init"]
    orig = t64(r["original_rows"])
    w = torch.cat([orig, torch.zeros(1, 3, dtype=torch.float64)])
    init_new_rows(w, 5)  # first resize: [PAD]
    w = torch.cat([w, torch.zeros(3, 3, dtype=torch.float64)])
    w[6:] = orig.mean(dim=0)  # second resize averages the original rows only
    torch.testing.assert_close(w, t64(r["after_two_resizes"]), rtol=1e-12, atol=1e-15)
    w2 = torch.cat([orig, torch.zeros(4, 3, dtype=torch.float64)])
    init_new_rows(w2, 5)  # ours: one resize of four rows
    torch.testing.assert_close(w2, t64(r["after_two_resizes"]), rtol=1e-12, atol=1e-15)


def test_added_tokens_are_the_mean_of_the_old_rows():
    tok, llm = tiny_llm()
    old = llm.get_input_embeddings().weight.detach().clone()
    ids = add_new_tokens(tok, llm, [IMG, IMG_EMB], "[PAD]")
    w = llm.get_input_embeddings().weight.detach()
    assert w.shape[0] == old.shape[0] + 3 and sorted(ids.values()) == [98, 99, 100]
    torch.testing.assert_close(w[98:], old.mean(dim=0).expand(3, -1))
    torch.testing.assert_close(w[:98], old)


def test_connector_parameter_counts_match_reference(ref):
    r = ref["connector_param_counts_default"]
    with torch.device("meta"):  # 100M parameters, no memory
        conn = QFormerConnector(768, 4096)  # CLIP ViT-B/16 -> Llama-2-7B, Q = 16, 6 layers
        fusion = LateFusion(768, 4096)
        head = torch.nn.Linear(4096, 64, bias=False)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert conn.query_tokens.numel() == r["query_tokens"]
    assert count(conn.qformer) == r["qformer"]
    assert count(conn.projector) == r["mm_projector"]
    assert count(fusion.project) == r["mm_projector_latefusion"]
    assert count(fusion.gate) == r["gate"]
    assert count(head) == r["linear"]


# ---------------------------------------------------------------------------------- prompts
def test_suffix_survives_truncation_and_padding():
    tok, llm = tiny_llm()
    add_new_tokens(tok, llm, [IMG, IMG_EMB], "[PAD]")
    rows = tokenize_prompts(tok, ["x" * 50, "ab"], max_note_tokens=10)
    suffix = tok(SUFFIX, add_special_tokens=False)["input_ids"]
    assert rows[0] == tok("x" * 10, add_special_tokens=False)["input_ids"] + suffix
    assert rows[1][-len(suffix) :] == suffix
    ids, mask = pad_batch(rows, tok.pad_token_id)
    assert ids.shape == (2, 10 + len(suffix)) and int(mask[1].sum()) == 2 + len(suffix)
    with pytest.raises(ConfigError, match="exactly once"):
        tokenize_prompts(
            tok,
            ["long note " * 5 + IMG],
            max_note_tokens=8,
            required={tok.convert_tokens_to_ids(IMG): IMG},
        )


# ---------------------------------------------------------------------------------- model
@pytest.mark.parametrize("variant", ["text", "basic", "micl", "late_fusion", "notellm2"])
def test_every_variant_trains_a_step(variant):
    model = small_model(variant)
    items = small_items(vision=variant != "text")
    out = model(**model.batch(items, np.arange(4)))
    assert out["e_mm"].shape == (4, 64)
    assert (out["e_img"] is not None) == (variant in ("micl", "notellm2"))
    loss = model.loss(out)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.temperature.grad is not None


def test_gradients_reach_every_trainable_part_and_never_the_vision_tower():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from lirdrec.encoders.notellm2.vision import VisionTower

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
    tower = VisionTower(clip, image_size=32)
    assert tower.dim == 12 and all(not p.requires_grad for p in tower.parameters())
    model = small_model("notellm2", vision_tower=tower)
    items = small_items()
    batch = model.batch(items, np.arange(4))
    pixels = torch.randn(4, 3, 32, 32)
    out = model(batch["input_ids"], batch["attention_mask"], pixel_values=pixels)
    model.loss(out).backward()
    assert all(p.grad is None for p in tower.parameters())
    for name, part in (
        ("connector", model.connector),
        ("llm", model.llm),
        ("gate", model.fusion),
        ("head", model.head),
    ):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert float(model.llm.get_input_embeddings().weight.grad.abs().sum()) > 0
    # eval/train switches never put the frozen tower into train mode
    model.train()
    assert not tower.model.training


def test_save_load_gives_identical_vectors(tmp_path):
    model = small_model("notellm2")
    items = small_items()
    with torch.no_grad():  # move away from the initial state, so loading must restore it
        model.head.weight.mul_(1.5)
    before = model.encode(items, batch_size=4, show_progress=False)
    model.save(tmp_path / "m")
    loaded = NoteLLM2.load(tmp_path / "m")
    after = loaded.encode(items, batch_size=4, show_progress=False)
    np.testing.assert_array_equal(before, after)
    assert loaded.variant == "notellm2" and loaded.config == model.config
    assert not list(tmp_path.glob("m/*.pt"))  # safetensors + JSON only
    with pytest.raises(CheckpointError):
        NoteLLM2.load(tmp_path / "nowhere")


def test_encode_is_order_independent_and_modes_differ():
    model = small_model("notellm2")
    items = small_items()
    full = model.encode(items, batch_size=2, show_progress=False)
    solo = model.encode(
        ItemInputs(items.titles[3:4], items.texts[3:4], items.vision[3:4]), show_progress=False
    )
    np.testing.assert_allclose(full[3], solo[0], rtol=1e-4, atol=1e-5)
    img = model.encode(items, mode="image", show_progress=False)
    txt = model.encode(items, mode="text", show_progress=False)
    assert np.abs(img - full).max() > 1e-4 and np.abs(txt - full).max() > 1e-4


def test_lora_trains_only_adapters_of_the_llm(tmp_path):
    pytest.importorskip("peft")
    model = small_model("basic", lora_r=2)
    items = small_items()
    model.loss(model(**model.batch(items, np.arange(4)))).backward()
    llm_grads = {n for n, p in model.llm.named_parameters() if p.grad is not None}
    assert llm_grads and all("lora_" in n for n in llm_grads)
    before = model.encode(items, show_progress=False)
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(
        before, NoteLLM2.load(tmp_path / "m").encode(items, show_progress=False)
    )


def test_truncating_llm_layers():
    tok, llm = tiny_llm(num_layers=3)
    truncate_layers(llm, 1)
    assert len(llm.model.layers) == 1 and llm.config.num_hidden_layers == 1
    with pytest.raises(ConfigError, match=r"llm_num_layers must be in \[1, 1\]"):
        truncate_layers(llm, 2)


# ---------------------------------------------------------------------------------- bad input
def test_prompt_without_img_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs a prompt holding <IMG> exactly once"):
        small_model("basic", prompt='Item: {"title": "{title}"}')
    with pytest.raises(ConfigError, match="mICL needs a prompt holding <IMG_EMB>"):
        small_model("micl", prompt='Item: {"image": "<IMG>", "title": "{title}"}')
    with pytest.raises(ConfigError, match="must not hold <IMG>"):
        small_model("text", prompt='Item: {"image": "<IMG>"}')
    with pytest.raises(ConfigError, match="variant must be one of"):
        small_model("fancy")
    with pytest.raises(ConfigError, match="needs vision_dim"):
        small_model("basic", vision_dim=None)


def test_unknown_backbones_are_clear_errors(tmp_path):
    from lirdrec.encoders.notellm2 import load_llm
    from lirdrec.encoders.notellm2.vision import VisionTower

    with pytest.raises(ConfigError, match="unknown vision backend"):
        VisionTower(str(tmp_path / "no-such-vision-model"))
    with pytest.raises(ConfigError, match="cannot load LLM"):
        load_llm(str(tmp_path / "no-such-llm"), cache_dir=None)


def test_missing_images_and_texts_fall_back_with_a_warning(tmp_path):
    from PIL import Image

    from lirdrec.encoders.notellm2.vision import VisionTower

    for i, colour in ((0, (255, 0, 0)), (2, (0, 0, 255))):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.jpg")
    (tmp_path / "1.jpg").write_bytes(b"not an image")
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
        )
    )
    tower = VisionTower(clip, image_size=32)
    paths = [tmp_path / "0.jpg", tmp_path / "1.jpg", tmp_path / "2.jpg", None]
    with pytest.warns(DataWarning, match="2 of 4 image"):
        tokens, present = tower.encode(paths, cache=tmp_path / "cache", show_progress=False)
    assert present.tolist() == [True, False, True, False]
    mean = tokens[[0, 2]].astype(np.float32).mean(axis=0)
    np.testing.assert_allclose(tokens[1].astype(np.float32), mean, atol=2e-3)
    np.testing.assert_array_equal(tokens[1], tokens[3])
    with pytest.warns(DataWarning):  # the second call reads the cache
        again, _ = tower.encode(paths, cache=tmp_path / "cache", show_progress=False)
    np.testing.assert_array_equal(tokens, again)
    assert len(list((tmp_path / "cache").glob("notellm2-vision-*.npy"))) == 2  # tokens + mask
    with pytest.warns(DataWarning, match="neither title nor text"):
        ItemInputs(["a", ""], ["b", ""], None)
