"""python -m gen3dface.backend.pruning DATASET [--clip ...] [--arcface ...]: write pruning.json."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from ..data.format import PruningManifest, read_dataset
    from .identity import IdentityFilterConfig, identity_filter
    from .janus import JanusFilterConfig, janus_filter

    p = argparse.ArgumentParser(prog="python -m gen3dface.backend.pruning",
                                description="The paper's data pruning: Janus + identity filters.")
    p.add_argument("dataset")
    p.add_argument("--clip", help="transformers CLIP folder or hub id (Janus filter)")
    p.add_argument("--open-clip", nargs=2, metavar=("MODEL", "PRETRAINED"),
                   help="use open_clip instead, e.g. ViT-H-14 laion2b_s32b_b79k")
    p.add_argument("--tau", type=float, default=0.5, help="Janus threshold on P(front face)")
    p.add_argument("--back-azimuth", type=float, default=120.0)
    p.add_argument("--arcface", help="ArcFace ONNX model (identity filter)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--keep-fraction", type=float, default=0.8)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    index = read_dataset(a.dataset)
    manifest = PruningManifest.load(a.dataset) or PruningManifest()
    if a.clip or a.open_clip:
        from .embedders import OpenClip, TransformersClip
        emb = OpenClip(*a.open_clip, device=a.device) if a.open_clip \
            else TransformersClip(a.clip, device=a.device)
        m = janus_filter(index, emb, JanusFilterConfig(a.tau, a.back_azimuth))
        print(f"janus: dropped {m.details['janus']['n_dropped']} of "
              f"{m.details['janus']['n_scored']} back views")
        manifest = manifest.merge(m)
    if a.arcface:
        from .embedders import ArcFaceOnnx
        m = identity_filter(index, ArcFaceOnnx(a.arcface),
                            IdentityFilterConfig(top_k=a.top_k, keep_fraction=a.keep_fraction))
        print(f"identity: dropped {m.details['identity']['n_dropped']} of "
              f"{len(index.identities)} identities")
        manifest = manifest.merge(m)
    if not (a.clip or a.open_clip or a.arcface):
        p.error("give --clip/--open-clip and/or --arcface")
    print(f"wrote {manifest.save(a.dataset)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
