"""Gradient checkpointing (diffusers' `unet.enable_gradient_checkpointing()`, what training's
`train.gradient_checkpointing` turns on) recomputes the UNet's transformer blocks during
backward, after the forward pass has cleared the multi-view context: the 3D self-attention must
still attend across the same views (the view count travels in the UNet's
cross_attention_kwargs), so the gradients equal those without checkpointing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3dface.backend.mvdiff import MultiViewDiffusion, MVDiffusionConfig, ViewCameras
from gen3dface.backend.mvdiff.unet_hooks import MultiViewSelfAttnProcessor
from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _model() -> MultiViewDiffusion:
    torch.manual_seed(3)
    m = MultiViewDiffusion(MVDiffusionConfig.tiny()).train()
    # move the zero-initialised output layers off zero (as after some training), so the
    # camera, depth-attention and geometry paths all carry gradient
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for lin in [m.camera_encoder.to_unet] + [a.to_out for a in m.depth_attention.values()]:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.05)
        out = m.geometry_encoder.out
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 0.05)
    return m


def _loss(model: MultiViewDiffusion, n_targets: int = 3) -> torch.Tensor:
    import trimesh

    k = intrinsics_from_fov(16, 16, 25.0)
    K = torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float32)
    V = n_targets + 1
    w2c = torch.tensor(np.stack([np.asarray(orbit_w2c_in_head(360.0 * i / V, 5.0, 0.9))
                                 for i in range(V)]), dtype=torch.float32)[None]
    cams = ViewCameras(w2c, K.expand(1, V, 4).clone(), w2c[:, 0],
                       torch.tensor([[True] + [False] * n_targets]))
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.09)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32)[None]
    faces = torch.tensor(mesh.faces, dtype=torch.long)
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cond = model.condition(img, verts, faces)
    x = torch.randn(1, V, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    pred = model(x, torch.tensor([400]), cond, cams)
    target = torch.randn(pred.shape, generator=torch.Generator().manual_seed(7))
    return (pred - target).square().mean()


def _grads(checkpointing: bool):
    model = _model()
    if checkpointing:
        model.unet.enable_gradient_checkpointing()
    views_seen: list[int] = []
    procs = [p for p in model.unet.attn_processors.values()
             if isinstance(p, MultiViewSelfAttnProcessor)]
    assert procs
    original = MultiViewSelfAttnProcessor.__call__

    def counting(self, attn, hidden_states, *args, num_views=None, **kw):
        if self in procs:
            views_seen.append(num_views)
        return original(self, attn, hidden_states, *args, num_views=num_views, **kw)

    MultiViewSelfAttnProcessor.__call__ = counting
    try:
        loss = _loss(model)
        n_forward = len(views_seen)
        loss.backward()
    finally:
        MultiViewSelfAttnProcessor.__call__ = original
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return loss.detach(), grads, n_forward, views_seen


def test_checkpointed_backward_matches_the_plain_one():
    loss_a, a, fwd_a, seen_a = _grads(False)
    loss_b, b, fwd_b, seen_b = _grads(True)
    # checkpointing really happened: every self-attention ran again during backward ...
    assert len(seen_a) == fwd_a and len(seen_b) == 2 * fwd_b == 2 * fwd_a
    # ... and the recomputation attended across the same 4 views as the forward pass
    assert set(seen_b) == {4}
    assert torch.equal(loss_a, loss_b)
    assert a.keys() == b.keys() and len(a) > 100
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-5, atol=1e-7), name
    assert any(a[n].abs().sum() > 0 for n in a if "attn1" in n)
