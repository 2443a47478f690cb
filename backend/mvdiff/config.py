"""Configuration of the Gen3D-Face multi-view diffusion model: one dataclass per part, plus
`MVDiffusionConfig` that holds them all and (de)serialises to JSON.

Presets:
    MVDiffusionConfig.tiny()   a few-thousand-parameter model for CPU tests (16x16 images)
    MVDiffusionConfig.sd15()   Stable Diffusion 1.5 dimensions + CLIP ViT-L/14, 256x256 views
    MVDiffusionConfig.sd21()   Stable Diffusion 2.1(-base) dimensions + CLIP ViT-H/14, 256x256
The backbone configs hold the diffusers/transformers config dicts themselves, so a checkpoint
folder says exactly which UNet / VAE / CLIP it was built with.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_loader import ConfigError, build

FORMAT_VERSION = 1
CONFIG_NAME = "gen3dface_mvdiff.json"


def _sd_scheduler(prediction_type: str = "epsilon") -> dict:
    """The noise schedule Stable Diffusion 1.x / 2.x were trained with."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                steps_offset=1, prediction_type=prediction_type, timestep_spacing="leading")


def _sd_vae() -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4,
                block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                norm_num_groups=32, sample_size=512, scaling_factor=0.18215)


def _sd_unet(cross_attention_dim: int, attention_head_dim, linear_proj: bool,
             upcast: bool) -> dict:
    return dict(sample_size=32, in_channels=4, out_channels=4,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
                block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                cross_attention_dim=cross_attention_dim, attention_head_dim=attention_head_dim,
                use_linear_projection=linear_proj, upcast_attention=upcast, norm_num_groups=32)


@dataclass
class BackboneConfig:
    """Stable Diffusion's UNet + VAE and the CLIP image encoder, as config dicts.

    `unet` is the *base* UNet config (in_channels = latent channels); the model widens conv_in
    to twice that to take the input view's latent. `pretrained_base` / `pretrained_image_encoder`
    (a local diffusers folder or a hub id) are where `MultiViewDiffusion.from_base` loads weights."""
    unet: dict
    vae: dict
    image_encoder: dict          # transformers CLIPVisionConfig fields
    scheduler: dict = field(default_factory=_sd_scheduler)
    resolution: int = 256        # side of the square generated views, pixels
    pretrained_base: str | None = None
    pretrained_image_encoder: str | None = None

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def latent_size(self) -> int:
        return self.resolution // self.vae_scale_factor

    @property
    def latent_channels(self) -> int:
        return int(self.vae.get("latent_channels", 4))

    @property
    def n_levels(self) -> int:
        """Feature resolutions of the UNet: latent_size / 2**level for level < n_levels."""
        return len(self.unet["block_out_channels"])


@dataclass
class CameraEncoderConfig:
    """Target camera (relative to the input camera and the head frame) + timestep -> an
    embedding added to the UNet's time embedding (so to every resnet's features of that view),
    and a smaller embedding for the volume networks."""
    hidden_dim: int = 256
    volume_emb_dim: int = 256


@dataclass
class VolumeConfig:
    """The appearance / hybrid volume: a V^3 vertex grid over a cube of half side
    `half_extent_m` centred on the head mesh's bounding-box centre (head frame, metres)."""
    resolution: int = 32
    half_extent_m: float = 0.17
    view_feature_channels: int = 32     # per-view 2D features unprojected into the grid
    channels: int = 64                  # hybrid volume channels
    net_channels: tuple[int, ...] = (64, 128)   # 3D UNet of the volume (one level per entry)


@dataclass
class GeometryConfig:
    """The head-mesh prior: surface points voxelised on the volume grid, a submanifold sparse
    3D ConvNet, and a zero-initialised output layer added to the appearance volume."""
    enabled: bool = True
    channels: int = 32
    n_blocks: int = 2
    n_surface_points: int = 20000
    backend: str = "auto"               # "auto" (spconv on CUDA, else torch), "spconv", "torch"


@dataclass
class FrustumConfig:
    """Per-view frustum volumes (FrustumTV3DNet-like): the hybrid volume sampled at `depth`
    depths along every latent pixel's ray, then a light 3D network with one output per UNet
    level (depth and side halve per level); injected by depth-wise attention."""
    depth: int = 48
    channels: tuple[int, ...] = (64, 128, 256, 256)   # one per UNet level
    attention_heads: int = 4
    attention_head_dim: int = 32


@dataclass
class MultiViewAttentionConfig:
    """3D self-attention across all views' tokens in the UNet's self-attention layers."""
    enabled: bool = True
    include_input_view: bool = True     # the input view joins the joint pass as view 0


@dataclass
class MVDiffusionConfig:
    backbone: BackboneConfig
    camera: CameraEncoderConfig = field(default_factory=CameraEncoderConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    frustum: FrustumConfig = field(default_factory=FrustumConfig)
    attention: MultiViewAttentionConfig = field(default_factory=MultiViewAttentionConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        b = self.backbone
        if b.resolution % (b.vae_scale_factor * 2 ** (b.n_levels - 1)):
            raise ValueError(f"resolution {b.resolution} must be divisible by "
                             f"{b.vae_scale_factor * 2 ** (b.n_levels - 1)} (VAE and UNet levels)")
        if len(self.frustum.channels) != b.n_levels:
            raise ValueError(f"frustum.channels needs one entry per UNet level ({b.n_levels}), "
                             f"got {len(self.frustum.channels)}")
        if self.frustum.depth % 2 ** (b.n_levels - 1):
            raise ValueError(f"frustum.depth {self.frustum.depth} must halve {b.n_levels - 1} times")
        if self.volume.resolution % 2 ** (len(self.volume.net_channels) - 1):
            raise ValueError("volume.resolution must halve once per volume.net_channels level")
        if self.geometry.backend not in ("auto", "spconv", "torch"):
            raise ValueError(f"geometry.backend must be auto, spconv or torch, "
                             f"not {self.geometry.backend!r}")
        if b.unet.get("in_channels", 4) != b.latent_channels:
            raise ValueError("backbone.unet is the base UNet: in_channels must equal the VAE's "
                             "latent channels (the model widens conv_in itself)")

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format_version"] = FORMAT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MVDiffusionConfig":
        """The config from its JSON form (`to_dict`); unknown sections and keys are errors
        (ConfigError, a ValueError) that name them."""
        d = dict(d)
        version = d.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"checkpoint config format {version} is newer than this code "
                             f"({FORMAT_VERSION}); update gen3dface")
        if "backbone" not in d:
            raise ConfigError("the model config has no backbone section", "", ("backbone",))
        # strict (backend/config_loader.py): an unknown section or key is an error naming it
        return build(cls, d)

    def save(self, folder: str | Path) -> None:
        Path(folder, CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "MVDiffusionConfig":
        p = Path(path)
        if p.is_dir():
            p = p / CONFIG_NAME
        return cls.from_dict(json.loads(p.read_text()))

    # ---- presets -----------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides) -> "MVDiffusionConfig":
        """A CPU test model: 16x16 views, latent 8x8 (VAE factor 2), two UNet levels."""
        backbone = BackboneConfig(
            unet=dict(sample_size=8, in_channels=4, out_channels=4,
                      down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                      up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                      block_out_channels=[16, 32], layers_per_block=1, cross_attention_dim=16,
                      attention_head_dim=8, norm_num_groups=8),
            vae=dict(in_channels=3, out_channels=3, latent_channels=4,
                     down_block_types=["DownEncoderBlock2D"] * 2,
                     up_block_types=["UpDecoderBlock2D"] * 2,
                     block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
                     sample_size=16, scaling_factor=0.18215),
            image_encoder=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, image_size=16, patch_size=8,
                               projection_dim=16),
            resolution=16)
        cfg = cls(backbone=backbone,
                  camera=CameraEncoderConfig(hidden_dim=16, volume_emb_dim=8),
                  volume=VolumeConfig(resolution=8, view_feature_channels=4, channels=8,
                                      net_channels=(8, 8)),
                  geometry=GeometryConfig(channels=8, n_blocks=1, n_surface_points=2000),
                  frustum=FrustumConfig(depth=8, channels=(8, 8), attention_heads=2,
                                        attention_head_dim=4))
        for k, v in overrides.items():
            setattr(cfg, k, v)
        cfg.validate()
        return cfg

    @classmethod
    def sd15(cls, pretrained_base: str | None = "stable-diffusion-v1-5/stable-diffusion-v1-5",
             pretrained_image_encoder: str | None = "openai/clip-vit-large-patch14",
             resolution: int = 256) -> "MVDiffusionConfig":
        backbone = BackboneConfig(
            unet=_sd_unet(768, 8, linear_proj=False, upcast=False), vae=_sd_vae(),
            image_encoder=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                               num_attention_heads=16, image_size=224, patch_size=14,
                               projection_dim=768, hidden_act="quick_gelu"),
            scheduler=_sd_scheduler("epsilon"), resolution=resolution,
            pretrained_base=pretrained_base, pretrained_image_encoder=pretrained_image_encoder)
        return cls(backbone=backbone)

    @classmethod
    def sd21(cls, pretrained_base: str | None = "stabilityai/stable-diffusion-2-1-base",
             pretrained_image_encoder: str | None = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
             resolution: int = 256) -> "MVDiffusionConfig":
        backbone = BackboneConfig(
            unet=_sd_unet(1024, [5, 10, 20, 20], linear_proj=True, upcast=False), vae=_sd_vae(),
            image_encoder=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                               num_attention_heads=16, image_size=224, patch_size=14,
                               projection_dim=1024, hidden_act="gelu"),
            scheduler=_sd_scheduler("epsilon"), resolution=resolution,
            pretrained_base=pretrained_base, pretrained_image_encoder=pretrained_image_encoder)
        return cls(backbone=backbone)
