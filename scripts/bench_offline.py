"""Photo -> GLB on this machine, offline path: seconds per stage, landmark error, faces found.

    python scripts/bench_offline.py [--assets ../shared/data] [--faces ../shared/data/faces]
                                    [--texture-size 1024] [--limit N] [--out DIR]
                                    [--blas-threads N|none]

Runs skimage's astronaut first (the first job also pays the one-off costs: loading the head
model, mediapipe graphs, the UV rasterisation), then every photo in the faces folder. Prints
one line per photo and a summary (median warm seconds per stage). Figures are for README;
nothing here is a test.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("decode", "face", "fit", "texture", "export")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--assets", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--faces", default=str(REPO.parent / "shared" / "data" / "faces"))
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--limit", type=int, default=0, help="at most N photos from --faces")
    ap.add_argument("--out", default=None, help="write each GLB and sidecar here")
    ap.add_argument("--blas-threads", default="1", metavar="N|none",
                    help="PipelineConfig.blas_threads: BLAS threads while a job runs (default 1; "
                         "none: the libraries' own choice)")
    args = ap.parse_args()

    import skimage.data
    from PIL import Image

    from gen3dface.backend.contracts import PipelineError
    from gen3dface.backend.pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

    b = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(b, "PNG")
    jobs = [("astronaut (skimage)", b.getvalue())]
    faces = Path(args.faces)
    if faces.is_dir():
        photos = sorted(p for p in faces.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if args.limit:
            photos = photos[:args.limit]
        jobs += [(p.name, p.read_bytes()) for p in photos]
    print(f"machine: {os.cpu_count()} CPUs; torch threads n/a; texture {args.texture_size}; "
          f"assets {args.assets}")
    blas = None if args.blas_threads.lower() == "none" else int(args.blas_threads)
    pipe = HeadPipeline(PipelineConfig(assets_dir=args.assets, blas_threads=blas))
    print(f"head model: {pipe.capabilities()['head_model']}")
    head = f"{'photo':42s} {'total':>6s} " + " ".join(f"{s:>7s}" for s in STAGES) + \
        "  lm_err_px faces  notes"
    print(head)
    rows = []
    opts = JobOptions(texture_size=args.texture_size)
    for i, (name, data) in enumerate(jobs):
        t0 = time.perf_counter()
        try:
            res = pipe.run(data, None, opts)
        except PipelineError as e:
            print(f"{name:42s} {time.perf_counter() - t0:6.2f}  error {e.code}: {e.message[:70]}")
            rows.append((name, None))
            continue
        sc = res.sidecar
        t = sc["timings_s"]
        notes = "; ".join(sc["warnings"] + sc["fallbacks"])[:60]
        err = sc["landmark_error_px"]
        print(f"{name:42s} {t['total']:6.2f} " + " ".join(f"{t.get(s, 0):7.2f}" for s in STAGES)
              + f"  {err if err is None else round(err, 2)!s:>9s} {sc['n_faces']:5d}  {notes}"
              + ("   (first job: one-off loading)" if i == 0 else ""))
        rows.append((name, sc))
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            stem = Path(name).stem.split()[0]
            (out / f"{stem}.glb").write_bytes(res.glb)
            import json

            (out / f"{stem}.json").write_text(json.dumps(sc, indent=1))
    warm = [sc for _, sc in rows[1:] if sc] or [sc for _, sc in rows if sc]
    if warm:
        print("median seconds (warm jobs): total "
              f"{statistics.median(s['timings_s']['total'] for s in warm):.2f}, " +
              ", ".join(f"{st} {statistics.median(s['timings_s'][st] for s in warm):.2f}"
                        for st in STAGES))
        errs = [s["landmark_error_px"] for s in warm if s["landmark_error_px"] is not None]
        if errs:
            print(f"landmark reprojection error: median {statistics.median(errs):.2f} px, "
                  f"max {max(errs):.2f} px over {len(errs)} photos")
    failed = [n for n, sc in rows if sc is None]
    print(f"heads: {len(rows) - len(failed)}/{len(rows)}" +
          (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
