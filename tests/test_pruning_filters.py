"""The paper's pruning on data where the right keep/drop set is known, with small deterministic
embedders (colour -> embedding), plus the transformers CLIP embedder on a tiny local model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gen3dface.backend.data.dataset import MultiViewDataConfig, MultiViewDataset
from gen3dface.backend.data.format import (DatasetWriter, PriorMesh, PruningManifest, ViewData,
                                           ViewIntrinsics, orbit_w2c, read_dataset)
from gen3dface.backend.pruning.identity import (IdentityFilterConfig, identity_filter,
                                                mean_pairwise_similarity)
from gen3dface.backend.pruning.janus import (JanusFilterConfig, apply_janus_threshold,
                                             janus_filter, janus_scores)

RED, GREEN, BLUE = (200, 30, 30), (30, 200, 30), (30, 30, 200)
PRIOR = PriorMesh(np.eye(3, dtype=np.float32) * 0.1, np.array([[0, 1, 2]], np.int32))


def _view(name, az, rgb, size=16):
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[2:14, 2:14, :3] = rgb
    rgba[2:14, 2:14, 3] = 255
    return ViewData(name, rgba, orbit_w2c(az, 0, 1.0),
                    ViewIntrinsics(size, size, 20.0, 20.0, size / 2, size / 2))


class ColourClip:
    """Image embedding = normalised mean colour of the foreground; "back of human head" is
    blue, "human front face" red: a CLIP stand-in whose answers are known."""
    logit_scale = 100.0

    def encode_images(self, images):
        out = []
        for im in images:
            fg = im[(im != 255).any(axis=2)]
            out.append(fg.mean(axis=0) if len(fg) else np.ones(3))
        return np.asarray(out, np.float32)

    def encode_texts(self, texts):
        return np.asarray([[0, 0, 1] if "back" in t else [1, 0, 0] for t in texts], np.float32)


class ColourFace:
    """Face embedding = the mean colour: views of one colour are 'the same person'."""

    def embed(self, images):
        return np.asarray([im.reshape(-1, 3).mean(axis=0) - 128 for im in images], np.float32)


def test_janus_drops_back_views_that_show_a_face(tmp_path):
    # ring of 12 views; back views (|az| >= 120) at -150 and 150 show a "face" (red)
    faces_on_back = {-150, 150}
    views = []
    for az in range(-180, 180, 30):
        back = abs(az) >= 120
        views.append(_view(f"az{az + 180:03d}", az, RED if (not back or az in faces_on_back)
                           else BLUE))
    with DatasetWriter(tmp_path / "ds") as w:
        w.add_identity("a", views, prior=PRIOR)
    index = read_dataset(tmp_path / "ds")
    scores = janus_scores(index, ColourClip())
    assert set(scores["a"]) == {"az000", "az030", "az060", "az300", "az330"}  # |az| >= 120
    m = janus_filter(index, ColourClip(), JanusFilterConfig(threshold=0.5))
    assert m.dropped_views == {"a": ["az030", "az330"]}
    # the threshold is applied to the stored scores: tau = 1 keeps everything
    assert apply_janus_threshold(scores, 1.0).dropped_views == {}
    # the loader never serves a dropped view
    m.save(tmp_path / "ds")
    ds = MultiViewDataset(MultiViewDataConfig(roots=[str(tmp_path / "ds")], image_size=8,
                                              n_target_views=10, prior_points=4))
    for e in range(5):
        ds.set_epoch(e)
        s = ds[0]
        assert not {"az030", "az330"} & (set(s["target_views"]) | {s["input_view"]})


def test_identity_filter_keeps_the_consistent_identities(tmp_path):
    rng = np.random.default_rng(0)
    consistent = {"c0": RED, "c1": GREEN, "c2": BLUE}
    with DatasetWriter(tmp_path / "ds") as w:
        for name, col in consistent.items():
            views = [_view(f"f{az + 60:03d}", az,
                           np.clip(np.array(col) + rng.integers(-10, 10, 3), 0, 255))
                     for az in (-60, -30, 0, 30, 60)]
            # back views of anything: the filter must ignore them (no face there)
            views += [_view(f"b{k}", 180 - 20 * k, rng.integers(0, 255, 3)) for k in range(3)]
            w.add_identity(name, views, prior=PRIOR)
        for name in ("x0", "x1"):           # the person changes from view to view
            cols = [RED, GREEN, BLUE, GREEN, RED]
            w.add_identity(name, [_view(f"f{k}", az, c) for k, (az, c) in
                                  enumerate(zip((-60, -30, 0, 30, 60), cols))], prior=PRIOR)
        w.add_identity("few", [_view("f0", 0, RED), _view("b0", 180, RED)], prior=PRIOR)
    index = read_dataset(tmp_path / "ds")
    m = identity_filter(index, ColourFace(), IdentityFilterConfig(top_k=3, keep_fraction=None))
    assert m.dropped_identities == ["few", "x0", "x1"]
    sims = m.details["identity"]["mean_pairwise_similarity"]
    assert min(sims["c0"], sims["c1"], sims["c2"]) > 0.95 > max(sims["x0"], sims["x1"])
    assert sims["few"] == -1.0
    m2 = identity_filter(index, ColourFace(), IdentityFilterConfig(keep_fraction=0.5))
    assert len(m2.dropped_identities) == 3           # ceil(0.5 * 6) = 3 kept
    merged = m.merge(PruningManifest(dropped_views={"c0": ["b0"]}))
    merged.save(tmp_path / "ds")
    doc = json.loads((tmp_path / "ds" / "pruning.json").read_text())
    assert doc["dropped_identities"] == ["few", "x0", "x1"]
    ds = MultiViewDataset(MultiViewDataConfig(roots=[str(tmp_path / "ds")], image_size=8,
                                              n_target_views=2, prior_points=4))
    assert sorted(ds[i]["identity"] for i in range(len(ds))) == ["c0", "c1", "c2"]


def test_mean_pairwise_similarity_by_hand():
    e = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    # pairs: (0,1)=0, (0,2)=1, (1,2)=0 -> mean 1/3
    assert mean_pairwise_similarity(e) == pytest.approx(1 / 3)


def _tiny_clip_folder(folder):
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor,
                              CLIPTokenizer)
    import torch
    torch.manual_seed(0)
    words = ["a", "photo", "of", "the", "back", "human", "head", "front", "face"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for wd in words:
        vocab[wd + "</w>"] = len(vocab)
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    cfg = CLIPConfig(text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      max_position_embeddings=32),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=8)
    CLIPModel(cfg).save_pretrained(folder)
    CLIPProcessor(CLIPImageProcessor(size={"shortest_edge": 32},
                                     crop_size={"height": 32, "width": 32}), tok
                  ).save_pretrained(folder)


def test_transformers_clip_embedder_loads_a_local_folder(tmp_path):
    from gen3dface.backend.pruning.embedders import TransformersClip, zero_shot_probabilities
    _tiny_clip_folder(tmp_path / "clip")
    emb = TransformersClip(str(tmp_path / "clip"), local_files_only=True)
    imgs = [np.full((40, 40, 3), c, np.uint8) for c in (0, 128, 255)]
    f = emb.encode_images(imgs)
    assert f.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    p = zero_shot_probabilities(emb, imgs, ["a photo of the back of human head",
                                            "a photo of the human front face"])
    assert p.shape == (3, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
