"""Held-out evaluation of the multi-view model: PSNR and SSIM of generated views against the
ground-truth renders of identities the model never saw in training.

    # 1. held-out identities: the training config's [synth] section with a disjoint seed
    python scripts/eval_mvdiff.py synth-heldout --config CONFIG --out DIR --identities N
    # 2. the trained checkpoint and the untrained baseline, one table
    python scripts/eval_mvdiff.py eval --checkpoint RUN/model --untrained --data DIR \
        [--steps 50 --sampler ddim --guidance 3 --json results.json --save-images IMG_DIR]

Train / held-out split. Synthetic ICT identity i of a dataset synthesised with seed s is drawn
from numpy's default_rng([s, i]) (backend/synth/ict_heads.py). `synth-heldout` writes the
held-out set with seed s + HELDOUT_SEED_OFFSET (1_000_000), so its identities come from other
random streams than every training set made with seeds below the offset. The folder names
repeat (ict_00000, ...), so the check does not trust names: `eval` fingerprints every
identity by what identifies the head (synthetic: the head seed plus the identity and
expression coefficients in identity.json; other sources: source + identity name) and refuses
to run when a held-out fingerprint occurs in the training data (the data roots of the run's
config.json next to the checkpoint, of --config, and of --train-data).

What is compared. For each held-out identity the input view is its most frontal input
candidate (smallest |azimuth| + |elevation|), with the prior mesh estimated from that view;
the targets are all its other views (or --max-targets of them, evenly spaced in azimuth
order), generated at their ground-truth cameras, --views-per-pass at a time (default: the
training's data.n_target_views), seed = --seed + 1000 * identity index + pass index.

Images and alpha. Every view is cropped and resized to the model's R x R exactly as the
training loader does (data/dataset.py crop_resize), then its RGBA is composited on the
training background (white unless --background): rgb * alpha + background * (1 - alpha).
The model generates RGB on that background, so ground truth and prediction are compared as
R x R x 3 float images in [0, 1] over the whole square (background pixels included; the
"white" reference row shows how much of the score the background alone gets).
PSNR: skimage.metrics.peak_signal_noise_ratio with data_range 1 (inf for identical images);
SSIM: skimage.metrics.structural_similarity, channel_axis -1, data_range 1, a 7-pixel
window (smaller odd window for images under 7 px).

Reference rows, so the numbers have context (not models):
    input_view     the input view itself, as the prediction for every target
    mean_colour    a flat image of the input view's mean colour
    white          the background alone (an empty prediction)
    vae_roundtrip  decode(encode(ground truth)) through the model's frozen VAE: the best the
                   latent model could do with that VAE (a ceiling, per model)

Layouts: images HxWx3 float64 in [0, 1], rows top-to-bottom; torch tensors (N, 3, R, R).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELDOUT_SEED_OFFSET = 1_000_000
REFERENCES = ("input_view", "mean_colour", "white", "vae_roundtrip")


# ----------------------------------------------------------------------------- metrics
def _check_pair(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape or gt.ndim != 3 or gt.shape[2] != 3:
        raise ValueError(f"images must both be HxWx3, got {gt.shape} and {pred.shape}")


def psnr(gt: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB of two HxWx3 float images in [0, 1]; inf when they are identical."""
    from skimage.metrics import mean_squared_error, peak_signal_noise_ratio
    _check_pair(gt, pred)
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    if mean_squared_error(gt, pred) == 0.0:
        return math.inf
    return float(peak_signal_noise_ratio(gt, pred, data_range=1.0))


def ssim(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean SSIM of two HxWx3 float images in [0, 1] (7-pixel window, or the largest odd
    window that fits images smaller than that)."""
    from skimage.metrics import structural_similarity
    _check_pair(gt, pred)
    win = min(7, min(gt.shape[:2]) - (1 - min(gt.shape[:2]) % 2))
    if win < 3:
        raise ValueError(f"images of {gt.shape[:2]} are too small for SSIM")
    return float(structural_similarity(np.asarray(gt, np.float64), np.asarray(pred, np.float64),
                                       channel_axis=-1, data_range=1.0, win_size=win))


def summarize(values) -> dict:
    """{"mean", "std", "n"} (population std; inf propagates, so an exact match shows)."""
    v = np.asarray(list(values), np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    with np.errstate(invalid="ignore"):
        return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


# ----------------------------------------------------------------------------- the split
def heldout_synth_config(train_synth, n_identities: int):
    """The training [synth] section (SynthConfig) for the held-out set: same distribution,
    seed + HELDOUT_SEED_OFFSET."""
    if train_synth.seed >= HELDOUT_SEED_OFFSET:
        raise ValueError(f"training synth seed {train_synth.seed} is in the held-out range "
                         f"(>= {HELDOUT_SEED_OFFSET})")
    return replace(train_synth, seed=train_synth.seed + HELDOUT_SEED_OFFSET,
                   n_identities=int(n_identities))


def identity_fingerprint(record) -> str:
    """What identifies a head, independent of folder names (see the module doc)."""
    ex = record.extras or {}
    if "identity_coefficients" in ex:
        key = {"head_seed": ex.get("head_seed"), "identity": ex["identity_coefficients"],
               "expression": ex.get("expression_weights")}
    else:
        key = {"source": record.source, "identity": record.identity}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()


def fingerprints(roots) -> dict[str, str]:
    """{fingerprint: "root:identity"} over every identity of the dataset folders."""
    from gen3dface.backend.data.format import read_dataset
    out = {}
    for r in roots:
        for rec in read_dataset(r).identities:
            out[identity_fingerprint(rec)] = f"{r}:{rec.identity}"
    return out


def check_disjoint(heldout_roots, train_roots) -> int:
    """Raises ValueError naming the shared identities when a held-out identity is also in the
    training data; returns how many training identities were checked."""
    train = fingerprints(train_roots)
    shared = [f"{name} = {train[fp]}" for fp, name in fingerprints(heldout_roots).items()
              if fp in train]
    if shared:
        raise ValueError("held-out identities also occur in the training data: "
                         + "; ".join(shared[:5]) + (" ..." if len(shared) > 5 else ""))
    return len(train)


# ----------------------------------------------------------------------------- data
def view_image(identity, view, size: int, background: float):
    """-> (HxWx3 float64 in [0, 1] composited on `background`, K (3, 3)), as the loader."""
    from gen3dface.backend.data.dataset import crop_resize
    from gen3dface.backend.data.format import load_rgba
    rgba, k = crop_resize(load_rgba(identity, view), view.intrinsics, size)
    rgba = rgba.astype(np.float64) / 255.0
    a = rgba[..., 3:4]
    return rgba[..., :3] * a + background * (1.0 - a), k


def pick_views(identity, max_targets: int = 0):
    """(input view, target views) as described in the module doc."""
    cands = [v for v in identity.views if v.input_candidate] or list(identity.views)
    inp = min(cands, key=lambda v: (abs(v.azimuth_deg) + abs(v.elevation_deg), v.name))
    targets = sorted((v for v in identity.views if v.name != inp.name),
                     key=lambda v: (v.azimuth_deg, v.elevation_deg, v.name))
    if max_targets and len(targets) > max_targets:
        idx = np.linspace(0, len(targets) - 1, max_targets).round().astype(int)
        targets = [targets[i] for i in idx]
    return inp, targets


# ----------------------------------------------------------------------------- models
def resolve_checkpoint(path) -> Path:
    """A run folder -> its exported model/ if there is one, else its newest checkpoints/step_*;
    an inference checkpoint or a training checkpoint folder as it is."""
    p = Path(path)
    if (p / "config.json").is_file() and not (p / "gen3dface_mvdiff.json").is_file():
        if (p / "model" / "gen3dface_mvdiff.json").is_file():
            return p / "model"
        steps = sorted(d for d in (p / "checkpoints").glob("step_*")
                       if (d / "trainer_state.json").is_file())   # written last: complete
        if steps:
            return steps[-1]
    return p


def load_run_config(checkpoint: Path):
    """The TrainConfig saved by the trainer in the run folder that holds `checkpoint`
    (<run>/model or <run>/checkpoints/step_N), or None."""
    from gen3dface.backend.train.config import config_from_dict
    for d in (Path(checkpoint).parent, Path(checkpoint).parent.parent):
        if (d / "config.json").is_file():
            return config_from_dict(json.loads((d / "config.json").read_text()))
    return None


def load_trained(checkpoint: Path, run_cfg):
    """An inference checkpoint (MultiViewDiffusion.from_pretrained), or a training checkpoint
    (accelerate state: the run's model rebuilt from its config, then its weights loaded), so a
    run cut short by a time limit can still be evaluated at its newest checkpoint."""
    from gen3dface.backend.mvdiff.model import MultiViewDiffusion
    if (checkpoint / "gen3dface_mvdiff.json").is_file():
        return MultiViewDiffusion.from_pretrained(checkpoint)
    weights = checkpoint / "model.safetensors"
    if not weights.is_file() or run_cfg is None:
        raise FileNotFoundError(f"{checkpoint}: neither an inference checkpoint nor a training "
                                f"checkpoint with model.safetensors and the run's config.json")
    from safetensors.torch import load_file
    model = untrained_model(run_cfg)
    state = load_file(str(weights))
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
    return model.eval()


def untrained_model(cfg):
    """The model exactly as the trainer initialises it: accelerate's set_seed(train.seed), then
    train/loop.py build_model (random weights for "tiny", the base for SD presets)."""
    from accelerate.utils import set_seed

    from gen3dface.backend.train.loop import build_model
    set_seed(cfg.train.seed)
    return build_model(cfg.model)


def _tensor(images):
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2),
                                                 np.float32))


def _numpy(x):
    return x.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float64)


def generate(model, identity, inp, targets, args, id_index: int, device):
    """-> (input image, [gt images], [generated images], {reference: [images]})."""
    import torch

    from gen3dface.backend.data.format import PriorMesh
    from gen3dface.backend.mvdiff.sampling import SamplerConfig, sample_views
    from gen3dface.backend.train.objective import k_to_vec
    R = model.resolution
    x_in, k_in = view_image(identity, inp, R, args.background)
    gts, ks = zip(*(view_image(identity, v, R, args.background) for v in targets))
    prior_path = identity.prior_path(inp.name)
    if prior_path is None:
        raise ValueError(f"identity {identity.identity}: no prior mesh")
    prior = PriorMesh.load(prior_path)
    f32 = dict(dtype=torch.float32, device=device)
    with torch.no_grad():
        cond = model.condition(_tensor([x_in]).to(device),
                               torch.as_tensor(prior.vertices, **f32)[None],
                               torch.as_tensor(prior.faces.astype(np.int64), device=device))
        in_w2c = torch.as_tensor(inp.w2c_array, **f32)[None]
        in_k = k_to_vec(torch.as_tensor(k_in, **f32))[None]
        sc = SamplerConfig(sampler=args.sampler, steps=args.steps, guidance=args.guidance)
        sc.validate()
        out = []
        per = args.views_per_pass
        for j in range(0, len(targets), per):
            chunk = range(j, min(j + per, len(targets)))
            w2c = torch.as_tensor(np.stack([targets[i].w2c_array for i in chunk]), **f32)[None]
            kv = k_to_vec(torch.as_tensor(np.stack([ks[i] for i in chunk]), **f32))[None]
            lat = sample_views(model, cond, w2c, kv, in_w2c, in_k, sc,
                               seed=args.seed + 1000 * id_index + j // per)
            out += list(_numpy(model.decode_latents(lat[0])))
        roundtrip = _numpy(model.decode_latents(model.encode_images(_tensor(gts).to(device))))
    flat = np.broadcast_to(x_in.reshape(-1, 3).mean(0), x_in.shape)
    refs = {"input_view": [x_in] * len(gts), "mean_colour": [flat] * len(gts),
            "white": [np.full_like(x_in, args.background)] * len(gts),
            "vae_roundtrip": list(roundtrip)}
    return x_in, list(gts), out, refs


def evaluate_model(label: str, model, index, args, device, rows: list, images: dict) -> None:
    model = model.to(device=device, dtype=__import__("torch").float32).eval()
    for n, identity in enumerate(index.identities):
        inp, targets = pick_views(identity, args.max_targets)
        if not targets:
            continue
        t0 = time.time()
        x_in, gts, gen, refs = generate(model, identity, inp, targets, args, n, device)
        for i, v in enumerate(targets):
            row = {"model": label, "identity": identity.identity, "input_view": inp.name,
                   "view": v.name, "azimuth_deg": round(v.azimuth_deg, 2),
                   "elevation_deg": round(v.elevation_deg, 2),
                   "psnr": psnr(gts[i], gen[i]), "ssim": ssim(gts[i], gen[i])}
            for r in REFERENCES:
                row[f"{r}_psnr"] = psnr(gts[i], refs[r][i])
                row[f"{r}_ssim"] = ssim(gts[i], refs[r][i])
            rows.append(row)
        images.setdefault(identity.identity, {"input": x_in, "gt": gts})[label] = gen
        print(f"  {label}: {identity.identity} ({len(targets)} views) in {time.time() - t0:.1f} s",
              flush=True)


# ----------------------------------------------------------------------------- report
def summary_table(rows: list[dict]) -> dict:
    """{name: {"psnr": summary, "ssim": summary}} for every model and reference row
    (references once per model: vae_roundtrip depends on the model's VAE)."""
    out = {}
    for label in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == label]
        out[label] = {m: summarize(r[m] for r in mine) for m in ("psnr", "ssim")}
        for ref in REFERENCES:
            name = f"{label}/vae_roundtrip" if ref == "vae_roundtrip" else f"ref/{ref}"
            out.setdefault(name, {m: summarize(r[f"{ref}_{m}"] for r in mine)
                                  for m in ("psnr", "ssim")})
    return out


def format_table(summary: dict) -> str:
    lines = [f"{'prediction':<28} {'PSNR dB (mean ± std)':>22} {'SSIM (mean ± std)':>20} "
             f"{'views':>6}"]
    for name, s in summary.items():
        p, q = s["psnr"], s["ssim"]
        lines.append(f"{name:<28} {p['mean']:>13.2f} ± {p['std']:<6.2f} "
                     f"{q['mean']:>11.3f} ± {q['std']:<6.3f} {p['n']:>6d}")
    return "\n".join(lines)


def save_grids(images: dict, labels: list[str], folder: Path) -> None:
    """Per identity: a row of ground truth (first cell: the input), then a row per model."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for ident, d in images.items():
        blank = np.ones_like(d["input"])
        rows = [[d["input"]] + d["gt"]] + [[blank] + d[lab] for lab in labels if lab in d]
        grid = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
        Image.fromarray((grid * 255 + 0.5).astype(np.uint8)).save(folder / f"{ident}.png")


# ----------------------------------------------------------------------------- commands
def cmd_synth_heldout(a) -> int:
    import os

    from gen3dface.backend.assets import find_head_model_file
    from gen3dface.backend.headmodel.ict import load_ict_npz
    from gen3dface.backend.synth.ict_heads import synthesize_dataset
    from gen3dface.backend.train.config import load_config
    os.environ.setdefault("GEN3DFACE_ASSETS", str(REPO.parent / "shared" / "data"))
    cfg = load_config(a.config)
    if cfg.synth is None:
        print("error: the config has no [synth] section", file=sys.stderr)
        return 2
    found = find_head_model_file(a.assets, prefer="ict_facekit")
    if found is None or found.kind != "ict_facekit":
        print("error: ICT-FaceKit not found (--assets DIR or GEN3DFACE_ASSETS)", file=sys.stderr)
        return 2
    hcfg = heldout_synth_config(cfg.synth, a.identities)
    t0 = time.time()
    synthesize_dataset(load_ict_npz(found.path), a.out, hcfg, overwrite=a.overwrite)
    n = check_disjoint([a.out], [r for r in cfg.data.roots if Path(r, "dataset.json").is_file()])
    print(f"wrote {a.identities} held-out identities (synth seed {hcfg.seed}) to {a.out} in "
          f"{time.time() - t0:.1f} s; disjoint from {n} training identities")
    return 0


def cmd_eval(a) -> int:
    import torch

    from gen3dface.backend.data.format import read_dataset
    from gen3dface.backend.train.config import load_config
    if not a.checkpoint and not a.untrained:
        print("error: give --checkpoint DIR and/or --untrained", file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if a.checkpoint:
        a.checkpoint = str(resolve_checkpoint(a.checkpoint))
    run_cfg = load_run_config(Path(a.checkpoint)) if a.checkpoint else None
    cfg = load_config(a.config) if a.config else run_cfg
    if a.untrained and cfg is None:
        print("error: --untrained needs --config (or a --checkpoint whose run folder has "
              "config.json)", file=sys.stderr)
        return 2
    train_roots = list(a.train_data or [])
    for c in (run_cfg, cfg):
        train_roots += list(c.data.roots) if c is not None else []
    train_roots = [r for r in dict.fromkeys(train_roots) if Path(r, "dataset.json").is_file()]
    if not train_roots:
        print("error: no training dataset found to check the split against (--train-data)",
              file=sys.stderr)
        return 2
    n_train = check_disjoint([a.data], train_roots)
    if not a.views_per_pass:
        a.views_per_pass = cfg.data.n_target_views if cfg is not None else 16
    index = read_dataset(a.data)
    print(f"held-out: {len(index.identities)} identities in {a.data}, disjoint from {n_train} "
          f"training identities in {', '.join(map(str, train_roots))}")
    print(f"checkpoint {a.checkpoint}; sampler {a.sampler}, {a.steps} steps, guidance {a.guidance}, "
          f"{a.views_per_pass} views per pass, device {device}")
    rows, images, models = [], {}, {}
    t0 = time.time()
    if a.checkpoint:
        models["trained"] = lambda: load_trained(Path(a.checkpoint), run_cfg)
    if a.untrained:
        models["untrained"] = lambda: untrained_model(cfg)
    for label, make in models.items():
        evaluate_model(label, make(), index, a, device, rows, images)
    summary = summary_table(rows)
    table = format_table(summary)
    print(table)
    print(f"({time.time() - t0:.1f} s)")
    if a.save_images:
        save_grids(images, list(models), Path(a.save_images))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({
            "checkpoint": a.checkpoint, "untrained": bool(a.untrained),
            "config": a.config, "data": a.data, "train_data": train_roots,
            "sampler": a.sampler, "steps": a.steps, "guidance": a.guidance,
            "views_per_pass": a.views_per_pass, "seed": a.seed, "background": a.background,
            "device": str(device), "summary": summary, "table": table, "per_view": rows},
            indent=1, default=lambda x: None if isinstance(x, float) and math.isinf(x) else x))
        print(f"wrote {a.json}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth-heldout", help="synthesise held-out ICT identities")
    s.add_argument("--config", required=True, help="the training config (its [synth] section)")
    s.add_argument("--out", required=True)
    s.add_argument("--identities", type=int, default=8)
    s.add_argument("--assets", help="folder holding ict_facekit/ict_facekit_v1.npz")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=cmd_synth_heldout)
    e = sub.add_parser("eval", help="PSNR / SSIM on held-out identities")
    e.add_argument("--checkpoint", help="a run folder (its model/, else its newest "
                   "checkpoint), <run>/model, or <run>/checkpoints/step_N")
    e.add_argument("--untrained", action="store_true",
                   help="also evaluate the model as initialised before training (baseline)")
    e.add_argument("--config", help="training config (default: <checkpoint>/../config.json)")
    e.add_argument("--data", required=True, help="held-out dataset folder")
    e.add_argument("--train-data", nargs="*", help="more training folders to check against")
    e.add_argument("--sampler", default="ddim", choices=("ddim", "dpmsolver++"))
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--guidance", type=float, default=3.0)
    e.add_argument("--views-per-pass", type=int, default=0)
    e.add_argument("--max-targets", type=int, default=0, help="0: all non-input views")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--background", type=float, default=1.0)
    e.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    e.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    e.add_argument("--json", help="write the summary and per-view figures here")
    e.add_argument("--save-images", help="folder for per-identity PNG grids")
    e.set_defaults(func=cmd_eval)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
