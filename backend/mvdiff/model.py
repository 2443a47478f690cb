"""`MultiViewDiffusion`: the Gen3D-Face multi-view latent diffusion model (paper section 3.2).

One forward pass denoises every view of a sample together:
    noisy view latents (B, V, c, h, w)   [view 0 = the input view when it is included]
      -> camera encoder (each camera relative to the input camera and head frame, + timestep)
      -> appearance volume: per-view features unprojected into an R^3 grid, mean/var over views
      -> + geometry prior (head mesh -> sparse 3D ConvNet, zero-initialised output) = hybrid
      -> per-view frustum volumes (FrustumNet) -> depth-wise attention inside the UNet
      -> Stable Diffusion UNet on [(B*V), 2c, h, w] (noisy latent ++ input-view latent), CLIP
         image embedding as cross-attention context, 3D self-attention across all views
    -> noise (or v) prediction (B, V, c, h, w)

Cameras: OpenCV w2c (B, V, 4, 4) in the head frame and K = (fx, fy, cx, cy) (B, V, 4) in pixels
of the model's square `resolution` image. Images fed to the VAE / CLIP: (B, 3, H, W) float in
[0, 1], RGB, rows top-to-bottom.

Checkpoint folder (save_pretrained / from_pretrained; local folder or hub id):
    gen3dface_mvdiff.json        MVDiffusionConfig
    unet/  vae/  image_encoder/  diffusers / transformers folders (UNet with widened conv_in)
    scheduler/scheduler_config.json
    mvdiff_modules.safetensors   camera encoder, image projection, volume, geometry, frustum and
                                 depth-attention weights
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import CONFIG_NAME, MVDiffusionConfig
from .geometry3d import CAMERA_FEATURES, camera_features, sample_frustum, unproject_to_volume
from .geometry_prior import GeometryEncoder
from .unet_hooks import DepthWiseAttention, MultiViewContext, depth_key, install, transformer_levels
from .volume_nets import FrustumNet, ViewFeatureEncoder, VolumeNet

MODULES_FILE = "mvdiff_modules.safetensors"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Conditioning:
    """What stays fixed over the denoising steps of one sample (computed once)."""
    image_embeds: torch.Tensor          # (B, 1, cross_attention_dim)
    input_latent: torch.Tensor          # (B, c, h, w) scaled VAE latent of the input view
    center: torch.Tensor                # (B, 3) volume centre, head frame
    geometry: torch.Tensor | None       # (B, C_app, R, R, R) geometry prior volume, or None

    def unconditional(self) -> "Conditioning":
        """The same sample with the input image dropped (for classifier-free guidance)."""
        return Conditioning(torch.zeros_like(self.image_embeds),
                            torch.zeros_like(self.input_latent), self.center, self.geometry)

    @staticmethod
    def cat(a: "Conditioning", b: "Conditioning") -> "Conditioning":
        geo = None if a.geometry is None else torch.cat([a.geometry, b.geometry])
        return Conditioning(torch.cat([a.image_embeds, b.image_embeds]),
                            torch.cat([a.input_latent, b.input_latent]),
                            torch.cat([a.center, b.center]), geo)


@dataclass
class ViewCameras:
    """Cameras of the views in the joint pass plus the input camera they are relative to."""
    w2c: torch.Tensor           # (B, V, 4, 4)
    K: torch.Tensor             # (B, V, 4)
    input_w2c: torch.Tensor     # (B, 4, 4)
    is_input: torch.Tensor      # (B, V) bool

    @staticmethod
    def cat(a: "ViewCameras", b: "ViewCameras") -> "ViewCameras":
        return ViewCameras(*(torch.cat([x, y]) for x, y in
                             zip((a.w2c, a.K, a.input_w2c, a.is_input),
                                 (b.w2c, b.K, b.input_w2c, b.is_input))))


def joint_cameras(target_w2c: torch.Tensor, target_K: torch.Tensor, input_w2c: torch.Tensor,
                  input_K: torch.Tensor, include_input_view: bool) -> ViewCameras:
    """Cameras of one joint pass: target w2c (B, N, 4, 4) / K (B, N, 4), input w2c (B, 4, 4) /
    K (B, 4); with `include_input_view` the input camera becomes view 0."""
    B, N = target_w2c.shape[:2]
    dev = target_w2c.device
    w2c, K = target_w2c.float(), target_K.float()
    is_input = torch.zeros(B, N, dtype=torch.bool, device=dev)
    if include_input_view:
        w2c = torch.cat([input_w2c.float()[:, None], w2c], 1)
        K = torch.cat([input_K.float()[:, None], K], 1)
        is_input = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=dev), is_input], 1)
    return ViewCameras(w2c, K, input_w2c.float(), is_input)


class CameraEncoder(nn.Module):
    """Camera features (N, 21) + sinusoidal timestep (N, T) -> UNet embedding (N, E_unet)
    (zero-initialised, added to the time embedding) and volume embedding (N, E_vol)."""

    def __init__(self, t_dim: int, hidden: int, unet_emb_dim: int, volume_emb_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(CAMERA_FEATURES + t_dim, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU())
        self.to_unet = nn.Linear(hidden, unet_emb_dim)
        self.to_volume = nn.Linear(hidden, volume_emb_dim)
        nn.init.zeros_(self.to_unet.weight)
        nn.init.zeros_(self.to_unet.bias)

    def forward(self, cam: torch.Tensor, t_emb: torch.Tensor):
        h = self.mlp(torch.cat([cam, t_emb.to(cam.dtype)], -1))
        return self.to_unet(h), self.to_volume(h)


def widen_conv_in(unet, extra_channels: int) -> None:
    """Give the UNet's conv_in `extra_channels` more input channels, zero-initialised, so the
    widened UNet computes exactly what the base did whatever the extra inputs hold."""
    old = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size,
                    old.stride, old.padding, dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=old.in_channels + extra_channels)


def _is_local(path_or_id: str | os.PathLike) -> bool:
    return Path(path_or_id).expanduser().exists()


class MultiViewDiffusion(nn.Module):
    def __init__(self, config: MVDiffusionConfig, unet=None, vae=None, image_encoder=None,
                 _unet_is_widened: bool = False):
        """Builds every part from `config` with fresh weights; pass `unet` / `vae` /
        `image_encoder` to use loaded ones (a base `unet` gets its conv_in widened)."""
        super().__init__()
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.config = config
        bb = config.backbone
        lc = bb.latent_channels
        if unet is None:
            unet = UNet2DConditionModel.from_config(bb.unet)
        if not _unet_is_widened:
            if unet.config.in_channels != lc:
                raise ValueError(f"base UNet takes {unet.config.in_channels} channels, expected "
                                 f"{lc} (the VAE's latent channels)")
            widen_conv_in(unet, lc)
        self.unet = unet
        self.vae = vae if vae is not None else AutoencoderKL.from_config(bb.vae)
        if image_encoder is None:
            image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**bb.image_encoder))
        self.image_encoder = image_encoder
        self.vae.requires_grad_(False)
        self.image_encoder.requires_grad_(False)

        proj_dim = self.image_encoder.config.projection_dim
        cross = unet.config.cross_attention_dim
        self.image_proj = nn.Linear(proj_dim, cross)
        with torch.no_grad():  # identity where the dimensions allow (SD1.5 + ViT-L/14)
            self.image_proj.weight.copy_(torch.eye(cross, proj_dim))
            self.image_proj.bias.zero_()

        t_dim = unet.config.block_out_channels[0]
        unet_emb = unet.time_embedding.linear_2.out_features
        ve = config.camera.volume_emb_dim
        self.camera_encoder = CameraEncoder(t_dim, config.camera.hidden_dim, unet_emb, ve)
        vc = config.volume
        self.view_encoder = ViewFeatureEncoder(lc, vc.view_feature_channels, ve)
        self.volume_net = VolumeNet(2 * vc.view_feature_channels, tuple(vc.net_channels),
                                    vc.channels, ve)
        self.geometry_encoder = (GeometryEncoder(config.geometry, 2 * vc.view_feature_channels,
                                                 vc.resolution, vc.half_extent_m)
                                 if config.geometry.enabled else None)
        fc = config.frustum
        self.frustum_net = FrustumNet(vc.channels, tuple(fc.channels), ve)
        self.depth_attention = nn.ModuleDict()
        for path, (level, ch) in transformer_levels(unet).items():
            self.depth_attention[depth_key(path)] = DepthWiseAttention(
                ch, fc.channels[level], fc.depth // 2 ** level, fc.attention_heads,
                fc.attention_head_dim)
        self._ctx = MultiViewContext(multiview_attention=config.attention.enabled)
        self._hooks = install(self.unet, self._ctx, self.depth_attention)

    def to_inference(self, device, dtype: torch.dtype = torch.float32) -> "MultiViewDiffusion":
        """Move to `device` in `dtype` (bf16 on CUDA) for inference; the geometry encoder stays
        float32 (it runs once per sample, and spconv kernels want fp32/fp16)."""
        self.to(device=device, dtype=dtype)
        if self.geometry_encoder is not None:
            self.geometry_encoder.float()
        return self.eval()

    # ---- parts ---------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.config.backbone.resolution

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The parts a training run updates (VAE and CLIP stay frozen)."""
        mods = {"unet": self.unet, "image_proj": self.image_proj,
                "camera_encoder": self.camera_encoder, "view_encoder": self.view_encoder,
                "volume_net": self.volume_net, "frustum_net": self.frustum_net,
                "depth_attention": self.depth_attention}
        if self.geometry_encoder is not None:
            mods["geometry_encoder"] = self.geometry_encoder
        return mods

    def extra_modules(self) -> dict[str, nn.Module]:
        """Everything that is not a stock diffusers/transformers part (saved together)."""
        return {k: m for k, m in self.trainable_modules().items() if k != "unet"}

    # ---- conditioning (once per sample) ----------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] at the model resolution -> scaled latents (B, c, h, w)."""
        x = images.to(self.vae.dtype) * 2.0 - 1.0
        lat = self.vae.encode(x).latent_dist.mode()
        return lat * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, c, h, w) scaled latents -> (N, 3, H, W) in [0, 1]."""
        x = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def clip_embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 1, cross_attention_dim)."""
        size = self.image_encoder.config.image_size
        x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 1)
        mean = x.new_tensor(CLIP_MEAN)[None, :, None, None]
        std = x.new_tensor(CLIP_STD)[None, :, None, None]
        x = ((x - mean) / std).to(self.image_encoder.dtype)
        with torch.no_grad():
            emb = self.image_encoder(pixel_values=x).image_embeds
        return self.image_proj(emb.to(self.image_proj.weight.dtype))[:, None, :]

    def encode_geometry(self, vertices: torch.Tensor, faces: torch.Tensor,
                        center: torch.Tensor) -> torch.Tensor | None:
        if self.geometry_encoder is None:
            return None
        return self.geometry_encoder(vertices, faces, center)

    def condition(self, images: torch.Tensor, vertices: torch.Tensor | None = None,
                  faces: torch.Tensor | None = None,
                  center: torch.Tensor | None = None) -> Conditioning:
        """Input view images (B, 3, R, R) in [0, 1] (background already white) and the head mesh
        (vertices (B, N, 3), faces (F, 3)) -> Conditioning. The volume is centred on the mesh's
        bounding-box centre unless `center` (B, 3) is given (origin when there is no mesh)."""
        B = images.shape[0]
        if center is None:
            if vertices is not None:
                center = 0.5 * (vertices.amin(1) + vertices.amax(1))
            else:
                center = images.new_zeros(B, 3)
        center = center.float()
        geometry = None
        if vertices is not None and self.geometry_encoder is not None:
            if faces is None:
                raise ValueError("the head mesh needs its faces")
            geometry = self.encode_geometry(vertices, faces, center)
        return Conditioning(self.clip_embed(images), self.encode_images(images), center, geometry)

    # ---- one joint denoising pass ----------------------------------------------------------
    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning,
                cameras: ViewCameras) -> torch.Tensor:
        """noisy (B, V, c, h, w), timesteps (B,) -> prediction (B, V, c, h, w)."""
        B, V, c, h, w = noisy.shape
        if cameras.w2c.shape[:2] != (B, V):
            raise ValueError(f"cameras for {tuple(cameras.w2c.shape[:2])} views, latents for {(B, V)}")
        cfg = self.config
        dtype = self.unet.dtype
        half = cfg.volume.half_extent_m
        R = self.resolution
        w2c, K = cameras.w2c.float(), cameras.K.float()

        # camera + timestep embeddings, per view
        t = timesteps.reshape(B, 1).expand(B, V).reshape(B * V)
        t_emb = self.unet.time_proj(t).to(dtype)
        cam = camera_features(w2c, K, cameras.input_w2c.float(), cameras.is_input, R,
                              cond.center, half).reshape(B * V, -1).to(dtype)
        unet_emb, vol_emb = self.camera_encoder(cam, t_emb)

        # appearance volume (+ geometry) -> hybrid volume
        x = noisy.reshape(B * V, c, h, w).to(dtype)
        feats = self.view_encoder(x, vol_emb).reshape(B, V, -1, h, w)
        mean, var = unproject_to_volume(feats, w2c, K, R, cond.center, half, cfg.volume.resolution)
        app = torch.cat([mean, var], 1)
        if cond.geometry is not None:
            app = app + cond.geometry.to(app.dtype)
        hybrid = self.volume_net(app, vol_emb.reshape(B, V, -1).mean(1))

        # frustum volumes per view and level
        fr = sample_frustum(hybrid, w2c, K, R, h, w, cfg.frustum.depth, cond.center, half)
        frustums = self.frustum_net(fr.reshape(B * V, *fr.shape[2:]), vol_emb)

        # the UNet, all views folded into the batch
        sample = torch.cat([x, cond.input_latent.to(dtype)[:, None].expand(B, V, c, h, w)
                            .reshape(B * V, c, h, w)], 1)
        ehs = cond.image_embeds.to(dtype)[:, None].expand(B, V, *cond.image_embeds.shape[1:])
        ehs = ehs.reshape(B * V, *cond.image_embeds.shape[1:])
        ctx = self._ctx
        ctx.num_views, ctx.camera_emb, ctx.frustums, ctx.active = V, unet_emb, frustums, True
        try:
            out = self.unet(sample, t, encoder_hidden_states=ehs,
                            cross_attention_kwargs={"num_views": V}, return_dict=False)[0]
        finally:
            ctx.clear()
        return out.reshape(B, V, c, h, w)

    # ---- checkpoints -------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        self.unet.save_pretrained(folder / "unet", safe_serialization=safe_serialization)
        self.vae.save_pretrained(folder / "vae", safe_serialization=safe_serialization)
        self.image_encoder.save_pretrained(folder / "image_encoder",
                                           safe_serialization=safe_serialization)
        (folder / "scheduler").mkdir(exist_ok=True)
        (folder / "scheduler" / "scheduler_config.json").write_text(
            json.dumps(dict(self.config.backbone.scheduler, _class_name="DDIMScheduler"), indent=2))
        state = {f"{name}.{k}": v.detach().contiguous().cpu()
                 for name, mod in self.extra_modules().items()
                 for k, v in mod.state_dict().items()}
        save_file(state, str(folder / MODULES_FILE), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        revision: str | None = None) -> "MultiViewDiffusion":
        """Load a whole model saved by `save_pretrained` from a local folder or a Hugging Face
        hub id (downloaded with huggingface_hub into its cache)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from safetensors.torch import load_file
        from transformers import CLIPVisionModelWithProjection

        local = _is_local(path_or_id)
        if local:
            root = Path(path_or_id).expanduser()
            cfg_path, modules_path = root / CONFIG_NAME, root / MODULES_FILE
            src = str(root)
            if not cfg_path.is_file():
                raise FileNotFoundError(f"{root} is not a Gen3D-Face checkpoint (no {CONFIG_NAME})")
        else:
            from huggingface_hub import hf_hub_download
            src = str(path_or_id)
            cfg_path = Path(hf_hub_download(src, CONFIG_NAME, revision=revision))
            modules_path = Path(hf_hub_download(src, MODULES_FILE, revision=revision))
        config = MVDiffusionConfig.load(cfg_path)
        kw = {} if local else {"revision": revision}
        unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet", **kw)
        vae = AutoencoderKL.from_pretrained(src, subfolder="vae", **kw)
        enc = CLIPVisionModelWithProjection.from_pretrained(src, subfolder="image_encoder", **kw)
        model = cls(config, unet=unet, vae=vae, image_encoder=enc, _unet_is_widened=True)
        state = load_file(str(modules_path))
        for name, mod in model.extra_modules().items():
            sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            mod.load_state_dict(sub, strict=True)
        model.eval()
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model

    @classmethod
    def from_base(cls, config: MVDiffusionConfig, base: str | os.PathLike | None = None,
                  image_encoder: str | os.PathLike | None = None,
                  revision: str | None = None) -> "MultiViewDiffusion":
        """A model whose UNet, VAE and scheduler come from a Stable Diffusion folder / hub id
        (diffusers layout: unet/, vae/, scheduler/) and whose CLIP image encoder comes from a
        CLIPVisionModelWithProjection folder / hub id; the new parts start fresh, with their
        output layers at zero. This is how training starts (issue 6)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPVisionModelWithProjection

        base = base or config.backbone.pretrained_base
        image_encoder = image_encoder or config.backbone.pretrained_image_encoder
        if base is None:
            raise ValueError("no base model: pass `base` or set backbone.pretrained_base")
        kw = {} if _is_local(base) else {"revision": revision}
        unet = UNet2DConditionModel.from_pretrained(str(base), subfolder="unet", **kw)
        vae = AutoencoderKL.from_pretrained(str(base), subfolder="vae", **kw)
        config.backbone.unet = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
        config.backbone.vae = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
        sched = Path(base, "scheduler", "scheduler_config.json")
        if _is_local(base) and sched.is_file():
            config.backbone.scheduler = {k: v for k, v in json.loads(sched.read_text()).items()
                                         if not k.startswith("_")}
        elif not _is_local(base):
            from diffusers import DDIMScheduler
            s = DDIMScheduler.from_pretrained(str(base), subfolder="scheduler", **kw)
            config.backbone.scheduler = {k: v for k, v in dict(s.config).items()
                                         if not k.startswith("_")}
        enc = None
        if image_encoder is not None:
            kw2 = {} if _is_local(image_encoder) else {"revision": revision}
            enc = CLIPVisionModelWithProjection.from_pretrained(str(image_encoder), **kw2)
            config.backbone.image_encoder = {
                k: getattr(enc.config, k) for k in config.backbone.image_encoder
                if hasattr(enc.config, k)} | {"projection_dim": enc.config.projection_dim}
        config.validate()
        return cls(config, unet=unet, vae=vae, image_encoder=enc)
