"""Joint multi-view sampling: DDIM (50 steps, as in the paper) or DPM-Solver++ (~20 steps) from
diffusers' schedulers, classifier-free guidance on the input-image condition, seeds,
cooperative cancellation between steps, progress callbacks and optional per-step previews.

The input view (when the model includes it) joins every denoising pass as view 0: its latent
is the input photo's latent forward-noised to the current timestep (fixed noise drawn from the
seed), so all views are denoised in one pass; only the target views are stepped and returned.

Layouts: latents (B, N, c, h, w) for N target views; cameras as in `model.ViewCameras`.
Preview PNGs: the views tiled in a grid, HxWx3 uint8 RGB.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .model import Conditioning, MultiViewDiffusion, ViewCameras, joint_cameras

SAMPLERS = ("ddim", "dpmsolver++")

# Linear map from Stable Diffusion's 4 latent channels to RGB in [-1, 1] (a cheap preview
# approximation of the VAE decoder, widely used for SD 1.x/2.x latents).
LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173),
              (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


@dataclass
class SamplerConfig:
    sampler: str = "ddim"         # "ddim" | "dpmsolver++"
    steps: int = 50
    guidance: float = 3.0         # classifier-free guidance scale on the input image (1 = off)
    eta: float = 0.0              # DDIM eta
    preview_every: int = 0        # 0: no previews; k: a preview every k steps (and the last)
    preview_decode: bool = False  # True: VAE-decoded previews; False: latent-RGB approximation

    def validate(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, not {self.sampler!r}")
        if not 1 <= self.steps <= 1000:
            raise ValueError("steps must be in 1..1000")
        if self.guidance < 1.0:
            raise ValueError("guidance must be >= 1")


def make_scheduler(name: str, scheduler_config: dict):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    def accepted(cls) -> dict:
        names = set(inspect.signature(cls.__init__).parameters)
        return {k: v for k, v in scheduler_config.items() if k in names}

    if name == "ddim":
        return DDIMScheduler.from_config(accepted(DDIMScheduler))
    if name == "dpmsolver++":
        cfg = accepted(DPMSolverMultistepScheduler)
        cfg.update(algorithm_type="dpmsolver++", solver_order=2)
        return DPMSolverMultistepScheduler.from_config(cfg)
    raise ValueError(f"sampler must be one of {SAMPLERS}, not {name!r}")


def predicted_x0(scheduler, x_t: torch.Tensor, pred: torch.Tensor, t) -> torch.Tensor:
    """The clean latent implied by the model's prediction at timestep t."""
    a = scheduler.alphas_cumprod.to(x_t.device)[int(t)].to(x_t.dtype)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (x_t - (1 - a).sqrt() * pred) / a.sqrt()
    if kind == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * pred
    return pred  # "sample"


def latent_rgb(latents: torch.Tensor) -> torch.Tensor:
    """(N, 4, h, w) scaled latents -> (N, 3, h, w) in [0, 1], a preview approximation."""
    m = latents.new_tensor(LATENT_RGB) if latents.shape[1] == 4 else None
    if m is None:
        x = latents[:, :3]
    else:
        x = torch.einsum("nchw,cr->nrhw", latents, m)
    return ((x + 1) / 2).clamp(0, 1)


def tile_views(images: torch.Tensor, columns: int = 4) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> HxWx3 uint8 grid, `columns` views per row."""
    n, _, h, w = images.shape
    cols = min(columns, n)
    rows = -(-n // cols)
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    arr = (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = arr[i]
    return grid


def initial_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Noise drawn on the CPU from `seed`, so a seed gives the same views on every device."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32)


@torch.no_grad()
def sample_views(model: MultiViewDiffusion, cond: Conditioning, target_w2c: torch.Tensor,
                 target_K: torch.Tensor, input_w2c: torch.Tensor, input_K: torch.Tensor,
                 config: SamplerConfig | None = None, seed: int = 0,
                 noise: torch.Tensor | None = None,
                 on_progress: Callable[[int, int], None] | None = None,
                 on_preview: Callable[[int, np.ndarray], None] | None = None,
                 should_stop: Callable[[], None] | None = None) -> torch.Tensor:
    """Denoise all target views together -> clean latents (B, N, c, h, w).

    target_w2c (B, N, 4, 4), target_K (B, N, 4), input_w2c (B, 4, 4), input_K (B, 4).
    `noise` (B, N, c, h, w) replaces the seeded initial noise of the targets (the input view's
    noise still comes from `seed`). `should_stop()` is called between steps and may raise
    (JobCancelled); `on_progress(step, steps)` after every step; `on_preview(step, rgb)` every
    `preview_every` steps."""
    config = config or SamplerConfig()
    config.validate()
    device = cond.input_latent.device
    B, N = target_w2c.shape[:2]
    c, h, w = cond.input_latent.shape[1:]
    include_input = model.config.attention.include_input_view
    sched = make_scheduler(config.sampler, model.config.backbone.scheduler)
    sched.set_timesteps(config.steps, device=device)

    if noise is None:
        noise = initial_noise(seed, (B, N, c, h, w))
    elif noise.shape != (B, N, c, h, w):
        raise ValueError(f"noise must be {(B, N, c, h, w)}, got {tuple(noise.shape)}")
    x = noise.to(device, torch.float32) * sched.init_noise_sigma
    in_noise = initial_noise(int(seed) + 1_000_003, (B, c, h, w)).to(device)

    cams = joint_cameras(target_w2c.to(device), target_K.to(device), input_w2c.to(device),
                         input_K.to(device), include_input)
    guided = config.guidance > 1.0
    if guided:
        cond_all = Conditioning.cat(cond, cond.unconditional())
        cams_all = ViewCameras.cat(cams, cams)
    else:
        cond_all, cams_all = cond, cams

    step_gen = torch.Generator(device=device).manual_seed(int(seed) + 7)
    timesteps = sched.timesteps
    n_steps = len(timesteps)
    for i, t in enumerate(timesteps):
        if should_stop is not None:
            should_stop()
        xin = sched.scale_model_input(x, t)
        if include_input:
            ref = sched.add_noise(cond.input_latent.float(), in_noise, t.reshape(1))
            xin = torch.cat([ref[:, None], xin], 1)
        batch = torch.cat([xin, xin]) if guided else xin
        tt = t.reshape(1).expand(batch.shape[0]).to(device)
        pred = model(batch, tt, cond_all, cams_all).float()
        if guided:
            pc, pu = pred.chunk(2)
            pred = pu + config.guidance * (pc - pu)
        if include_input:
            pred = pred[:, 1:]
        step_kw = {}
        if config.sampler == "ddim" and config.eta > 0:
            step_kw = {"eta": config.eta, "generator": step_gen}
        x_prev = sched.step(pred.reshape(B * N, c, h, w), t, x.reshape(B * N, c, h, w),
                            **step_kw).prev_sample.reshape(B, N, c, h, w)
        if on_preview is not None and config.preview_every > 0 and (
                (i + 1) % config.preview_every == 0 or i == n_steps - 1):
            x0 = predicted_x0(sched, x.reshape(B * N, c, h, w), pred.reshape(B * N, c, h, w), t)
            imgs = model.decode_latents(x0) if config.preview_decode else latent_rgb(x0)
            on_preview(i, tile_views(imgs))
        x = x_prev
        if on_progress is not None:
            on_progress(i + 1, n_steps)
    return x
