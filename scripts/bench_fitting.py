#!/usr/bin/env python
"""Fitting accuracy and speed: prints figures (no pass/fail).

1. Synthetic ground truth: random ICT identities (N(0, 1) on the first K modes) and sparse
   expressions (4 random blendshapes at 0..0.6), cameras at known yaw (25 deg horizontal field
   of view, 512x512 image, face ~55 % of the image), the 478 mapped landmarks projected (face
   oval on the model's silhouette, see backend/fitting/synthetic.py) plus Gaussian noise of
   `--noise` px per axis. Reports the mean per-vertex distance on the face region (ICT
   polygon group M_Face, 9409 vertices) in millimetres, two ways:
     raw:  fitted vs true vertices in the head frame, NO post-alignment (the fit's own head
           frame; includes any error of overall size/position that the photo cannot pin down);
     sim:  after the best similarity transform (scale, rotation, translation; Umeyama) of the
           fitted face onto the true one (shape error alone).
2. Real photos: every photo in --faces (default ../shared/data/faces): faces found, warnings,
   landmark reprojection error (mean / median px over the 478 landmarks, and as % of the face
   size), fitted yaw, and times of analysis and fit.

Usage: python scripts/bench_fitting.py [--cases 10] [--noise 1.0] [--ict PATH] [--faces DIR]
       [--overlay DIR]   (writes photos with the fitted mesh's landmarks drawn on them)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gen3dface.backend.geometry import similarity_align

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def synthetic(fitter, cases: int, noise: float, seed: int) -> None:
    from gen3dface.backend.fitting.synthetic import make_case
    face = fitter.model.vertices_of_groups("M_Face")
    rng = np.random.default_rng(seed)
    print(f"synthetic: {cases} cases per yaw, noise {noise} px, K={fitter.k} identity modes, "
          f"{fitter.e} expressions; face region M_Face ({len(face)} vertices)")
    print(f"{'yaw':>5} {'raw mm':>8} {'sim mm':>8} {'lm px':>7} {'f err %':>8} {'time s':>7}")
    for yaw in (0, 45, -45, 60, 75):
        raw, sim, lm, ferr, times = [], [], [], [], []
        n = cases if abs(yaw) <= 45 else max(2, cases // 2)
        for _ in range(n):
            c = make_case(fitter, rng, yaw_deg=yaw + rng.uniform(-3, 3),
                          pitch_deg=rng.uniform(-8, 8), noise_px=noise)
            r = fitter.fit_landmarks(c.landmarks, c.image_size)
            gt, fv = c.vertices[face].astype(np.float64), r.vertices[face].astype(np.float64)
            raw.append(np.linalg.norm(fv - gt, axis=1).mean() * 1000)
            sim.append(np.linalg.norm(similarity_align(fv, gt) - gt, axis=1).mean() * 1000)
            lm.append(r.landmark_error_px)
            ferr.append(100 * (r.camera.fx / c.focal - 1))
            times.append(r.time_s)
        print(f"{yaw:>5} {np.mean(raw):8.2f} {np.mean(sim):8.2f} {np.mean(lm):7.2f} "
              f"{np.mean(np.abs(ferr)):8.1f} {np.mean(times):7.3f}")


def real(fitter, faces_dir: Path, overlay: Path | None) -> None:
    import cv2

    from gen3dface.backend.face import FaceAnalyzer
    from gen3dface.backend.contracts import PipelineError
    analyzer = FaceAnalyzer()
    print(f"\nreal photos in {faces_dir}")
    print(f"{'photo':46s} {'faces':>5} {'mean px':>8} {'med px':>7} {'% face':>7} {'yaw':>6} "
          f"{'face s':>7} {'fit s':>6}  warnings")
    errs = []
    for p in sorted(faces_dir.iterdir()):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
            continue
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        t = time.perf_counter()
        try:
            fa = analyzer.analyze(rgb)
        except PipelineError as e:
            print(f"{p.name:46s} {e.code}: {e.message}")
            continue
        ta = time.perf_counter() - t
        r = fitter.fit(fa)
        pct = 100 * r.landmark_error_px / r.info["face_size_px"]
        errs.append((r.landmark_error_px, pct))
        print(f"{p.name:46s} {fa.n_faces:5d} {r.landmark_error_px:8.2f} "
              f"{r.landmark_error_median_px:7.2f} {pct:7.2f} {r.info['yaw_deg']:6.1f} {ta:7.3f} "
              f"{r.time_s:6.3f}  {'; '.join(fa.warnings)}")
        if overlay:
            overlay.mkdir(parents=True, exist_ok=True)
            img = bgr.copy()
            for (u, v), (pu, pv) in zip(fa.landmarks, r.projected):
                cv2.circle(img, (int(u), int(v)), 1, (0, 255, 0), -1)
                cv2.circle(img, (int(pu), int(pv)), 1, (0, 0, 255), -1)
            cv2.imwrite(str(overlay / (p.stem + "_fit.jpg")), img)
    if errs:
        e = np.array(errs)
        print(f"all photos: mean landmark error {e[:, 0].mean():.2f} px "
              f"({e[:, 1].mean():.2f} % of the face size)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ict", type=Path, default=DATA / "ict_facekit" / "ict_facekit_v1.npz")
    ap.add_argument("--faces", type=Path, default=DATA / "faces")
    ap.add_argument("--cases", type=int, default=10)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overlay", type=Path, default=None)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--fit", action="append", default=[], metavar="KEY=VALUE",
                    help="override a FitConfig field (repeatable), e.g. --fit expression_l2=20")
    args = ap.parse_args(argv)

    from gen3dface.backend.fitting import FitConfig, HeadFitter
    from gen3dface.backend.headmodel.ict import load_ict_npz
    model = load_ict_npz(args.ict)
    overrides = {}
    for kv in args.fit:
        key, _, value = kv.partition("=")
        if key not in FitConfig.__dataclass_fields__:
            raise SystemExit(f"--fit {kv}: FitConfig has no field {key!r}")
        overrides[key] = type(getattr(FitConfig(), key))(value) if value not in ("True", "False") \
            else value == "True"
    fitter = HeadFitter(model, FitConfig(**overrides))
    if overrides:
        print("FitConfig overrides:", overrides)
    if not args.skip_synthetic:
        synthetic(fitter, args.cases, args.noise, args.seed)
    if not args.skip_real and args.faces.is_dir():
        real(fitter, args.faces, args.overlay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
