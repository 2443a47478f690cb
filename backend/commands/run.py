"""`gen3dface run IMAGE -o OUT.glb`: the whole pipeline in this process, no server.

The pipeline runs on a worker thread; Ctrl-C sets its CancelToken (it stops at its next
check), and the command then exits 5 (cancelled) with the --json summary written.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from ...protocol.options import DEFAULTS, GENERATORS, OUTPUT_KINDS, QUALITIES, TEXTURE_SIZES
from .cli_support import (CommandSummary, EXIT_CANCELLED, EXIT_CODES_HELP, EXIT_OK,
                                   EXIT_SERVER, EXIT_USAGE, Interrupted, ProgressDisplay, Refused,
                                   call_cancellable, exit_code_for, output_problem,
                                   read_photo_and_rig, report_sidecar_notes, sidecar_path_for,
                                   write_json_summary, write_output)

# the job options' choices and defaults: protocol/options.py (pure Python, so `--help` and
# argparse need no torch import)
DEVICES = ("cpu", "cuda")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="make a head from one photo, in this process (no server)",
        description="Run the pipeline on one photo in this process and write a GLB "
                    "and its JSON sidecar (OUT.sidecar.json); --json writes a run summary.", epilog=EXIT_CODES_HELP)
    p.add_argument("image", help="photo of a face (PNG, JPEG or WebP)")
    p.add_argument("-o", "--output", required=True, help="where to write the GLB")
    p.add_argument("--rig", help="camera rig JSON (protocol/SPEC.md, 'Rig'); default: the photo's own camera")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu); "
                   "cuda[:N] needs a CUDA GPU")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--json", dest="json_path", help="write a machine-readable summary here")
    p.add_argument("--assets", help="folder with the head model and weights (see `gen3dface assets`)")
    p.add_argument("--checkpoint", help="folder of trained Gen3D-Face weights")
    p.add_argument("--generator", default=DEFAULTS["generator"], choices=GENERATORS,
                   help=f"default {DEFAULTS['generator']}")
    p.add_argument("--quality", default=DEFAULTS["quality"], choices=QUALITIES,
                   help=f"default {DEFAULTS['quality']}")
    p.add_argument("--texture-size", type=int, default=DEFAULTS["texture_size"],
                   help=f"{', '.join(map(str, TEXTURE_SIZES))} (default {DEFAULTS['texture_size']})")
    p.add_argument("--output-kind", default=DEFAULTS["output_kind"], choices=OUTPUT_KINDS,
                   help=f"default {DEFAULTS['output_kind']}")
    p.add_argument("--neutral", action="store_true",
                   help="rest pose: the GLB's shape-key weights all 0 (the sidecar keeps the "
                        "fitted weights)")
    p.add_argument("--delit-texture", action="store_true",
                   help="de-light the skin texture: the photo's lighting divided out, an albedo "
                        "for relighting (default: the photo's lighting kept)")
    p.add_argument("--texture-sources", metavar="PNG",
                   help="also write the skin texture's sources map here: a PNG in the "
                        "texture's UV layout, red where the photo gave the colour, green its "
                        "mirror twin, blue hair, dark the smooth fill (a mask to paint over "
                        "what was guessed)")
    p.add_argument("--neck-skin", action=argparse.BooleanOptionalAction,
                   default=DEFAULTS["neck_skin"],
                   help="paint the neck and shoulders below the jaw with skin where the photo "
                        "shows clothes (the default); --no-neck-skin: as the photo shows them")
    p.set_defaults(func=handle)


def device_problem(device: str) -> str | None:
    """Why the pipeline cannot run on `device` here, or None (checked before any work)."""
    name = device.split(":", 1)[0]
    if name not in DEVICES:
        return f"unknown --device {device!r}: use cpu or cuda (cuda:N for another GPU)"
    if name == "cuda":
        try:
            import torch
        except ImportError:
            return "--device cuda needs PyTorch with CUDA; it is not installed"
        if not torch.cuda.is_available():
            return ("--device cuda: no CUDA GPU is usable on this machine (torch.cuda."
                    "is_available() is False); use --device cpu, or `gen3dface submit` to a GPU backend")
        if ":" in device:
            idx = device.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                return (f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s)")
    return None


def png_output_problem(path: str, glb_path: str) -> str | None:
    """Why the texture-sources PNG cannot be written at `path`, or None."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        return f"--texture-sources must name a .png file, got {p.name!r}"
    if p.resolve() in (Path(glb_path).resolve(), sidecar_path_for(glb_path).resolve()):
        return "--texture-sources must not be the GLB or its sidecar"
    return output_problem(p)


def handle(args) -> int:
    image_path = Path(args.image)
    summary = CommandSummary(args.json_path, command="run", image=str(image_path),
                             output=str(args.output))
    finish, refuse = summary.finish, summary.refuse

    problem = (output_problem(args.output) or device_problem(args.device)
               or (args.texture_sources and png_output_problem(args.texture_sources, args.output)))
    if problem:
        return refuse(EXIT_USAGE, "USAGE", problem)
    if args.texture_size <= 0:
        return refuse(EXIT_USAGE, "USAGE", "--texture-size must be a positive number of pixels")
    try:
        image, rig = read_photo_and_rig(image_path, args.rig)
    except Refused as e:
        return refuse(e.exit_code, e.error_code, e.message)
    summary["image_sha256"] = hashlib.sha256(image).hexdigest()

    from ..contracts import CallbackSink, CancelToken, JobCancelled, PipelineError

    display = ProgressDisplay()
    cancel = CancelToken()

    def work():
        from ..pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

        options = JobOptions.from_dict({"generator": args.generator, "seed": args.seed,
                                        "quality": args.quality, "texture_size": args.texture_size,
                                        "output_kind": args.output_kind,
                                        "neutral": bool(args.neutral),
                                        "delit_texture": bool(args.delit_texture),
                                        "neck_skin": bool(args.neck_skin)})
        pipeline = HeadPipeline(PipelineConfig(assets_dir=args.assets, device=args.device,
                                               checkpoint=args.checkpoint))
        return pipeline.run(image, rig, options, CallbackSink(on_progress=display), cancel,
                            texture_sources=bool(args.texture_sources))

    try:
        result = call_cancellable(work, cancel)
    except Interrupted as e:
        display.done("interrupted (Ctrl-C): the pipeline was cancelled" if e.finished else
                     "interrupted (Ctrl-C): cancelled; the pipeline had not stopped yet")
        summary["error"] = {"code": "CANCELLED", "message": "interrupted (Ctrl-C)"}
        return finish(EXIT_CANCELLED)
    except PipelineError as e:
        display.done(f"error {e.code}: {e.message}")
        summary["error"] = {"code": e.code, "message": e.message}
        return finish(exit_code_for(e.code))
    except JobCancelled:
        display.done("cancelled")
        summary["error"] = {"code": "CANCELLED", "message": "cancelled"}
        return finish(EXIT_CANCELLED)
    except ImportError as e:
        display.done(f"error NOT_AVAILABLE: the pipeline cannot be loaded ({e})")
        summary["error"] = {"code": "NOT_AVAILABLE", "message": str(e)}
        return finish(EXIT_SERVER)
    sidecar_path = sidecar_path_for(args.output)
    writing = args.output
    try:
        write_output(args.output, result.glb)
        write_json_summary(sidecar_path, result.sidecar)
        if args.texture_sources and result.texture_sources is not None:
            from ..images import encode_png

            writing = args.texture_sources
            write_output(args.texture_sources, encode_png(result.texture_sources))
            summary["texture_sources"] = str(args.texture_sources)
    except OSError as e:
        message = f"cannot write {writing}: {e}"
        display.done(f"error: {message}")
        summary["error"] = {"code": "USAGE", "message": message}
        return finish(EXIT_USAGE)
    summary.update(ok=True, glb_sha256=hashlib.sha256(result.glb).hexdigest(),
                   glb_size=len(result.glb), sidecar_path=str(sidecar_path), sidecar=result.sidecar)
    display.done(f"wrote {args.output} ({len(result.glb) / 1e6:.1f} MB) and {sidecar_path} "
                 f"in {summary.elapsed():.1f} s")
    report_sidecar_notes(result.sidecar)
    return finish(EXIT_OK)
