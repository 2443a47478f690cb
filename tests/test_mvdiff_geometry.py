"""Geometry of the multi-view diffusion model: projection, volume warping, frustum sampling,
voxelisation and the submanifold sparse convolution (torch path vs spconv)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gen3dface.backend.mvdiff.geometry3d import (frustum_points, near_far, project,
                                                 sample_frustum, unproject_to_volume,
                                                 volume_vertices)
from gen3dface.backend.mvdiff.geometry_prior import sample_surface, voxelise
from gen3dface.backend.mvdiff.sparse_conv import SubMConv3d, spconv_available, to_dense
from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

IMG = 64


def _cameras(angles):
    w2c = np.stack([np.asarray(orbit_w2c_in_head(az, el, 0.8, target=(0.01, 0.02, 0.0)))
                    for az, el in angles])
    k = intrinsics_from_fov(IMG, IMG, 30.0)
    K = np.tile([k.fx, k.fy, k.cx, k.cy], (len(angles), 1))
    return (torch.tensor(w2c, dtype=torch.float32)[None], torch.tensor(K, dtype=torch.float32)[None])


def _numpy_project(w2c, K, p):
    """Independent reference: pinhole projection with numpy, pixel-corner origin."""
    c = w2c[:3, :3] @ p + w2c[:3, 3]
    return np.array([K[0] * c[0] / c[2] + K[2], K[1] * c[1] / c[2] + K[3]]), c[2]


def test_project_matches_reference():
    w2c, K = _cameras([(0, 0), (70, 20), (-130, -30)])
    p = np.array([0.03, -0.05, 0.07])
    uv, z = project(torch.tensor(p, dtype=torch.float32)[None, None], w2c, K)
    for v in range(3):
        ref, zr = _numpy_project(w2c[0, v].numpy(), K[0, v].numpy(), p)
        assert np.allclose(uv[0, v, 0].numpy(), ref, atol=1e-3)
        assert abs(float(z[0, v, 0]) - zr) < 1e-5


def test_front_camera_sees_volume_centre_at_principal_point():
    w2c, K = _cameras([(0, 0)])
    uv, _ = project(torch.tensor([[[0.01, 0.02, 0.0]]]), w2c, K)
    assert torch.allclose(uv[0, 0, 0], torch.tensor([IMG / 2, IMG / 2]), atol=1e-4)


def test_volume_warping_puts_a_known_point_feature_at_its_pixel():
    """Each view's feature map holds its own pixel coordinates (u, v); after warping into the
    grid, the vertex at a known 3D point must hold the pixel that point projects to."""
    angles = [(0, 0), (60, 10), (-45, -20), (170, 30)]
    w2c, K = _cameras(angles)
    h = w = 16
    u = (torch.arange(w) + 0.5) * IMG / w
    v = (torch.arange(h) + 0.5) * IMG / h
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    center = torch.tensor([[0.01, 0.02, 0.0]])
    half, res = 0.15, 9
    verts = volume_vertices(center, half, res)[0]
    iz, iy, ix = 5, 3, 6                       # a vertex away from the centre
    p = verts[iz, iy, ix].numpy().astype(np.float64)
    assert np.allclose(p, center[0].numpy() + half * (-1 + 2 * np.array([ix, iy, iz]) / (res - 1)))
    for view in range(len(angles)):
        feats = torch.stack([uu, vv])[None, None]             # (1, 1, 2, h, w)
        mean, var = unproject_to_volume(feats, w2c[:, view:view + 1], K[:, view:view + 1], IMG,
                                        center, half, res)
        ref, _ = _numpy_project(w2c[0, view].numpy(), K[0, view].numpy(), p)
        got = mean[0, :, iz, iy, ix].numpy()
        assert np.allclose(got, ref, atol=1e-2), (view, got, ref)
        assert float(var.abs().max()) == 0.0                   # one view: no variance


def test_unprojection_aggregates_mean_and_variance_over_seeing_views():
    w2c, K = _cameras([(0, 0), (30, 0)])
    feats = torch.ones(1, 2, 1, 8, 8)
    feats[0, 1] = 3.0
    mean, var = unproject_to_volume(feats, w2c, K, IMG, torch.tensor([[0.01, 0.02, 0.0]]), 0.05, 5)
    assert torch.allclose(mean, torch.full_like(mean, 2.0))
    assert torch.allclose(var, torch.full_like(var, 1.0))


def test_frustum_sampling_returns_the_volume_at_each_rays_points():
    """A volume holding its own head-frame coordinates, sampled on a frustum, must return the
    3D point of every (depth, pixel) sample; and that point must project back to the pixel."""
    w2c, K = _cameras([(20, 10), (-100, -15)])
    center = torch.tensor([[0.01, 0.02, 0.0]])
    half, res, D, h, w = 0.2, 17, 6, 8, 8
    vol = volume_vertices(center, half, res).permute(0, 4, 1, 2, 3)     # (1, 3, R, R, R)
    fr = sample_frustum(vol, w2c, K, IMG, h, w, D, center, half)         # (1, V, 3, D, h, w)
    near, far = near_far(w2c, center, half)
    pts = frustum_points(w2c, K, IMG, h, w, D, near, far)               # (1, V, D, h, w, 3)
    inside = ((pts - center[:, None, None, None, None]).abs() <= half - 1e-4).all(-1)
    got = fr.permute(0, 1, 3, 4, 5, 2)
    assert inside.sum() > 50
    assert torch.allclose(got[inside], pts[inside], atol=1e-4)
    assert float(got[~inside.expand_as(inside)].abs().max()) <= half * 2   # zero-padded outside
    # the sample at pixel (i, j) lies on that pixel's ray
    i, j = 2, 5
    for v in range(2):
        for d in range(D):
            ref, z = _numpy_project(w2c[0, v].numpy(), K[0, v].numpy(),
                                    pts[0, v, d, i, j].numpy().astype(np.float64))
            assert np.allclose(ref, [(j + 0.5) * IMG / w, (i + 0.5) * IMG / h], atol=1e-3)
            expected_z = near[0, v] + (far[0, v] - near[0, v]) * d / (D - 1)
            assert abs(z - float(expected_z)) < 1e-4


def test_voxelise_puts_points_at_the_nearest_vertex():
    center = torch.zeros(1, 3)
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.1, -0.1, 0.05], [0.5, 0.0, 0.0]]])
    nrm = torch.tensor([[[0.0, 0.0, 1.0]] * 3])
    coords, feats = voxelise(pts, nrm, center, 0.2, 9)               # spacing 0.05
    got = {tuple(c.tolist()) for c in coords}
    assert got == {(0, 4, 4, 4), (0, 5, 2, 6)}                        # [b, z, y, x]; 3rd outside
    assert torch.allclose(feats[:, 0], torch.ones(2))
    assert torch.allclose(feats[:, 1:4], torch.tensor([[0.0, 0.0, 1.0]] * 2))


def test_surface_samples_lie_on_the_mesh_and_are_seeded():
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    f = torch.tensor([[0, 1, 2]])
    p1, n1 = sample_surface(v, f, 500, seed=3)
    p2, _ = sample_surface(v, f, 500, seed=3)
    assert torch.equal(p1, p2)
    assert (p1[..., 2].abs() < 1e-6).all() and (p1[..., :2] >= -1e-6).all()
    assert (p1[..., 0] + p1[..., 1] <= 1 + 1e-5).all()
    assert torch.allclose(n1, torch.tensor([0.0, 0.0, 1.0]).expand_as(n1))


def _sparse_input(seed=0, spatial=7, batch=2):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, spatial, (80, 3), generator=g)
    c = torch.unique(c, dim=0)
    coords = torch.cat([torch.cat([torch.full((len(c), 1), b), c], 1) for b in range(batch)]).int()
    feats = torch.randn(len(coords), 3, generator=g)
    return coords, feats


def test_submanifold_conv_equals_dense_conv_at_active_sites():
    torch.manual_seed(0)
    coords, feats = _sparse_input()
    conv = SubMConv3d(3, 4, 3, backend="torch")
    torch.nn.init.normal_(conv.bias)
    out = conv(coords, feats, (7, 7, 7), 2)
    dense = to_dense(coords, feats, (7, 7, 7), 2)
    ref = torch.nn.functional.conv3d(dense, conv.weight.permute(0, 4, 1, 2, 3), conv.bias, padding=1)
    c = coords.long()
    assert torch.allclose(out, ref[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]], atol=1e-5)


@pytest.mark.skipif(not spconv_available(), reason="spconv not installed")
def test_torch_path_matches_spconv():
    """Same parameters, same semantics: spconv's CPU forward equals the torch path.

    spconv 2.3's CPU forward is itself sporadically wrong on a module's first call (one of
    152 output rows off by ~0.2, in about 1 of 10 fresh processes; later calls are right),
    which is one reason the product runs spconv only on CUDA ("auto"). So the torch path must
    equal at least two of three spconv calls, and the other may be off only in a few rows."""
    torch.manual_seed(1)
    coords, feats = _sparse_input(seed=1)
    conv = SubMConv3d(3, 5, 3, backend="torch")
    torch.nn.init.normal_(conv.bias)
    a = conv(coords, feats, (7, 7, 7), 2)
    conv.backend = "spconv"
    with torch.no_grad():
        runs = [conv(coords, feats, (7, 7, 7), 2) for _ in range(3)]
    same = [bool(torch.allclose(a, b, atol=1e-5)) for b in runs]
    assert sum(same) >= 2, same
    for b in runs:
        assert int(((a - b).abs().max(1).values > 1e-5).sum()) <= 2


def test_submanifold_conv_has_gradients_on_cpu():
    coords, feats = _sparse_input()
    feats.requires_grad_(True)
    conv = SubMConv3d(3, 4, 3, backend="auto")
    conv(coords, feats, (7, 7, 7), 2).square().sum().backward()
    assert feats.grad is not None and conv.weight.grad.abs().sum() > 0
