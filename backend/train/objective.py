"""The paper's multi-view diffusion loss (eq. 4) over the model engineer's public modules.

    L = E_{x, c, y_{1:N}, eps, t} || eps - eps_theta(y_{1:N,t}, t, x, c, M) ||^2

x the input image, c the cameras, y the N target views, M the prior mesh estimated from x. All
target views of a sample share one timestep and are denoised in one joint pass; as in the
sampler (mvdiff/sampling.py), the input view joins that pass as view 0 with its own latent
forward-noised to the same timestep, and only the target views enter the loss. The image
condition (CLIP embedding and input latent) is dropped with probability `cond_drop_prob` per
sample (zeroed, as `Conditioning.unconditional()` does at sampling time) so classifier-free
guidance works. `prediction_type` follows the scheduler config (epsilon or v_prediction).

`MultiViewObjective` is an nn.Module whose forward returns the loss, so accelerate / DDP wrap
the whole computation (conditioning included) in one forward.

Batch layout in (from data/dataset.py + `collate`): see `collate`'s docstring.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..mvdiff.model import Conditioning, MultiViewDiffusion, ViewCameras


def collate(samples: list[dict], soup_triangles: int = 8192, seed: int = 0) -> dict:
    """Stacks loader samples. Prior meshes of one topology are stacked as they are; meshes of
    different topologies (FaceScape + ICT in one batch) become triangle soups of
    `soup_triangles` triangles drawn uniformly (the geometry encoder then samples its surface
    points by area, so the point density stays uniform over the surface).

    Out: input_image (B, 3, S, S) in [-1, 1], target_images (B, V, 3, S, S), input_w2c
    (B, 4, 4), input_K (B, 3, 3), target_w2c (B, V, 4, 4), target_K (B, V, 3, 3),
    prior_vertices (B, N, 3), prior_faces (F, 3), identity / input_view / target_views lists."""
    keys = ("input_image", "input_mask", "input_w2c", "input_K", "target_images",
            "target_masks", "target_w2c", "target_K")
    out = {k: torch.stack([s[k] for s in samples]) for k in keys}
    for k in ("identity", "input_view", "target_views"):
        out[k] = [s[k] for s in samples]
    if "prior_vertices" in samples[0]:
        faces = [s["prior_faces"] for s in samples]
        verts = [s["prior_vertices"] for s in samples]
        same = all(f.shape == faces[0].shape and torch.equal(f, faces[0]) for f in faces) and \
            all(v.shape == verts[0].shape for v in verts)
        if same:
            out["prior_vertices"], out["prior_faces"] = torch.stack(verts), faces[0]
        else:
            rng = np.random.default_rng(seed)
            soups = []
            for v, f in zip(verts, faces):
                pick = torch.from_numpy(rng.integers(0, len(f), soup_triangles))
                soups.append(v[f[pick].long()].reshape(-1, 3))
            out["prior_vertices"] = torch.stack(soups)
            out["prior_faces"] = torch.arange(3 * soup_triangles).reshape(-1, 3)
    return out


def k_to_vec(k: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) pixel intrinsics -> (..., 4) (fx, fy, cx, cy), the model's camera layout."""
    return torch.stack([k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2]], -1)


def make_noise_scheduler(model: MultiViewDiffusion):
    import inspect

    from diffusers import DDPMScheduler
    cfg = model.config.backbone.scheduler
    names = set(inspect.signature(DDPMScheduler.__init__).parameters)
    return DDPMScheduler.from_config({k: v for k, v in cfg.items() if k in names})


class MultiViewObjective(nn.Module):
    def __init__(self, model: MultiViewDiffusion, cond_drop_prob: float = 0.1):
        super().__init__()
        self.model = model
        self.noise_scheduler = make_noise_scheduler(model)
        self.cond_drop_prob = float(cond_drop_prob)

    def draw(self, batch: dict, generator: torch.Generator) -> dict:
        """The random parts of one step (timesteps, noises, condition drop), drawn on CPU from
        `generator` so a run is reproducible whatever the device."""
        b, v = batch["target_images"].shape[:2]
        m = self.model
        lat = m.config.backbone.latent_channels
        hw = m.config.backbone.latent_size
        n_t = int(self.noise_scheduler.config.num_train_timesteps)
        return {"timesteps": torch.randint(0, n_t, (b,), generator=generator),
                "noise": torch.randn(b, v, lat, hw, hw, generator=generator),
                "input_noise": torch.randn(b, lat, hw, hw, generator=generator),
                "keep": (torch.rand(b, generator=generator) >= self.cond_drop_prob)}

    def forward(self, batch: dict, rand: dict) -> torch.Tensor:
        m = self.model
        dev = next(m.parameters()).device
        inp = ((batch["input_image"].to(dev).float() + 1) / 2).clamp(0, 1)
        tgt = ((batch["target_images"].to(dev).float() + 1) / 2).clamp(0, 1)
        b, v = tgt.shape[:2]
        if inp.shape[-1] != m.resolution:
            raise ValueError(f"images are {inp.shape[-1]} px, the model works at {m.resolution}: "
                             f"set data.image_size = {m.resolution}")
        verts = batch.get("prior_vertices")
        full = m.condition(inp, None if verts is None else verts.to(dev).float(),
                           None if verts is None else batch["prior_faces"].to(dev))
        keep = rand["keep"].to(dev)
        cond = Conditioning(full.image_embeds * keep[:, None, None].to(full.image_embeds.dtype),
                            full.input_latent * keep[:, None, None, None].to(
                                full.input_latent.dtype),
                            full.center, full.geometry)
        with torch.no_grad():
            x0 = m.encode_images(tgt.reshape(b * v, *tgt.shape[2:])).float()
        x0 = x0.reshape(b, v, *x0.shape[1:])
        t = rand["timesteps"].to(dev)
        noise = rand["noise"].to(dev)
        sched = self.noise_scheduler
        flat_t = t[:, None].expand(b, v).reshape(-1)
        xt = sched.add_noise(x0.reshape(b * v, *x0.shape[2:]),
                             noise.reshape(b * v, *noise.shape[2:]), flat_t).reshape(x0.shape)
        w2c = batch["target_w2c"].to(dev).float()
        kv = k_to_vec(batch["target_K"].to(dev).float())
        in_w2c = batch["input_w2c"].to(dev).float()
        in_k = k_to_vec(batch["input_K"].to(dev).float())
        is_input = torch.zeros(b, v, dtype=torch.bool, device=dev)
        include_input = m.config.attention.include_input_view
        if include_input:
            # the input view's own slot always holds its (noised) latent, as in the sampler
            ref = sched.add_noise(full.input_latent.float(), rand["input_noise"].to(dev), t)
            xt = torch.cat([ref[:, None], xt], 1)
            w2c = torch.cat([in_w2c[:, None], w2c], 1)
            kv = torch.cat([in_k[:, None], kv], 1)
            is_input = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=dev), is_input], 1)
        pred = m(xt, t, cond, ViewCameras(w2c, kv, in_w2c, is_input)).float()
        if include_input:
            pred = pred[:, 1:]
        if sched.config.prediction_type == "v_prediction":
            target = sched.get_velocity(x0.reshape(b * v, *x0.shape[2:]),
                                        noise.reshape(b * v, *noise.shape[2:]),
                                        flat_t).reshape(x0.shape)
        elif sched.config.prediction_type == "epsilon":
            target = noise
        else:
            target = x0
        return torch.nn.functional.mse_loss(pred, target)
