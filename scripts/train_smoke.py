"""CPU smoke run of the training loop; prints the figures the training issue asks for.

    python scripts/train_smoke.py [--out DIR] [--steps N]

Synthesises a tiny ICT set (needs ICT-FaceKit: GEN3DFACE_ASSETS or ../shared/data), trains the
tiny model with configs/smoke_cpu.toml, resumes from the mid-run checkpoint into a second
folder and compares the final weights, then loads the exported checkpoint with
MultiViewDiffusion.from_pretrained and samples views from it. Prints wall times and losses.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=str(REPO / "runs" / "smoke_bench"))
    p.add_argument("--steps", type=int, default=60)
    a = p.parse_args()
    os.environ.setdefault("GEN3DFACE_ASSETS", str(REPO.parent / "shared" / "data"))
    import torch

    from gen3dface.backend.train.config import load_config
    from gen3dface.backend.train.loop import Trainer

    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    cfg = load_config(REPO / "configs" / "smoke_cpu.toml")
    cfg.data.roots = [str(out / "data")]
    cfg.train.output_dir = str(out / "run")
    cfg.train.max_steps = a.steps
    cfg.train.checkpoint_every = cfg.train.eval_every = a.steps // 2
    t0 = time.time()
    r = Trainer(cfg).run()
    t_train = time.time() - t0
    (e0, l0), (e1, l1) = r["eval"][0], r["eval"][-1]
    print(f"train: {r['step']} steps in {t_train:.1f} s (data synthesis included); "
          f"eval loss step {e0}: {l0:.4f} -> step {e1}: {l1:.4f} (ratio {l1 / l0:.3f})")

    resumed = out / "resumed"
    shutil.copytree(out / "run" / "checkpoints" / f"step_{a.steps // 2:07d}",
                    resumed / "checkpoints" / f"step_{a.steps // 2:07d}")
    cfg.train.output_dir = str(resumed)
    t0 = time.time()
    Trainer(cfg).run()
    from safetensors.torch import load_file
    w1 = load_file(str(out / "run" / "model" / "mvdiff_modules.safetensors"))
    w2 = load_file(str(resumed / "model" / "mvdiff_modules.safetensors"))
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"resume: {time.time() - t0:.1f} s; max |weight difference| vs the straight run: "
          f"{diff:.3g}")

    from gen3dface.backend.mvdiff.model import MultiViewDiffusion
    t0 = time.time()
    model = MultiViewDiffusion.from_pretrained(out / "run" / "model")
    print(f"from_pretrained: {time.time() - t0:.1f} s, resolution {model.resolution}, "
          f"samples grid: {sorted((out / 'run' / 'samples').glob('*.png'))}")
    return 0 if l1 <= 0.5 * l0 and diff < 1e-5 and torch.isfinite(torch.tensor(l1)) else 1


if __name__ == "__main__":
    sys.exit(main())
