"""python -m gen3dface.backend.synth OUT_DIR [options]: write a synthetic ICT dataset."""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    from ..assets import find_head_model_file
    from ..headmodel.ict import load_ict_npz
    from .ict_heads import SynthConfig, synthesize_dataset

    p = argparse.ArgumentParser(prog="python -m gen3dface.backend.synth",
                                description="Render random ICT heads into a training dataset.")
    p.add_argument("out", help="dataset folder to create")
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--views", type=int, default=48)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--layout", choices=("random", "grid"), default="random")
    p.add_argument("--prior", choices=("landmark_fit", "ground_truth", "neutral"),
                   default="landmark_fit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--assets", help="folder holding ict_facekit/ict_facekit_v1.npz")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    found = find_head_model_file(a.assets, prefer="ict_facekit")
    if found is None or found.kind != "ict_facekit":
        print("ICT-FaceKit not found: run `gen3dface assets fetch` or pass --assets DIR",
              file=sys.stderr)
        return 2
    cfg = SynthConfig(n_identities=a.identities, n_views=a.views, resolution=a.resolution,
                      layout=a.layout, prior=a.prior, seed=a.seed)
    t0 = time.time()
    out = synthesize_dataset(load_ict_npz(found.path), a.out, cfg, overwrite=a.overwrite,
                             progress=lambda i, n: print(f"identity {i}/{n} "
                                                         f"({time.time() - t0:.1f} s)"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
