"""The multi-view diffusion model on tiny seeded random-weight configs (CPU, seconds):
joint sampling, determinism, permutation equivariance, the zero-initialised geometry branch,
gradients, checkpoints and loading a base UNet."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from gen3dface.backend.mvdiff import (MultiViewDiffusion, MVDiffusionConfig, SamplerConfig,
                                      ViewCameras, sample_views)
from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _head_mesh():
    import trimesh
    m = trimesh.creation.icosphere(subdivisions=2, radius=0.09)
    v = torch.tensor(m.vertices * [0.85, 1.1, 1.0], dtype=torch.float32)[None]
    return v, torch.tensor(m.faces, dtype=torch.long)


def _cams(n, res, input_az=10.0, start=0.0):
    k = intrinsics_from_fov(res, res, 25.0)
    K = torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float32)
    az = [start + 360.0 * i / n for i in range(n)]
    w2c = torch.tensor(np.stack([np.asarray(orbit_w2c_in_head(a, 5.0 * (i % 3 - 1), 0.9))
                                 for i, a in enumerate(az)]), dtype=torch.float32)[None]
    iw2c = torch.tensor(np.asarray(orbit_w2c_in_head(input_az, 3.0, 0.9)), dtype=torch.float32)[None]
    return w2c, K.expand(1, n, 4).clone(), iw2c, K[None].clone()


def _model(seed=0, **cfg_changes):
    torch.manual_seed(seed)
    cfg = MVDiffusionConfig.tiny()
    for part, changes in cfg_changes.items():
        for k, v in changes.items():
            setattr(getattr(cfg, part), k, v)
    cfg.validate()
    return MultiViewDiffusion(cfg).eval()


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def cond(model):
    g = torch.Generator().manual_seed(5)
    img = torch.rand(1, 3, 16, 16, generator=g)
    v, f = _head_mesh()
    with torch.no_grad():
        return model.condition(img, v, f)


def _perturb_zero_layers(model, scale=0.05, seed=1):
    """What training does to the zero-initialised output layers: make them non-zero."""
    g = torch.Generator().manual_seed(seed)
    layers = [model.camera_encoder.to_unet] + [m.to_out for m in model.depth_attention.values()]
    with torch.no_grad():
        for lin in layers:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * scale)
        if model.geometry_encoder is not None:
            out = model.geometry_encoder.out
            out.weight.copy_(torch.randn(out.weight.shape, generator=g) * scale)
            out.bias.copy_(torch.randn(out.bias.shape, generator=g) * scale)


@pytest.mark.parametrize("n_views", [1, 4, 16])
def test_joint_sampling_output_shapes(model, cond, n_views):
    w2c, K, iw2c, iK = _cams(n_views, 16)
    lat = sample_views(model, cond, w2c, K, iw2c, iK, SamplerConfig(steps=2), seed=0)
    assert lat.shape == (1, n_views, 4, 8, 8)
    assert torch.isfinite(lat).all()
    rgb = model.decode_latents(lat[0])
    assert rgb.shape == (n_views, 3, 16, 16)


def test_forward_batches_samples_independently(model, cond):
    w2c, K, iw2c, iK = _cams(3, 16)
    cams = ViewCameras(torch.cat([iw2c[:, None], w2c], 1), torch.cat([iK[:, None], K], 1), iw2c,
                       torch.tensor([[True, False, False, False]]))
    x = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        one = model(x, t, cond, cams)
        two = model(torch.cat([x, x.flip(1)]), torch.tensor([500, 500]),
                    type(cond).cat(cond, cond), ViewCameras.cat(cams, cams))
    assert torch.allclose(two[0], one[0], atol=1e-5)


@pytest.mark.parametrize("sampler,steps", [("ddim", 3), ("dpmsolver++", 3)])
def test_seed_determinism(model, cond, sampler, steps):
    w2c, K, iw2c, iK = _cams(4, 16)
    cfg = SamplerConfig(sampler=sampler, steps=steps, guidance=2.5)
    a = sample_views(model, cond, w2c, K, iw2c, iK, cfg, seed=11)
    b = sample_views(model, cond, w2c, K, iw2c, iK, cfg, seed=11)
    c = sample_views(model, cond, w2c, K, iw2c, iK, cfg, seed=12)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_permuting_target_cameras_permutes_the_views(model, cond):
    _perturbed = copy.deepcopy(model)
    _perturb_zero_layers(_perturbed)         # camera and depth paths live, not no-ops
    w2c, K, iw2c, iK = _cams(5, 16, start=17.0)
    noise = torch.randn(1, 5, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    perm = torch.tensor([3, 0, 4, 1, 2])
    cfg = SamplerConfig(steps=2, guidance=2.0)
    a = sample_views(_perturbed, cond, w2c, K, iw2c, iK, cfg, seed=4, noise=noise)
    b = sample_views(_perturbed, cond, w2c[:, perm], K[:, perm], iw2c, iK, cfg, seed=4,
                     noise=noise[:, perm])
    assert torch.allclose(b, a[:, perm], atol=1e-4)
    # and the views really differ from each other (the test would pass trivially otherwise)
    assert (a[:, 0] - a[:, 1]).abs().max() > 1e-2


def test_views_interact_through_3d_attention_and_the_volume(model, cond):
    """Changing one target view's noise changes the other views' predictions."""
    w2c, K, iw2c, iK = _cams(3, 16)
    noise = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    other = noise.clone()
    other[:, 2] = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(9))
    cfg = SamplerConfig(steps=1, guidance=1.0)
    a = sample_views(model, cond, w2c, K, iw2c, iK, cfg, noise=noise)
    b = sample_views(model, cond, w2c, K, iw2c, iK, cfg, noise=other)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-5


def test_zero_initialised_geometry_branch_leaves_the_base_output_unchanged(model, cond):
    w2c, K, iw2c, iK = _cams(4, 16)
    noise = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg = SamplerConfig(steps=2)
    assert cond.geometry is not None and float(cond.geometry.abs().max()) == 0.0
    without = copy.copy(cond)
    without.geometry = None
    a = sample_views(model, cond, w2c, K, iw2c, iK, cfg, noise=noise)
    b = sample_views(model, without, w2c, K, iw2c, iK, cfg, noise=noise)
    assert torch.equal(a, b)
    # a trained (non-zero) geometry branch changes the output
    trained = copy.deepcopy(model)
    _perturb_zero_layers(trained)
    v, f = _head_mesh()
    with torch.no_grad():
        geo = trained.encode_geometry(v, f, cond.center)
    assert float(geo.abs().max()) > 0
    with_geo = copy.copy(cond)
    with_geo.geometry = geo
    c = sample_views(trained, with_geo, w2c, K, iw2c, iK, cfg, noise=noise)
    d = sample_views(trained, without, w2c, K, iw2c, iK, cfg, noise=noise)
    assert (c - d).abs().max() > 1e-4


def _loss(model, n_views=3):
    w2c, K, iw2c, iK = _cams(n_views, 16)
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    v, f = _head_mesh()
    cond = model.condition(img, v, f)
    V = n_views + 1
    cams = ViewCameras(torch.cat([iw2c[:, None], w2c], 1), torch.cat([iK[:, None], K], 1), iw2c,
                       torch.tensor([[True] + [False] * n_views]))
    x = torch.randn(1, V, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    pred = model(x, torch.tensor([400]), cond, cams)
    return (pred - torch.randn(pred.shape, generator=torch.Generator().manual_seed(7))).square().mean()


def test_gradients_reach_every_trainable_part():
    m = _model(seed=2).train()
    _loss(m).backward()
    # from the initial state the zero-initialised layers that feed the UNet receive gradients
    # (the volume side, geometry included, is reached through depth attention once its output
    # layer has moved off zero, after the first optimiser step; as in SyncDreamer)
    for lin in [m.camera_encoder.to_unet] + [a.to_out for a in m.depth_attention.values()]:
        assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    # once they are non-zero, every trainable parameter gets a gradient
    m.zero_grad(set_to_none=True)
    _perturb_zero_layers(m)
    _loss(m).backward()
    # Exception by construction: cross-attention to ONE token (the CLIP image embedding, as in
    # Zero123/SyncDreamer) has softmax == 1 whatever q and k are, so attn2.to_q / to_k and the
    # norm2 feeding the query get exactly zero gradient. Everything else must get one.
    single_token = ("attn2.to_q.weight", "attn2.to_k.weight", "norm2.weight", "norm2.bias")
    missing = [f"{part}.{n}" for part, mod in m.trainable_modules().items()
               for n, p in mod.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)
               and not (part == "unet" and n.endswith(single_token))]
    assert not missing, missing
    assert all(p.grad is None for p in m.vae.parameters())
    assert all(p.grad is None for p in m.image_encoder.parameters())


def test_save_load_round_trip_is_exact(tmp_path, cond):
    m = _model(seed=4)
    _perturb_zero_layers(m)
    m.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "unet" / "config.json").is_file()
    loaded = MultiViewDiffusion.from_pretrained(tmp_path / "ckpt")
    sa, sb = m.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert loaded.config.to_dict() == m.config.to_dict()
    w2c, K, iw2c, iK = _cams(3, 16)
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    v, f = _head_mesh()
    outs = []
    for mm in (m, loaded):
        with torch.no_grad():
            c = mm.condition(img, v, f)
        outs.append(sample_views(mm, c, w2c, K, iw2c, iK, SamplerConfig(steps=2), seed=3))
    assert torch.equal(outs[0], outs[1])


def test_from_pretrained_refuses_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        MultiViewDiffusion.from_pretrained(tmp_path)


def test_base_unet_saved_locally_loads_into_the_backbone(tmp_path):
    """A Stable-Diffusion-layout folder (unet/, vae/, scheduler/) + a CLIP folder: the model
    takes their weights, widens conv_in with zeros, and starts out computing exactly what the
    base UNet computes for a single view."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = MVDiffusionConfig.tiny()
    torch.manual_seed(123)
    base_unet = UNet2DConditionModel.from_config(cfg.backbone.unet)
    base_vae = AutoencoderKL.from_config(cfg.backbone.vae)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg.backbone.image_encoder))
    base_unet.save_pretrained(tmp_path / "sd" / "unet")
    base_vae.save_pretrained(tmp_path / "sd" / "vae")
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  prediction_type="epsilon").save_pretrained(tmp_path / "sd" / "scheduler")
    clip.save_pretrained(tmp_path / "clip")

    cfg.attention.include_input_view = False
    torch.manual_seed(0)
    m = MultiViewDiffusion.from_base(cfg, tmp_path / "sd", tmp_path / "clip").eval()
    assert m.unet.config.in_channels == 8
    w = m.unet.conv_in.weight
    assert torch.equal(w[:, :4], base_unet.conv_in.weight) and float(w[:, 4:].abs().max()) == 0
    base_sd = base_unet.state_dict()
    for k, v in m.unet.state_dict().items():
        if not k.startswith("conv_in."):
            assert torch.equal(v, base_sd[k]), k
    assert torch.equal(m.vae.decoder.conv_out.weight, base_vae.decoder.conv_out.weight)
    assert m.config.backbone.scheduler["beta_schedule"] == "scaled_linear"

    # behaves like the base: one view, camera/depth/input-latent paths still at zero
    w2c, K, iw2c, _ = _cams(1, 16)
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    v, f = _head_mesh()
    x = torch.randn(1, 1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([300])
    with torch.no_grad():
        c = m.condition(img, v, f)
        ours = m(x, t, c, ViewCameras(w2c, K, iw2c, torch.zeros(1, 1, dtype=torch.bool)))
        ref = base_unet(x[:, 0], t, encoder_hidden_states=c.image_embeds).sample
    assert torch.allclose(ours[:, 0], ref, atol=1e-5)


def test_config_json_round_trip_and_validation(tmp_path):
    cfg = MVDiffusionConfig.sd15()
    cfg.save(tmp_path)
    again = MVDiffusionConfig.load(tmp_path)
    assert again.to_dict() == cfg.to_dict()
    assert again.frustum.channels == (64, 128, 256, 256)
    bad = MVDiffusionConfig.tiny()
    bad.frustum.channels = (8,)                  # one level, but the tiny UNet has two
    with pytest.raises(ValueError, match="one entry per UNet level"):
        bad.validate()


@pytest.mark.parametrize("preset,expected", [("sd15", 859_520_964), ("sd21", 865_910_724)])
def test_full_presets_have_stable_diffusion_dimensions(preset, expected):
    """The full configs build UNets with exactly Stable Diffusion 1.5 / 2.1's parameter counts
    (built on the meta device: no memory, no weights)."""
    from diffusers import UNet2DConditionModel

    cfg = getattr(MVDiffusionConfig, preset)()
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg.backbone.unet)
    assert sum(p.numel() for p in unet.parameters()) == expected
    assert cfg.backbone.latent_size == 32 and cfg.volume.resolution == 32
