"""Training configuration: one dataclass per part, read from TOML or JSON.

    [model]   which Gen3D-Face model to build or load, and the base to initialise from
    [data]    data/dataset.py's MultiViewDataConfig (dataset folders, views, image size)
    [synth]   optional: synthesise the dataset in data.roots[0] first when it is missing
    [optim]   the paper's AdamW recipe (UNet 1e-6 -> 5e-5 over 100 steps, others 5e-4)
    [train]   steps, batch, precision, checkpoints, logs, samples

Unknown sections and keys are errors that name them (a typo must not silently fall back to a
default; backend/config_loader.py, shared with the model's and the reconstruction's configs).
Paths are relative to the config file's folder.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config_loader import ConfigError, build  # noqa: F401 (ConfigError: callers catch it)
from ..data.dataset import MultiViewDataConfig
from ..synth.ict_heads import SynthConfig

MODEL_PRESETS = ("tiny", "sd15", "sd21")
PRECISIONS = ("no", "fp16", "bf16")


@dataclass
class ModelSpec:
    preset: str = "sd15"                 # MVDiffusionConfig preset: "tiny" | "sd15" | "sd21"
    base: str | None = None              # Stable Diffusion folder / hub id (unet/ vae/ scheduler/)
    image_encoder: str | None = None     # CLIPVisionModelWithProjection folder / hub id
    init_from: str | None = None         # a Gen3D-Face checkpoint to continue from instead
    resolution: int | None = None        # override the preset's view resolution
    overrides: dict = field(default_factory=dict)   # {part: {field: value}} on the preset


@dataclass
class OptimConfig:
    unet_lr: float = 5e-5
    unet_lr_start: float = 1e-6
    warmup_steps: int = 100
    other_lr: float = 5e-4
    weight_decay: float = 1e-2
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0


@dataclass
class TrainLoopConfig:
    output_dir: str = "runs/gen3dface"
    max_steps: int = 48000               # the paper trains 48k iterations
    batch_size: int = 8                  # global batch (all processes x accumulation)
    grad_accum: int = 1
    mixed_precision: str = "bf16"        # "no" | "fp16" | "bf16"
    gradient_checkpointing: bool = True   # recompute UNet blocks in backward: less memory
    cond_drop_prob: float = 0.1          # image-condition dropout for classifier-free guidance
    seed: int = 0
    num_workers: int = 4
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    sample_every: int = 1000             # 0: no sample grids
    sample_steps: int = 20               # DDIM steps for the sample grids
    sample_guidance: float = 3.0
    export_every: int = 0                # 0: export an inference checkpoint only at the end
    resume: str = "auto"                 # "auto" (latest in output_dir) | "none" | a folder
    find_unused_parameters: bool = False
    torch_threads: int = 0               # >0: torch.set_num_threads (CPU runs on busy machines)
    eval_samples: int = 0                # >0: a fixed-draw loss on this many samples (no
    eval_every: int = 0                  #     condition drop) at the start, every eval_every
                                         #     steps and at the end: comparable across steps


@dataclass
class TrainConfig:
    model: ModelSpec = field(default_factory=ModelSpec)
    data: MultiViewDataConfig = field(default_factory=MultiViewDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    synth: SynthConfig | None = None

    def validate(self) -> "TrainConfig":
        if self.model.preset not in MODEL_PRESETS:
            raise ValueError(f"model.preset must be one of {MODEL_PRESETS}")
        if self.train.mixed_precision not in PRECISIONS:
            raise ValueError(f"train.mixed_precision must be one of {PRECISIONS}")
        if self.train.batch_size < 1 or self.train.grad_accum < 1 or self.train.max_steps < 1:
            raise ValueError("train: batch_size, grad_accum and max_steps must be >= 1")
        if self.data.roots:
            self.data.validate()
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["synth"] is None:
            del d["synth"]
        return d


def config_from_dict(d: dict, base_dir: str | Path | None = None) -> TrainConfig:
    """The training config from its tables (backend/config_loader.py: unknown sections and
    keys are errors that name them); paths relative to `base_dir`."""
    cfg = build(TrainConfig, d)
    if base_dir is not None:
        base = Path(base_dir)

        def rel(p):
            return p if p is None or Path(p).is_absolute() or "://" in p else str(base / p)
        cfg.data.roots = [rel(r) for r in cfg.data.roots]
        cfg.train.output_dir = rel(cfg.train.output_dir)
        for k in ("base", "image_encoder", "init_from"):
            v = getattr(cfg.model, k)
            if v and (base / v).exists():       # a local folder; else a hub id
                setattr(cfg.model, k, str(base / v))
        if cfg.train.resume not in ("auto", "none"):
            cfg.train.resume = rel(cfg.train.resume)
    return cfg.validate()


def load_config(path: str | Path) -> TrainConfig:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    if p.suffix.lower() == ".toml":
        import tomllib
        d = tomllib.loads(p.read_text())
    elif p.suffix.lower() == ".json":
        d = json.loads(p.read_text())
    else:
        raise ValueError(f"{p}: config files are .toml or .json")
    return config_from_dict(d, base_dir=p.resolve().parent)


# ----------------------------------------------------------------------------- TOML writing
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(d: dict, prefix: str = "") -> str:
    """A small TOML writer for nested dicts of scalars and lists (None values are left out)."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in d.items()
               if v is not None and not isinstance(v, dict)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, dict)]
    head = ([f"[{prefix}]"] if prefix and (scalars or not tables) else []) + scalars
    chunks = ["\n".join(head)] if head else []
    for k, v in tables:
        chunks.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n\n".join(chunks)
