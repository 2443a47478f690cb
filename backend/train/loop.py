"""The training loop: accelerate (one CPU process, one GPU, many GPUs, many nodes: the same
code; launch with `accelerate launch` or `torchrun`), the paper's AdamW recipe, bf16 mixed
precision, gradient checkpointing, checkpoints with exact resume, TensorBoard logs, periodic
sample grids, and an inference checkpoint (`MultiViewDiffusion.save_pretrained`) at the end.

Output folder:
    <output_dir>/config.json                 the resolved TrainConfig
    <output_dir>/checkpoints/step_XXXXXXX/   accelerate state (model, optimizer, LR schedule,
                                             RNG) + trainer_state.json {step, epoch, batch}
    <output_dir>/logs/                       TensorBoard (loss, learning rates, grad norm)
    <output_dir>/samples/step_XXXXXXX.png    sample grids: input | ground truth | generated
    <output_dir>/model/                      inference checkpoint (from_pretrained folder)

Reproducibility: the data order is a function of (seed, epoch) (accelerate's seedable
sampler), each sample's views of (seed, epoch, index) (data/dataset.py), and each step's
timesteps / noises / condition drop of (seed, step, process): a resumed run continues exactly
where the interrupted one would have gone.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..config_loader import update as config_update
from ..data.dataset import MultiViewDataset
from .config import ModelSpec, TrainConfig
from .objective import MultiViewObjective, collate, k_to_vec
from .schedule import lr_multipliers

STATE_FILE = "trainer_state.json"


def build_model(spec: ModelSpec):
    """The model to train: a Gen3D-Face checkpoint (`init_from`), or a preset built on a Stable
    Diffusion base (`base`, else the preset's pretrained_base hub id) with the new modules
    initialised so the model starts out as the base; the "tiny" preset without a base starts
    from random weights (tests)."""
    from ..mvdiff.config import MVDiffusionConfig
    from ..mvdiff.model import MultiViewDiffusion
    if spec.init_from:
        model = MultiViewDiffusion.from_pretrained(spec.init_from)
        model.train()
        return model
    cfg = getattr(MVDiffusionConfig, spec.preset)()
    if spec.resolution:
        cfg.backbone.resolution = int(spec.resolution)
    # {part: {field: value}} on the preset, by the strict config loader (unknown names fail)
    config_update(cfg, spec.overrides or {}, "model.overrides")
    cfg.validate()
    base = spec.base or (None if spec.preset == "tiny" else cfg.backbone.pretrained_base)
    if base:
        return MultiViewDiffusion.from_base(cfg, base, spec.image_encoder)
    return MultiViewDiffusion(cfg)


def parameter_groups(model, unet_lr: float, other_lr: float, weight_decay: float):
    unet = [p for p in model.unet.parameters() if p.requires_grad]
    ids = {id(p) for p in unet}
    other = [p for name, mod in model.trainable_modules().items() if name != "unet"
             for p in mod.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": unet, "lr": unet_lr, "weight_decay": weight_decay, "name": "unet"},
            {"params": other, "lr": other_lr, "weight_decay": weight_decay, "name": "other"}]


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        (seed * 1_000_003 + step * 7919 + micro * 104_729 + rank * 15_485_863) % (2 ** 63))


def latest_checkpoint(output_dir: Path) -> Path | None:
    d = output_dir / "checkpoints"
    done = sorted(p for p in d.glob("step_*") if (p / STATE_FILE).is_file()) if d.is_dir() else []
    return done[-1] if done else None


def tile(images: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = images[0].shape[:2]
    rows = math.ceil(len(images) / cols)
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return out


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> HxWx3 uint8."""
    return (x.clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def sample_grid(model, batch: dict, steps: int, guidance: float, seed: int = 0) -> np.ndarray:
    """Rows per sample: [input, ground-truth targets...], [blank, generated targets...]."""
    from ..mvdiff.sampling import SamplerConfig, sample_views
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    inp = ((batch["input_image"].to(dev).float() + 1) / 2).clamp(0, 1)
    tgt = ((batch["target_images"].to(dev).float() + 1) / 2).clamp(0, 1)
    verts = batch.get("prior_vertices")
    cond = model.condition(inp, None if verts is None else verts.to(dev).float(),
                           None if verts is None else batch["prior_faces"].to(dev))
    lat = sample_views(model, cond, batch["target_w2c"].to(dev).float(),
                       k_to_vec(batch["target_K"].to(dev).float()),
                       batch["input_w2c"].to(dev).float(),
                       k_to_vec(batch["input_K"].to(dev).float()),
                       SamplerConfig(sampler="ddim", steps=steps, guidance=guidance), seed=seed)
    b, v = lat.shape[:2]
    gen = model.decode_latents(lat.reshape(b * v, *lat.shape[2:])).reshape(b, v, 3, *tgt.shape[-2:])
    cells = []
    blank = np.full_like(_to_uint8(inp[0]), 255)
    for i in range(b):
        cells += [_to_uint8(inp[i])] + [_to_uint8(t) for t in tgt[i]]
        cells += [blank] + [_to_uint8(g) for g in gen[i]]
    if was_training:
        model.train()
    return tile(cells, v + 1)


def _flat_hparams(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_hparams(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        elif isinstance(v, (list, tuple)):
            out[key] = str(list(v))
    return out


class Trainer:
    def __init__(self, cfg: TrainConfig, log=print):
        self.cfg = cfg.validate()
        self.log = log

    # ---- data -------------------------------------------------------------------------
    def _ensure_data(self, accelerator) -> None:
        cfg = self.cfg
        root = Path(cfg.data.roots[0]) if cfg.data.roots else None
        if cfg.synth is None or root is None or (root / "dataset.json").is_file():
            return
        if accelerator.is_main_process:
            from ..assets import find_head_model_file
            from ..headmodel.ict import load_ict_npz
            from ..synth.ict_heads import synthesize_dataset
            found = find_head_model_file(prefer="ict_facekit")
            if found is None or found.kind != "ict_facekit":
                raise FileNotFoundError(
                    "[synth] needs ICT-FaceKit: run `gen3dface assets fetch` or set "
                    "GEN3DFACE_ASSETS to a folder holding ict_facekit/ict_facekit_v1.npz")
            t0 = time.time()
            synthesize_dataset(load_ict_npz(found.path), root, cfg.synth)
            self.log(f"synthesised {cfg.synth.n_identities} identities into {root} "
                     f"in {time.time() - t0:.1f} s")
        accelerator.wait_for_everyone()

    # ---- the run ----------------------------------------------------------------------
    def _accelerator(self, out: Path):
        """accelerate's Accelerator for this run: precision, accumulation, tensorboard logs in
        out/logs, seedable sampling."""
        from accelerate import Accelerator
        from accelerate.utils import (DataLoaderConfiguration, DistributedDataParallelKwargs,
                                      ProjectConfiguration)
        tc = self.cfg.train
        return Accelerator(
            mixed_precision=tc.mixed_precision, gradient_accumulation_steps=tc.grad_accum,
            log_with="tensorboard",
            project_config=ProjectConfiguration(project_dir=str(out),
                                                logging_dir=str(out / "logs")),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            step_scheduler_with_optimizer=False,
            kwargs_handlers=[DistributedDataParallelKwargs(
                find_unused_parameters=tc.find_unused_parameters)])

    def _model_data_optimizer(self, per_device: int, world: int):
        """The model (train mode), its dataset and loader, the objective, the AdamW parameter
        groups, optimizer and warm-up schedule, before accelerate prepares them."""
        cfg, tc = self.cfg, self.cfg.train
        model = build_model(cfg.model)
        if tc.gradient_checkpointing:
            model.unet.enable_gradient_checkpointing()
        model.train()
        data_cfg = replace(cfg.data, image_size=model.resolution, return_prior_mesh=True)
        dataset = MultiViewDataset(data_cfg)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=per_device, shuffle=True, collate_fn=collate,
            num_workers=tc.num_workers, drop_last=len(dataset) >= per_device * world,
            generator=torch.Generator().manual_seed(tc.seed))
        objective = MultiViewObjective(model, tc.cond_drop_prob)
        oc = cfg.optim
        groups = parameter_groups(model, oc.unet_lr, oc.other_lr, oc.weight_decay)
        optimizer = torch.optim.AdamW(groups, betas=tuple(oc.betas), eps=oc.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_multipliers(oc.unet_lr_start, oc.unet_lr, oc.warmup_steps))
        return dataset, loader, objective, groups, optimizer, scheduler

    def _resume(self, accelerator, out: Path):
        """(checkpoint folder or None, step, epoch, batches of that epoch already done):
        train.resume "auto" takes the latest checkpoint in out, "none" none, else a folder."""
        tc = self.cfg.train
        resume = None
        if tc.resume == "auto":
            resume = latest_checkpoint(out)
        elif tc.resume != "none":
            resume = Path(tc.resume)
        if resume is None:
            return None, 0, 0, 0
        accelerator.load_state(str(resume))
        st = json.loads((resume / STATE_FILE).read_text())
        step, epoch, skip = int(st["step"]), int(st["epoch"]), int(st["batch"])
        self.log(f"resumed from {resume} at step {step}")
        return resume, step, epoch, skip

    def run(self) -> dict:
        from accelerate.utils import set_seed
        cfg, tc = self.cfg, self.cfg.train
        out = Path(tc.output_dir)
        accelerator = self._accelerator(out)
        world = accelerator.num_processes
        if tc.batch_size % (world * tc.grad_accum):
            raise ValueError(f"train.batch_size {tc.batch_size} is not divisible by "
                             f"processes x grad_accum = {world * tc.grad_accum}")
        per_device = tc.batch_size // (world * tc.grad_accum)
        set_seed(tc.seed)
        if tc.torch_threads > 0:
            torch.set_num_threads(tc.torch_threads)
        self._ensure_data(accelerator)

        dataset, loader, objective, groups, optimizer, scheduler = \
            self._model_data_optimizer(per_device, world)
        oc = cfg.optim
        objective, optimizer, loader, scheduler = accelerator.prepare(
            objective, optimizer, loader, scheduler)
        raw = accelerator.unwrap_model(objective)

        resume, step, epoch, skip = self._resume(accelerator, out)
        batch_idx = skip
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
        accelerator.init_trackers("gen3dface", config=_flat_hparams(cfg.to_dict()))
        sample_batch = collate([dataset[i] for i in range(min(2, len(dataset)))]) \
            if tc.sample_every else None
        n_params = sum(p.numel() for g in groups for p in g["params"])
        self.log(f"training {n_params / 1e6:.2f} M parameters on {world} process(es), "
                 f"{per_device} samples per process per micro-step, {len(dataset)} samples/epoch")

        eval_batch = collate([dataset[i] for i in range(min(tc.eval_samples, len(dataset)))]) \
            if tc.eval_samples else None
        evals: list[tuple[int, float]] = []

        def evaluate():
            if eval_batch is None or not accelerator.is_main_process:
                return
            val = self._eval_loss(raw, eval_batch)
            evals.append((step, val))
            accelerator.log({"eval_loss": val}, step=step)
            self.log(f"step {step}: eval loss {val:.4f}")

        if resume is None:
            evaluate()
        losses: list[float] = []
        history: list[tuple[int, float]] = []
        t0, micro = time.time(), 0
        while step < tc.max_steps:
            dataset.set_epoch(epoch)
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            it = accelerator.skip_first_batches(loader, skip) if skip else loader
            batch_idx = skip
            skip = 0
            for batch in it:
                with accelerator.accumulate(objective):
                    rand = raw.draw(batch, step_generator(tc.seed, step, micro,
                                                          accelerator.process_index))
                    loss = objective(batch, rand)
                    accelerator.backward(loss)
                    grad_norm = None
                    if accelerator.sync_gradients and oc.max_grad_norm > 0:
                        grad_norm = accelerator.clip_grad_norm_(objective.parameters(),
                                                                oc.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                batch_idx += 1
                micro += 1
                losses.append(float(loss.detach()))
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                step += 1
                micro = 0
                if step % tc.log_every == 0 or step == tc.max_steps:
                    history.append((step, self._log_step(accelerator, optimizer, losses, t0,
                                                         grad_norm, step)))
                    losses, t0 = [], time.time()
                if tc.eval_every and step % tc.eval_every == 0 and step < tc.max_steps:
                    evaluate()
                self._periodic_saves(accelerator, raw.model, sample_batch, out, step, epoch,
                                     batch_idx)
                if step >= tc.max_steps:
                    break
            else:
                epoch += 1
                continue
            break
        evaluate()
        self._checkpoint(accelerator, out, step, epoch, batch_idx)
        self._export(accelerator, raw.model, out / "model")
        accelerator.end_training()
        return {"step": step, "history": history, "eval": evals, "model_dir": str(out / "model")}

    def _log_step(self, accelerator, optimizer, losses: list, t0: float, grad_norm,
                  step: int) -> float:
        """The mean loss since the last log over all processes, logged with the learning
        rates, speed and gradient norm; returns the mean."""
        tc = self.cfg.train
        mean = float(accelerator.gather(torch.tensor(
            [np.mean(losses)], device=accelerator.device)).mean())
        lrs = [g["lr"] for g in optimizer.param_groups]
        logs = {"loss": mean, "lr/unet": lrs[0], "lr/other": lrs[1],
                "steps_per_s": tc.log_every / max(time.time() - t0, 1e-9)}
        if grad_norm is not None:
            logs["grad_norm"] = float(grad_norm)
        accelerator.log(logs, step=step)
        self.log(f"step {step}/{tc.max_steps} loss {mean:.4f} "
                 f"lr_unet {lrs[0]:.2e} lr_other {lrs[1]:.2e}")
        return mean

    def _periodic_saves(self, accelerator, model, sample_batch, out: Path, step: int,
                        epoch: int, batch_idx: int) -> None:
        """After an optimizer step: the resumable checkpoint, the sample grid and the
        inference export, each at its own interval (the last step's are written by run)."""
        tc = self.cfg.train
        if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < tc.max_steps:
            self._checkpoint(accelerator, out, step, epoch, batch_idx)
        if tc.sample_every and step % tc.sample_every == 0 and accelerator.is_main_process:
            self._samples(accelerator, model, sample_batch, out, step)
        if tc.export_every and step % tc.export_every == 0:
            self._export(accelerator, model, out / "checkpoints" / f"step_{step:07d}" / "model")

    @torch.no_grad()
    def _eval_loss(self, objective, batch: dict) -> float:
        """Loss on fixed draws (seeded timesteps spread over the schedule, noises, no drop)."""
        was = objective.model.training
        objective.model.eval()
        g = torch.Generator().manual_seed(self.cfg.train.seed + 12345)
        vals = []
        for _ in range(4):
            rand = objective.draw(batch, g)
            rand["keep"][:] = True
            vals.append(float(objective(batch, rand)))
        objective.model.train(was)
        return float(np.mean(vals))

    # ---- outputs ------------------------------------------------------------------------
    def _checkpoint(self, accelerator, out: Path, step: int, epoch: int, batch: int) -> None:
        d = out / "checkpoints" / f"step_{step:07d}"
        accelerator.wait_for_everyone()
        accelerator.save_state(str(d))
        if accelerator.is_main_process:
            (d / STATE_FILE).write_text(json.dumps({"step": step, "epoch": epoch,
                                                    "batch": batch}))
            done = sorted(p for p in (out / "checkpoints").glob("step_*")
                          if (p / STATE_FILE).is_file())
            for old in done[:-max(1, self.cfg.train.keep_checkpoints)]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def _export(self, accelerator, model, folder: Path) -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            model.save_pretrained(folder)
            self.log(f"inference checkpoint written to {folder}")
        accelerator.wait_for_everyone()

    def _samples(self, accelerator, model, batch, out: Path, step: int) -> None:
        from PIL import Image
        grid = sample_grid(model, batch, self.cfg.train.sample_steps,
                           self.cfg.train.sample_guidance, seed=self.cfg.train.seed)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(out / "samples" / f"step_{step:07d}.png")
        for tracker in accelerator.trackers:
            writer = getattr(tracker, "writer", None)
            if writer is not None:
                writer.add_image("samples", grid, step, dataformats="HWC")
