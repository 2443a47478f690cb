#!/usr/bin/env python
"""Benchmark of the full-size Gen3D-Face multi-view diffusion model with RANDOM weights (speed
and memory only; random weights generate noise, not heads).

Prints, for N target views (16) at R^2 (256^2): parameters per part, peak memory, time of the
conditioning (CLIP, VAE, geometry), time per joint denoising step (all views + the input view,
with classifier-free guidance: one batch of 2 x (N + 1) views), time to decode, and the time
of a whole generation with 50 DDIM steps and 20 DPM-Solver++ steps.

On CUDA (bf16, SDPA, optional torch.compile) it runs the whole schedules for real. On CPU it
times `--steps` steps (default 1) and EXTRAPOLATES, saying so in the output.

    python scripts/bench_mvdiff.py                      # CPU, SD 1.5 dimensions, 1 timed step
    python scripts/bench_mvdiff.py --device cuda --compile
    python scripts/bench_mvdiff.py --config sd21 --views 8 --steps 2
"""
from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=("sd15", "sd21"), default="sd15")
    p.add_argument("--views", type=int, default=16, help="target views")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--steps", type=int, default=None,
                   help="denoising steps to time (default: 1 on CPU, the full schedules on CUDA)")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet (CUDA)")
    p.add_argument("--compile-mode", default="default",
                   choices=("default", "reduce-overhead", "max-autotune"),
                   help="torch.compile mode (reduce-overhead: CUDA graphs)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--no-geometry", action="store_true")
    return p.parse_args(argv)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    args = parse_args(argv)
    from gen3dface.backend.mvdiff import MultiViewDiffusion, MVDiffusionConfig, SamplerConfig
    from gen3dface.backend.mvdiff.sampling import sample_views
    from gen3dface.protocol.cameras import intrinsics_from_fov, orbit_w2c_in_head

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
             "auto": torch.bfloat16 if device.type == "cuda" else torch.float32}[args.dtype]
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    cfg = getattr(MVDiffusionConfig, args.config)(pretrained_base=None, pretrained_image_encoder=None,
                                                  resolution=args.resolution)
    cfg.geometry.enabled = not args.no_geometry
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# Gen3D-Face multi-view diffusion benchmark (RANDOM weights: speed/memory only)")
    print(f"config={args.config} views={args.views} resolution={args.resolution} "
          f"latent={cfg.backbone.latent_size} volume={cfg.volume.resolution}^3 "
          f"frustum_depth={cfg.frustum.depth} guidance={args.guidance}")
    print(f"device={device} ({gpu}) dtype={str(dtype).replace('torch.', '')} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"compile={args.compile and args.compile_mode}")

    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = MultiViewDiffusion(cfg)
    model.to_inference(device, dtype)
    if args.compile:
        # one graph: the tests check that the UNet with our hooks traces without a break
        model.unet = torch.compile(model.unet, fullgraph=True, mode=args.compile_mode)
    print(f"build: {time.perf_counter() - t0:.1f} s")

    n_total = sum(p.numel() for p in model.parameters())
    print(f"parameters: total {n_total / 1e6:.1f} M")
    parts = dict(model.trainable_modules(), vae=model.vae, image_encoder=model.image_encoder)
    for name, mod in parts.items():
        print(f"  {name:18s} {sum(p.numel() for p in mod.parameters()) / 1e6:9.2f} M")
    n_new = sum(sum(p.numel() for p in m.parameters()) for m in model.extra_modules().values())
    print(f"  (new modules beyond SD + CLIP: {n_new / 1e6:.2f} M)")

    R, N = args.resolution, args.views
    k = intrinsics_from_fov(R, R, 25.0)
    K = torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float32, device=device)
    w2c = torch.tensor(np.stack([np.asarray(orbit_w2c_in_head(360.0 * i / N, 10.0 * ((i % 3) - 1), 1.0))
                                 for i in range(N)]), dtype=torch.float32, device=device)[None]
    iw2c = torch.tensor(np.asarray(orbit_w2c_in_head(0.0, 0.0, 1.0)), dtype=torch.float32,
                        device=device)[None]
    import trimesh
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    verts = torch.tensor(sphere.vertices, dtype=torch.float32, device=device)[None]
    faces = torch.tensor(sphere.faces, dtype=torch.long, device=device)
    img = torch.rand(1, 3, R, R, device=device)

    def run(sampler: str, steps: int, stamps: list):
        sync(device)
        t_start = time.perf_counter()
        with torch.inference_mode():
            cond = model.condition(img, verts, faces)
            sync(device)
            stamps.append(time.perf_counter())
            lat = sample_views(model, cond, w2c, K.expand(1, N, 4), iw2c, K[None],
                               SamplerConfig(sampler=sampler, steps=steps, guidance=args.guidance),
                               seed=0, on_progress=lambda i, n: (sync(device),
                                                                 stamps.append(time.perf_counter())))
            model.decode_latents(lat[0])
            sync(device)
        stamps.append(time.perf_counter())
        return t_start

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        print("warm-up (2 steps; includes torch.compile when on)...")
        s = []
        t = run("ddim", 2, s)
        print(f"  warm-up: {s[-1] - t:.1f} s")
        for sampler, steps in (("ddim", args.steps or 50), ("dpmsolver++", args.steps or 20)):
            s = []
            t = run(sampler, steps, s)
            per_step = np.diff(s[1:-1]).mean() if steps > 1 else s[2] - s[1]
            print(f"{sampler:12s} {steps:3d} steps: total {s[-1] - t:.2f} s "
                  f"(conditioning {s[0] - t:.3f} s, {per_step * 1000:.1f} ms/step, "
                  f"decode {s[-1] - s[-2]:.3f} s)  [measured]")
        print(f"peak GPU memory: {peak_memory_gib(device):.2f} GiB")
        return 0

    steps = args.steps or 1
    s = []
    t = run("ddim", steps, s)
    cond_s, decode_s = s[0] - t, s[-1] - s[-2]
    step_times = np.diff(s[:-1])
    per_step = float(step_times.mean())
    print(f"conditioning (CLIP + VAE encode + geometry): {cond_s:.2f} s  [measured]")
    print(f"denoising step (2 x {N + 1} views, CFG): {per_step:.2f} s/step over {steps} "
          f"step(s) [measured: {', '.join(f'{x:.2f}' for x in step_times)}]")
    print(f"decode {N} views: {decode_s:.2f} s  [measured]")
    for name, n in (("DDIM", 50), ("DPM-Solver++", 20)):
        print(f"{name} {n} steps: {cond_s + n * per_step + decode_s:.1f} s  "
              f"[EXTRAPOLATED from {steps} timed step(s)]")
    print(f"peak CPU memory (max RSS): {peak_memory_gib(device):.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
