"""backend/geometry.py: the one vertex-normal, Procrustes and bilinear implementation, checked
against the copies it replaced (kept here verbatim as references) and against trimesh."""
from __future__ import annotations

import numpy as np
import pytest

from gen3dface.backend import geometry as G


# ---------------------------------------------------------------- the removed copies, verbatim
def _normals_add_at(vertices, triangles):          # was texture/bake.py::vertex_normals
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, ln, out=np.zeros_like(n), where=ln > 0)


def _normals_face_major(vertices, faces):           # was render/mesh.py::vertex_normals
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    idx = f.ravel()
    n = np.stack([np.bincount(idx, np.repeat(fn[:, c], 3), minlength=len(v))
                  for c in range(3)], axis=1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(norm, 1e-20)


def _kabsch(src, dst):                              # was recon/register.py::_kabsch
    cs, cd = src.mean(0), dst.mean(0)
    H = (src - cs).T @ (dst - cd)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1, 1, np.sign(np.linalg.det(Vt.T @ U.T))])
    R = Vt.T @ D @ U.T
    return R, cd - R @ cs


def _bench_similarity_align(src, dst):              # was scripts/bench_fitting.py
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    c = np.trace(np.diag(s) @ d) / (a ** 2).sum(1).mean()
    return c * a @ r.T + md


def _register_bilinear(img, uv):                    # was recon/register.py::_Images.bilinear
    h, w = img.shape[:2]
    x = np.clip(uv[..., 0] - 0.5, 0, w - 1.001)
    y = np.clip(uv[..., 1] - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    flat = img.reshape(-1, 1)
    i = y0 * w + x0
    top = flat[i] * (1 - fx) + flat[i + 1] * fx
    bot = flat[i + w] * (1 - fx) + flat[i + w + 1] * fx
    return (top * (1 - fy) + bot * fy)[..., 0]


def _mesh_sample_texture(texture, uv):              # was render/mesh.py::sample_texture
    h, w = texture.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * w - 0.5
    y = (1.0 - np.mod(uv[:, 1], 1.0)) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    tex = texture.astype(np.float64) / 255.0

    def at(xx, yy):
        return tex[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]

    return ((at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy)
            + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy)


@pytest.fixture(scope="module")
def bumpy_sphere():
    trimesh = pytest.importorskip("trimesh")
    m = trimesh.creation.icosphere(3)
    rng = np.random.default_rng(0)
    v = m.vertices * rng.uniform(0.9, 1.1, (len(m.vertices), 1))
    return v, np.asarray(m.faces)


def test_vertex_normals_are_the_bakers_to_the_last_bit(bumpy_sphere):
    v, f = bumpy_sphere
    n = G.vertex_normals(v, f)
    assert np.array_equal(n, _normals_add_at(v, f))          # the GLB's normals: unchanged
    # the renderer's old copy summed in another order: same normals to rounding
    np.testing.assert_allclose(n, _normals_face_major(v, f), rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-12)


def test_vertex_normals_match_trimesh_area_weighted(bumpy_sphere):
    import trimesh

    v, f = bumpy_sphere
    m = trimesh.Trimesh(v, f, process=False)
    # trimesh sums the face normals it is given: give them the faces' areas as lengths
    ref = trimesh.geometry.mean_vertex_normals(len(v), f,
                                               m.face_normals * m.area_faces[:, None])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(G.vertex_normals(v, f), ref, atol=1e-12)


def test_vertex_normals_unused_vertex_is_zero():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]], float)
    n = G.vertex_normals(v, np.array([[0, 1, 2]]))
    np.testing.assert_array_equal(n[:3], [[0, 0, 1]] * 3)
    np.testing.assert_array_equal(n[3], 0.0)
    assert G.vertex_normals(v, np.zeros((0, 3), int)).shape == (4, 3)


def test_procrustes_recovers_transform_and_matches_old_copies():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(60, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    dst = 1.7 * src @ q.T + [0.1, -0.2, 0.3]
    s, R, t = G.similarity_transform(src, dst)
    assert s == pytest.approx(1.7, abs=1e-12)
    np.testing.assert_allclose(R, q, atol=1e-12)
    np.testing.assert_allclose(t, [0.1, -0.2, 0.3], atol=1e-12)
    noisy = dst + rng.normal(scale=0.01, size=dst.shape)
    R1, t1 = G.rigid_transform(src, noisy)
    R0, t0 = _kabsch(src, noisy)
    assert np.array_equal(R1, R0) and np.array_equal(t1, t0)
    np.testing.assert_allclose(G.similarity_align(src, noisy),
                               _bench_similarity_align(src, noisy), atol=1e-12)
    # a reflection is never returned
    _, Rm, _ = G.similarity_transform(src, src * [-1, 1, 1])
    assert np.linalg.det(Rm) == pytest.approx(1.0)


def test_bilinear_agrees_with_old_copies():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(31, 40))
    inside = rng.uniform([0.5, 0.5], [40 - 0.5 - 0.001, 31 - 0.5 - 0.001], (5000, 2))
    got = G.bilinear(img, inside[:, 0], inside[:, 1])
    assert np.array_equal(got, _register_bilinear(img, inside))
    # at pixel centres it is the pixel; beyond the edge it is the edge pixel
    j, i = 7, 11
    assert G.bilinear(img, np.array([i + 0.5]), np.array([j + 0.5]))[0] == img[j, i]
    assert G.bilinear(img, np.array([-3.0]), np.array([99.0]))[0] == img[30, 0]
    tex = rng.integers(0, 256, (33, 47, 3), np.uint8)
    uv = rng.uniform(-0.5, 1.5, (5000, 2))
    from gen3dface.backend.render.mesh import sample_texture

    np.testing.assert_allclose(sample_texture(tex, uv), _mesh_sample_texture(tex, uv),
                               rtol=0, atol=1e-15)


def test_bilinear_agrees_with_the_bakers_opencv_sampling():
    pytest.importorskip("cv2")
    from gen3dface.backend.texture.sampling import bilinear as cv_bilinear

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (50, 60, 3), np.uint8)
    x, y = rng.uniform(-2, 62, 4000), rng.uniform(-2, 52, 4000)
    # OpenCV rounds the position to 1/32 pixel: at most half a step on each axis, so at most
    # 2 * 255 / 64 grey levels apart on this noise image
    got, ref = cv_bilinear(img, x, y), G.bilinear(img, x, y)
    np.testing.assert_allclose(got, ref, atol=255 / 32 + 1e-3)
    assert np.median(np.abs(got - ref)) < 1.0
