"""Render a result GLB (front, three-quarter, profile) next to its input photo: README's
picture. Uses the project's own ray caster (embree; backend/render/raycast.py) with its fixed
soft lights, so it runs headless anywhere.

    python scripts/render_readme_picture.py [--photo PHOTO] [--glb RESULT.glb]
                                            [--out docs/images/result.png] [--size 384]

Without --glb the photo (default: skimage's astronaut) is run through the offline pipeline
first (needs the ICT-FaceKit asset; --assets DIR).
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photo", default=None)
    ap.add_argument("--glb", default=None)
    ap.add_argument("--assets", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "docs" / "images" / "result.png"))
    ap.add_argument("--size", type=int, default=384)
    args = ap.parse_args()

    import cv2
    from PIL import Image

    from gen3dface.backend.render.raycast import RenderConfig, render_views
    from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

    if args.photo:
        photo_bytes = Path(args.photo).read_bytes()
    else:
        import skimage.data

        b = io.BytesIO()
        Image.fromarray(skimage.data.astronaut()).save(b, "PNG")
        photo_bytes = b.getvalue()
    if args.glb:
        glb = Path(args.glb).read_bytes()
    else:
        from gen3dface.backend.pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

        glb = HeadPipeline(PipelineConfig(assets_dir=args.assets)).run(
            photo_bytes, None, JobOptions()).glb
    from gen3dface.backend.render.glb_scene import glb_parts

    parts = glb_parts(glb)
    allv = np.concatenate([p.vertices for p in parts])
    target = (0.0, float(allv[:, 1].mean() + 0.02), 0.0)
    s = args.size
    k = intrinsics_from_fov(s, s, 26)
    tiles = []
    photo = np.asarray(Image.open(io.BytesIO(photo_bytes)).convert("RGB"))
    h, w = photo.shape[:2]
    c = min(h, w)
    photo = photo[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
    tiles.append(cv2.resize(photo, (s, s), interpolation=cv2.INTER_AREA))
    for az in (0, 40, 90):
        w2c = np.asarray(orbit_w2c_in_head(az, 5, 0.95, target))
        view = render_views(parts, [(w2c, k)],
                            RenderConfig(shading="lambert", background=(237, 237, 237, 255)))[0]
        tiles.append(view.rgba[..., :3])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, 1)).save(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
