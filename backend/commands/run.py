"""`gen3dface run IMAGE -o OUT.glb`: the whole pipeline in this process, no server."""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from ..service.cli_support import (EXIT_CODES_HELP, EXIT_CANCELLED, EXIT_INPUT, EXIT_INTERNAL,
                                   EXIT_OK, EXIT_USAGE, ProgressDisplay, exit_code_for,
                                   read_rig_file, sidecar_path_for, write_json_summary,
                                   write_output)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "run", help="make a head from one photo, in this process (no server)",
        description="Run the pipeline on one photo in this process and write a GLB "
                    "and its JSON sidecar (OUT.sidecar.json); --json writes a run summary.", epilog=EXIT_CODES_HELP)
    p.add_argument("image", help="photo of a face (PNG, JPEG or WebP)")
    p.add_argument("-o", "--output", required=True, help="where to write the GLB")
    p.add_argument("--rig", help="camera rig JSON (protocol/SPEC.md, 'Rig'); default: the photo's own camera")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", dest="json_path", help="write a machine-readable summary here")
    p.add_argument("--assets", help="folder with the head model and weights (see `gen3dface assets`)")
    p.add_argument("--checkpoint", help="folder of trained Gen3D-Face weights")
    p.add_argument("--generator", default="auto", help="auto | offline | gen3dface (default auto)")
    p.add_argument("--quality", default="standard", help="draft | standard | high")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--output-kind", default="rigged", help="rigged | surface | both")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from ..pipeline.events import CallbackSink, CancelToken, JobCancelled, PipelineError

    image_path = Path(args.image)
    if not image_path.is_file():
        print(f"error: no such photo: {image_path}", file=sys.stderr)
        return EXIT_USAGE
    image = image_path.read_bytes()
    rig = rig_dict = None
    if args.rig:
        try:
            rig_dict, rig = read_rig_file(args.rig)
        except FileNotFoundError:
            print(f"error: no such rig file: {args.rig}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as e:
            print(f"error: bad rig file {args.rig}: {e}", file=sys.stderr)
            return EXIT_INPUT
    summary = {"command": "run", "image": str(image_path), "output": str(args.output),
               "image_sha256": hashlib.sha256(image).hexdigest(), "ok": False}
    display = ProgressDisplay()
    t0 = time.monotonic()
    try:
        from ..pipeline.pipeline import HeadPipeline, JobOptions, PipelineConfig

        options = JobOptions.from_dict({"generator": args.generator, "seed": args.seed,
                                        "quality": args.quality, "texture_size": args.texture_size,
                                        "output_kind": args.output_kind})
        pipeline = HeadPipeline(PipelineConfig(assets_dir=args.assets, device=args.device,
                                               checkpoint=args.checkpoint))
        result = pipeline.run(image, rig, options, CallbackSink(on_progress=display), CancelToken())
    except PipelineError as e:
        display.done(f"error {e.code}: {e.message}")
        summary.update(error={"code": e.code, "message": e.message})
        code = exit_code_for(e.code)
    except JobCancelled:
        display.done("cancelled")
        summary.update(error={"code": "CANCELLED", "message": "cancelled"})
        code = EXIT_CANCELLED
    except ImportError as e:
        display.done(f"internal error: the pipeline is not available ({e})")
        summary.update(error={"code": "NOT_AVAILABLE", "message": str(e)})
        code = EXIT_INTERNAL
    else:
        write_output(args.output, result.glb)
        sidecar_path = sidecar_path_for(args.output)
        write_json_summary(sidecar_path, result.sidecar)
        summary.update(ok=True, glb_sha256=hashlib.sha256(result.glb).hexdigest(),
                       glb_size=len(result.glb), sidecar_path=str(sidecar_path), sidecar=result.sidecar)
        display.done(f"wrote {args.output} ({len(result.glb) / 1e6:.1f} MB) and {sidecar_path} "
                     f"in {time.monotonic() - t0:.1f} s")
        code = EXIT_OK
    summary["seconds"] = round(time.monotonic() - t0, 3)
    summary["exit_code"] = code
    if args.json_path:
        write_json_summary(args.json_path, summary)
    return code
