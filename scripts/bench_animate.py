"""How long a Live Link Face take takes to read and to key on a head (bpy wheel, headless).

    python scripts/bench_animate.py [--seconds 60] [--fps 60]

Writes a take with Live Link Face's 63-column header (random values), exports the ICT-FaceKit
head (write_head_glb), imports it with the add-on's importer (development package), then
times core.livelink.read_take and blender.animation.apply_take. Prints the figures.
Needs the ICT-FaceKit archive (GEN3DFACE_TEST_DATA or ../shared/data).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=int, default=60)
    a = ap.parse_args()

    import numpy as np

    from gen3dface.backend.export.head_glb import ExportConfig, HeadAsset, write_head_glb
    from gen3dface.backend.headmodel.ict import load_ict_npz
    from gen3dface.backend.texture.eyes import bake_eye_textures
    from gen3dface.backend.texture.layout import SkinLayout
    from test_addon_livelink import LLF_HEADER

    data = Path(os.environ.get("GEN3DFACE_TEST_DATA", REPO.parent / "shared" / "data"))
    m = load_ict_npz(data / "ict_facekit" / "ict_facekit_v1.npz")
    lay = SkinLayout.of(m)
    tex = np.full((32, 32 * lay.n_tiles, 3), 180, np.uint8)
    glb = write_head_glb(HeadAsset(m, m.vertices, np.zeros(m.n_expressions), tex, lay,
                                   bake_eye_textures(m, m.vertices, 16)), ExportConfig())
    n = int(a.seconds * a.fps)
    rnd = random.Random(0)
    rows = [",".join(LLF_HEADER)]
    for i in range(n):
        s, f = divmod(i, a.fps)
        tc = f"10:{s // 60:02d}:{s % 60:02d}:{f:02d}.000"
        rows.append(",".join([tc, "61"] + [f"{rnd.random():.4f}" for _ in range(52)]
                             + [f"{rnd.uniform(-0.2, 0.2):.4f}" for _ in range(9)]))
    text = "\n".join(rows) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        take_path = Path(tmp) / "take.csv"
        take_path.write_text(text)
        glb_path = Path(tmp) / "head.glb"
        glb_path.write_bytes(glb)

        import bpy

        from gen3dface.blender_addon.blender import animation, importer
        from gen3dface.blender_addon.core import livelink, rig
        bpy.ops.wm.read_homefile(use_empty=True)
        importer.import_glb(glb_path, "Face", rig.head_to_world_at((0, 0, 0), 1.0), 1.0)
        t0 = time.perf_counter()
        take = livelink.read_take(take_path, livelink.TakeSettings(fps=a.fps))
        t1 = time.perf_counter()
        report = animation.apply_take(bpy.context.scene, animation.find_rig(bpy.context.scene),
                                      take)
        t2 = time.perf_counter()
    keys = sum(report.keyed.values()) * n
    print(f"take: {a.seconds:g} s at {a.fps} fps = {n} rows, {len(text) / 1e6:.1f} MB")
    print(f"read_take: {t1 - t0:.2f} s")
    print(f"apply_take: {t2 - t1:.2f} s ({keys} shape-key keys on {len(report.keyed)} meshes, "
          f"head and {len(report.eyes_rotated)} eyes rotated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
