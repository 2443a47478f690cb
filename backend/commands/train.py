"""`gen3dface train CONFIG`: train the multi-view model (paper section 3.2, "Implementation").

    gen3dface train configs/smoke_cpu.toml            one process (CPU or one GPU)
    accelerate launch --multi_gpu --num_processes 8 -m gen3dface.backend.cli train CONFIG
    torchrun --nproc_per_node 8 -m gen3dface.backend.cli train CONFIG
    gen3dface train --example-config > my_run.toml    a full config with every field

See docs/TRAINING.md for data preparation, the recipe and expected times.
"""
from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train the Gen3D-Face multi-view model from a TOML/JSON config",
        description="Train the multi-view diffusion model. Multi-GPU / multi-node: start this "
                    "command with `accelerate launch` or `torchrun` (docs/TRAINING.md).")
    p.add_argument("config", nargs="?", help="training config (.toml or .json)")
    p.add_argument("--example-config", action="store_true",
                   help="print a complete example config (TOML) and exit")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--output-dir", help="override train.output_dir")
    p.add_argument("--resume", help="auto | none | a checkpoint folder (override train.resume)")
    p.set_defaults(func=handle)


def example_config() -> str:
    from ..data.dataset import MultiViewDataConfig
    from ..train.config import TrainConfig, to_toml
    cfg = TrainConfig(data=MultiViewDataConfig(roots=["data/facescape_mv", "data/panohead_mv"],
                                               repeats=[4, 1]))
    cfg.model.base = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    cfg.model.image_encoder = "openai/clip-vit-large-patch14"
    head = ("# gen3dface train: every field with its default (the paper's recipe).\n"
            "# Sections: model, data, optim, train (and optionally synth). See "
            "docs/TRAINING.md.\n\n")
    return head + to_toml(cfg.to_dict()) + "\n"


def handle(args) -> int:
    if args.example_config:
        sys.stdout.write(example_config())
        return 0
    if not args.config:
        print("error: give a CONFIG file (or --example-config)", file=sys.stderr)
        return 2
    from ..train.config import load_config
    from ..train.loop import Trainer
    try:
        cfg = load_config(args.config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.max_steps:
        cfg.train.max_steps = args.max_steps
    if args.output_dir:
        cfg.train.output_dir = args.output_dir
    if args.resume:
        cfg.train.resume = args.resume
    result = Trainer(cfg, log=lambda m: print(m, flush=True)).run()
    print(f"done: {result['step']} steps; inference checkpoint: {result['model_dir']}")
    return 0
