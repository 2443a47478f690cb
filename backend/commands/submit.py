"""`gen3dface submit IMAGE -o OUT.glb --server ADDR`: run a job on a `gen3dface serve` backend.

Uses the protocol's blocking client (gen3dface.protocol.client.Client.run_job): heartbeats,
reconnection and resubmission with the same idempotency key happen while it waits, so a
backend restart during the job costs time, not the job.
"""
from __future__ import annotations

import hashlib
import sys
import time
import uuid
from pathlib import Path

from ..service.cli_support import (EXIT_CODES_HELP, EXIT_INPUT, EXIT_INTERNAL, EXIT_OK,
                                   EXIT_SERVER, EXIT_USAGE, ProgressDisplay, exit_code_for,
                                   read_rig_file, sidecar_path_for, write_json_summary,
                                   write_output)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "submit", help="make a head from one photo on a running `gen3dface serve` backend",
        description="Send one photo to a backend, wait for the result, write the GLB and its "
                    "JSON sidecar (OUT.sidecar.json).", epilog=EXIT_CODES_HELP)
    p.add_argument("image", help="photo of a face (PNG, JPEG or WebP)")
    p.add_argument("-o", "--output", required=True, help="where to write the GLB")
    p.add_argument("--server", default="tcp://127.0.0.1:5555", help="backend address (default tcp://127.0.0.1:5555)")
    p.add_argument("--key-file", help="the shared key file the backend uses")
    p.add_argument("--insecure", action="store_true", help="talk to a --insecure development backend")
    p.add_argument("--json", dest="json_path", help="write a machine-readable summary here")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                   help="give up (and cancel the job) after this many seconds (default 1800)")
    p.add_argument("--give-up-disconnected", type=float, default=60.0, metavar="S",
                   help="give up when the backend has not answered for this long (default 60)")
    p.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job "
                   "(default: a fresh one)")
    p.add_argument("--rig", help="camera rig JSON (protocol/SPEC.md, 'Rig')")
    p.add_argument("--seed", type=int)
    p.add_argument("--generator", help="auto | offline | gen3dface")
    p.add_argument("--quality", help="draft | standard | high")
    p.add_argument("--texture-size", type=int)
    p.add_argument("--output-kind", help="rigged | surface | both")
    p.set_defaults(func=handle)


def handle(args) -> int:
    from ...protocol.client import Client, ClientConfig, JobError
    from ...protocol.errors import ProtocolError

    if bool(args.key_file) == bool(args.insecure):
        print("error: give --key-file FILE (the backend's key) or --insecure (development "
              "backend on loopback), not both and not neither", file=sys.stderr)
        return EXIT_USAGE
    image_path = Path(args.image)
    if not image_path.is_file():
        print(f"error: no such photo: {image_path}", file=sys.stderr)
        return EXIT_USAGE
    image = image_path.read_bytes()
    rig = None
    if args.rig:
        try:
            rig, _ = read_rig_file(args.rig)
        except FileNotFoundError:
            print(f"error: no such rig file: {args.rig}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as e:
            print(f"error: bad rig file {args.rig}: {e}", file=sys.stderr)
            return EXIT_INPUT
    options = {k: v for k, v in (("seed", args.seed), ("generator", args.generator),
                                 ("quality", args.quality), ("texture_size", args.texture_size),
                                 ("output_kind", args.output_kind)) if v is not None}
    key = args.idempotency_key or uuid.uuid4().hex
    summary = {"command": "submit", "server": args.server, "image": str(image_path),
               "output": str(args.output), "idempotency_key": key, "options": options,
               "image_sha256": hashlib.sha256(image).hexdigest(), "ok": False}
    display = ProgressDisplay()
    t0 = time.monotonic()

    def on_event(ev):
        if ev.kind == "disconnected":
            display.done(f"backend {args.server} not answering; retrying ...")
        elif ev.kind == "reconnected":
            display.done("backend back; resubmitting the job with the same idempotency key")

    code = EXIT_INTERNAL
    try:
        with Client(args.server, key_file=args.key_file, insecure=args.insecure,
                    config=ClientConfig(zero_copy=True)) as client:    # the GLB goes to a file as is
            result = client.run_job(image, rig=rig, options=options, on_progress=display,
                                    deadline_s=args.timeout, idempotency_key=key, on_event=on_event,
                                    give_up_disconnected_s=args.give_up_disconnected,
                                    name=image_path.name)
    except JobError as e:
        display.done(f"error {e.code}: {e.message}")
        summary.update(error={"code": e.code, "message": e.message}, job_id=e.job_id)
        code = EXIT_SERVER if e.code in ("TIMEOUT", "DISCONNECTED") else exit_code_for(e.code)
    except ProtocolError as e:               # refused locally before sending (photo, rig, key file)
        display.done(f"error {e.code}: {e.message}")
        summary.update(error={"code": e.code, "message": e.message})
        code = EXIT_USAGE if e.code == "AUTH" else EXIT_INPUT
    except ValueError as e:                  # a bad rig (CameraError) found before sending
        display.done(f"error: {e}")
        summary.update(error={"code": "BAD_REQUEST", "message": str(e)})
        code = EXIT_INPUT
    else:
        write_output(args.output, result.glb)
        sidecar_path = sidecar_path_for(args.output)
        write_json_summary(sidecar_path, result.sidecar)
        summary.update(ok=True, job_id=result.job_id, glb_size=len(result.glb),
                       glb_sha256=hashlib.sha256(result.glb).hexdigest(),
                       sidecar_path=str(sidecar_path), sidecar=result.sidecar)
        display.done(f"wrote {args.output} ({len(result.glb) / 1e6:.1f} MB) and {sidecar_path} "
                     f"in {time.monotonic() - t0:.1f} s")
        code = EXIT_OK
    summary["seconds"] = round(time.monotonic() - t0, 3)
    summary["exit_code"] = code
    if args.json_path:
        write_json_summary(args.json_path, summary)
    return code
