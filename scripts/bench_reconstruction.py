#!/usr/bin/env python
"""Benchmark of the reconstruction stage on synthetic ground truth.

Ground truth: random ICT-FaceKit heads (identity ~ N(0, 0.8^2) on 100 modes, 2-5 random
expressions, procedural skin/eye/teeth materials; "detailed" heads add a smooth random
displacement of the scalp and cheeks of up to 3 mm and a hair volume of 8-16 mm), rendered
by the CPU ray caster (Lambert, fixed head-frame lights) to 16 views of 256x256 on a ring
(22.5 deg azimuth steps at 30 deg elevation, radius 1 m, 22 deg field of view) or on a
layout mixing elevations (-15, 10, 40, 65 deg).

Methods: the visual hull of the masks (128 samples along the longest axis, marching cubes),
the aligned template (the ICT mean head fitted to the silhouettes: similarity + 60 identity
modes; expressions left at 0), the fast path (aligned + per-vertex refinement), and with
--sdf the free-form SDF path (GPU when available).

Metric (exactly): point-to-surface Chamfer distance in mm: 20k area-weighted samples on each
surface, each measured to the nearest point of the OTHER MESH (exact point-to-triangle
distance); the mean of both directions; F-score at 1 mm and 2 mm. Only ground-truth area that
at least one camera sees (first ray hit within 1 mm) counts for completeness; both surfaces
are cut at the plane of the ground-truth template's neck opening. Also: the registered
template's mean vertex error against the ground-truth template (skin vertices), mm.
Surfaces compared: the ground truth's drawn meshes (skin, eyes, teeth, gums, eyelashes, hair)
against the method's mesh (for the template: the same groups of the registered template).

    python scripts/bench_reconstruction.py --heads 4 [--detailed] [--layout ring|mixed] [--sdf]
Prints per-head rows and the mean; times are wall-clock seconds and CPU seconds of this
process (the machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--detailed", action="store_true", help="heads with displacement + hair")
    ap.add_argument("--layout", choices=("ring", "mixed"), default="ring")
    ap.add_argument("--sdf", action="store_true", help="also run the free-form SDF path")
    ap.add_argument("--sdf-iterations", type=int, default=None)
    ap.add_argument("--sdf-rays", type=int, default=None, help="rays per SDF iteration")
    ap.add_argument("--sdf-small", action="store_true",
                    help="a smaller hash grid and MLP and fewer samples per ray "
                    "(SDFConfig.tiny; the full config's sharpness and meshing; for CPU runs)")
    ap.add_argument("--no-safeguard", action="store_true",
                    help="return the trained SDF surface even when the views score it worse")
    ap.add_argument("--init-grid", type=int, default=96,
                    help="template SDF samples along the box's longest axis")
    ap.add_argument("--device", default=None, help="torch device for --sdf (default: cuda if "
                    "available, else cpu)")
    ap.add_argument("--ict", default=None, help="path to ict_facekit_v1.npz")
    args = ap.parse_args(argv)

    from gen3dface.backend.headmodel.ict import load_ict_npz
    from gen3dface.backend.recon.hull import visual_hull
    from gen3dface.backend.recon.metrics import GroundTruth, neck_plane, vertex_error_mm
    from gen3dface.backend.recon.register import register_template
    from gen3dface.backend.recon.views import as_views
    from gen3dface.backend.render.camera import mixed_elevation_cameras, ring_cameras
    from gen3dface.backend.render.raycast import render_views
    from gen3dface.backend.render.synthetic import (DRAWN_GROUPS, SKIN_GROUPS,
                                                    SyntheticHeadConfig, make_synthetic_head,
                                                    template_triangles)

    ict = args.ict or os.environ.get("GEN3DFACE_ICT_NPZ") or os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "ict_facekit",
        "ict_facekit_v1.npz")
    if not os.path.isfile(ict):
        print(f"ICT-FaceKit archive not found at {ict} (use --ict)", file=sys.stderr)
        return 2
    model = load_ict_npz(ict)
    cam_kw = dict(radius_m=1.0, resolution=256, fov_deg=22.0, target=(0.0, -0.02, 0.0))
    cams = ring_cameras(16, 30.0, **cam_kw) if args.layout == "ring" \
        else mixed_elevation_cameras(16, **cam_kw)
    groups = [g for gs in DRAWN_GROUPS.values() for g in gs]
    tmpl_faces = template_triangles(model, groups)
    device = args.device
    if args.sdf and device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"

    print(f"# {args.heads} {'detailed' if args.detailed else 'plain'} ICT heads, layout "
          f"{args.layout}, 16 views 256^2")
    print(f"{'head':>5} {'method':<10} {'chamfer':>8} {'acc':>6} {'comp':>6} {'F@1':>6} "
          f"{'F@2':>6} {'verr':>6} {'wall_s':>7} {'cpu_s':>6}")
    rows = []
    for h in range(args.heads):
        seed = args.seed + h
        head = make_synthetic_head(model, seed, SyntheticHeadConfig(detailed=args.detailed))
        views = as_views(render_views(head.meshes, cams))
        gv, gf = head.surface()
        neck = neck_plane(head.template_vertices, template_triangles(model, SKIN_GROUPS))
        gt = GroundTruth(gv, gf, cams, neck)

        def report(method, verts, faces, wall, cpu, verr=float("nan")):
            r = gt.evaluate(verts, faces)
            row = dict(head=seed, method=method, chamfer=r.chamfer_mm, acc=r.accuracy_mm,
                       comp=r.completeness_mm, f1=r.fscore[1.0], f2=r.fscore[2.0], verr=verr,
                       wall=wall, cpu=cpu)
            rows.append(row)
            print(f"{seed:>5} {method:<10} {row['chamfer']:8.3f} {row['acc']:6.3f} "
                  f"{row['comp']:6.3f} {row['f1']:6.3f} {row['f2']:6.3f} {verr:6.2f} "
                  f"{wall:7.2f} {cpu:6.2f}", flush=True)

        w0, c0 = time.perf_counter(), time.process_time()
        hull = visual_hull(views)
        hv, hf = hull.mesh()
        report("hull", hv, hf, time.perf_counter() - w0, time.process_time() - c0)
        w0, c0 = time.perf_counter(), time.process_time()
        reg = register_template(views, model, hull=None)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        ids = head.skin_vertices
        report("aligned", reg.aligned_vertices, tmpl_faces, float("nan"), float("nan"),
               vertex_error_mm(reg.aligned_vertices, head.template_vertices, ids))
        report("fast", reg.vertices, tmpl_faces, wall, cpu,
               vertex_error_mm(reg.vertices, head.template_vertices, ids))
        if args.sdf:
            from gen3dface.backend.recon.meshing import field_to_mesh
            from gen3dface.backend.recon.sdf import SDFConfig
            from gen3dface.backend.recon.stage import ReconConfig, reconstruct, sdf_start

            kw = {} if args.sdf_iterations is None else {"iterations": args.sdf_iterations}
            if args.sdf_rays:
                kw["rays_per_batch"] = args.sdf_rays
            full = SDFConfig()
            sdf_cfg = SDFConfig.tiny(device=device, mesh_resolution=full.mesh_resolution,
                                     init_inv_s=full.init_inv_s, meshing=full.meshing,
                                     **kw) if args.sdf_small \
                else SDFConfig(device=device, **kw)
            sdf_cfg.safeguard = not args.no_safeguard
            cfg = ReconConfig(output_kind="surface", device=device, sdf=sdf_cfg,
                              init_grid=args.init_grid)
            # the SDF's start: the registered template's closed SDF, meshed and opened at
            # the neck as the stage does (what training must improve on)
            w0, c0 = time.perf_counter(), time.process_time()
            st = sdf_start(reg, model, args.init_grid)
            start = field_to_mesh(st.field, st.origin, st.voxel, sdf_cfg.meshing,
                                  with_uvs=False, trim=st.trim)
            report("sdf-start", start.vertices, start.faces, time.perf_counter() - w0,
                   time.process_time() - c0)
            w0, c0 = time.perf_counter(), time.process_time()
            res = reconstruct(views, model, None, cfg)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            if res.surface is None:
                print(f"{seed:>5} sdf/{device}  failed: {res.surface_error}")
                continue
            report(f"sdf/{device}", res.surface.vertices, res.surface.faces, wall, cpu)
            sc = res.surface_scores
            print(f"      kept: {res.surface_kept}; view scores (silhouette 1-IoU + colour "
                  "spread; lower is better): " + ", ".join(
                      f"{k} {v['score']:.4f} ({v['silhouette']:.4f} + {v['photo']:.4f})"
                      for k, v in sc.items()), flush=True)

    print("# mean")
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        mean = {}
        for k in ("chamfer", "acc", "comp", "f1", "f2", "verr", "wall", "cpu"):
            vals = np.array([r[k] for r in sel], float)
            mean[k] = float(vals[np.isfinite(vals)].mean()) if np.isfinite(vals).any() \
                else float("nan")
        print(f"{'mean':>5} {method:<10} {mean['chamfer']:8.3f} {mean['acc']:6.3f} "
              f"{mean['comp']:6.3f} {mean['f1']:6.3f} {mean['f2']:6.3f} {mean['verr']:6.2f} "
              f"{mean['wall']:7.2f} {mean['cpu']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
