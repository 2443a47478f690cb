"""A base checkpoint for the small random-weight presets: a trained VAE plus a fresh UNet.

    python scripts/pretrain_small_vae.py --config CONFIG --out BASE_DIR [--steps 1500]

Why: the training loop keeps the VAE frozen (as the paper does with Stable Diffusion's VAE).
With no Stable Diffusion weights at hand, the "tiny" preset starts from a RANDOM VAE, and its
decoder caps every generated view at the quality of decode(encode(x)) through random weights
(about 7 dB PSNR on the synthetic heads: no better than an empty white image). This script
trains the preset's own small VAE as an autoencoder on the training views (never on held-out
identities), sets its latent scaling factor to 1 / std(latents) as Stable Diffusion did, and
writes a diffusers-layout base folder that `model.base` points at:

    BASE_DIR/unet/        the preset's UNet, fresh random weights (seed = train.seed)
    BASE_DIR/vae/         the trained AutoencoderKL
    BASE_DIR/scheduler/   the preset's noise schedule

The diffusion model is then trained with `gen3dface train CONFIG` (model.base = BASE_DIR)
exactly as on a Stable Diffusion base: VAE frozen, new modules zero-initialised. Data: the
config's data.roots (synthesised first from its [synth] section when missing). Views are
cropped/resized to the model resolution and composited on data.background, as the loader does.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def training_images(roots, size: int, background: float) -> np.ndarray:
    """(N, 3, size, size) float32 in [0, 1]: every view of every identity in `roots`."""
    from gen3dface.backend.data.dataset import crop_resize
    from gen3dface.backend.data.format import load_rgba, read_dataset
    out = []
    for r in roots:
        for ident in read_dataset(r).identities:
            for v in ident.views:
                rgba, _ = crop_resize(load_rgba(ident, v), v.intrinsics, size)
                x = rgba.astype(np.float32) / 255.0
                a = x[..., 3:4]
                out.append((x[..., :3] * a + background * (1 - a)).transpose(2, 0, 1))
    return np.stack(out)


def ensure_data(cfg) -> None:
    root = Path(cfg.data.roots[0])
    if (root / "dataset.json").is_file() or cfg.synth is None:
        return
    from gen3dface.backend.assets import find_head_model_file
    from gen3dface.backend.headmodel.ict import load_ict_npz
    from gen3dface.backend.synth.ict_heads import synthesize_dataset
    found = find_head_model_file(prefer="ict_facekit")
    if found is None or found.kind != "ict_facekit":
        raise FileNotFoundError("[synth] needs ICT-FaceKit (GEN3DFACE_ASSETS)")
    synthesize_dataset(load_ict_npz(found.path), root, cfg.synth)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the training config (preset, data)")
    p.add_argument("--out", help="base folder to write (default: the config's model.base)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kl", type=float, default=1e-6, help="KL weight")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    a = p.parse_args(argv)
    os.environ.setdefault("GEN3DFACE_ASSETS", str(REPO.parent / "shared" / "data"))
    import torch
    from accelerate.utils import set_seed
    from diffusers import UNet2DConditionModel

    from gen3dface.backend.train.config import load_config
    from gen3dface.backend.train.loop import build_model
    cfg = load_config(a.config)
    if not (a.out or cfg.model.base):
        print("error: give --out or set model.base in the config", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path(cfg.model.base)
    if not a.out and not out.is_absolute():      # not resolved by load_config until it exists
        out = Path(a.config).resolve().parent / out
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ensure_data(cfg)
    set_seed(cfg.train.seed)
    # the preset as build_model makes it (resolution, overrides), without any base
    model = build_model(replace(cfg.model, base=None, init_from=None))
    mcfg, vae = model.config, model.vae
    del model
    set_seed(cfg.train.seed)
    unet = UNet2DConditionModel.from_config(mcfg.backbone.unet)
    R = mcfg.backbone.resolution
    data = torch.from_numpy(training_images(cfg.data.roots, R, cfg.data.background))
    print(f"{len(data)} training views at {R}x{R}; VAE "
          f"{sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters; device {dev}")
    vae = vae.to(dev).train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=a.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    g = torch.Generator().manual_seed(cfg.train.seed)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, len(data), (min(a.batch, len(data)),), generator=g)
        x = data[idx].to(dev) * 2 - 1
        if torch.rand((), generator=g) < 0.5:          # mirror: more poses for free
            x = x.flip(-1)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        loss = torch.nn.functional.mse_loss(rec, x) + a.kl * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % max(1, a.steps // 10) == 0 or step == a.steps:
            mse = float(torch.nn.functional.mse_loss(rec.detach(), x)) / 4   # [0, 1] units
            print(f"step {step}/{a.steps}: loss {float(loss):.5f}, reconstruction PSNR "
                  f"{10 * np.log10(1 / max(mse, 1e-12)):.2f} dB ({time.time() - t0:.0f} s)",
                  flush=True)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        lat = torch.cat([vae.encode(data[i:i + 64].to(dev) * 2 - 1).latent_dist.mode()
                         for i in range(0, len(data), 64)])
    scale = float(1.0 / lat.float().std())
    vae.register_to_config(scaling_factor=scale)
    out.mkdir(parents=True, exist_ok=True)
    vae.cpu().save_pretrained(out / "vae")
    unet.save_pretrained(out / "unet")
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(dict(mcfg.backbone.scheduler, _class_name="DDPMScheduler"), indent=2))
    print(f"wrote {out} (latent scaling factor {scale:.4f}) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
