"""`gen3dface submit IMAGE -o OUT.glb --server ADDR`: run a job on a `gen3dface serve` backend.

Uses the protocol's client (gen3dface.protocol.client.Client): heartbeats, reconnection and
resubmission with the same idempotency key happen while it waits, so a backend restart
during the job costs time, not the job. The wait loop is the client's run_job loop, kept
here so that the job handle survives a Ctrl-C: the job is then cancelled on the server
(whatever its --on-client-lost policy), the job id is printed, the command exits 5 and the
--json summary is written.
"""
from __future__ import annotations

import argparse
import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli_support import (CANCEL_WAIT_S, CommandSummary, EXIT_CANCELLED, EXIT_CODES_HELP,
                                   EXIT_INPUT, EXIT_OK, EXIT_SERVER, EXIT_USAGE, ProgressDisplay,
                                   Refused, exit_code_for, output_problem, read_photo_and_rig,
                                   report_sidecar_notes, sidecar_path_for, write_json_summary,
                                   write_output)
from ...protocol.options import GENERATORS, OUTPUT_KINDS, QUALITIES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "submit", help="make a head from one photo on a running `gen3dface serve` backend",
        description="Send one photo to a backend, wait for the result, write the GLB and its "
                    "JSON sidecar (OUT.sidecar.json). Ctrl-C cancels the job on the backend.",
        epilog=EXIT_CODES_HELP)
    p.add_argument("image", help="photo of a face (PNG, JPEG or WebP)")
    p.add_argument("-o", "--output", required=True, help="where to write the GLB")
    p.add_argument("--server", default="tcp://127.0.0.1:5555", help="backend address (default tcp://127.0.0.1:5555)")
    p.add_argument("--key-file", help="the shared key file the backend uses")
    p.add_argument("--insecure", action="store_true", help="talk to a --insecure development backend")
    p.add_argument("--server-key", metavar="FILE_OR_KEY",
                   help="CURVE: the backend's public key (its server.key file, or the 40 "
                        "characters); needed for a backend on another machine")
    p.add_argument("--client-key", metavar="FILE",
                   help="CURVE: this client's key file (NAME.key_secret from `gen3dface keys "
                        "client NAME`), whose public key the backend allows")
    p.add_argument("--json", dest="json_path", help="write a machine-readable summary here")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S",
                   help="give up (and cancel the job) after this many seconds (default 1800)")
    p.add_argument("--give-up-disconnected", type=float, default=60.0, metavar="S",
                   help="give up when the backend has not answered for this long (default 60)")
    p.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job "
                   "(default: a fresh one)")
    p.add_argument("--rig", help="camera rig JSON (protocol/SPEC.md, 'Rig')")
    p.add_argument("--seed", type=int)
    p.add_argument("--generator", choices=GENERATORS, help="default: the backend's (auto)")
    p.add_argument("--quality", choices=QUALITIES, help="default: the backend's (standard)")
    p.add_argument("--texture-size", type=int)
    p.add_argument("--output-kind", choices=OUTPUT_KINDS, help="default: the backend's (rigged)")
    p.add_argument("--neutral", action="store_true",
                   help="rest pose: the GLB's shape-key weights all 0 (the sidecar keeps the "
                        "fitted weights)")
    p.add_argument("--delit-texture", action="store_true",
                   help="de-light the skin texture: the photo's lighting divided out, an albedo "
                        "for relighting (default: the photo's lighting kept)")
    p.add_argument("--neck-skin", action=argparse.BooleanOptionalAction, default=None,
                   help="paint the neck and shoulders below the jaw with skin where the photo "
                        "shows clothes (the default); --no-neck-skin: as the photo shows them")
    p.set_defaults(func=handle)


def handle(args) -> int:
    """Read the inputs, submit the job and wait for it (writing the GLB and its sidecar), then
    report the outcome: the exit code (cli_support's EXIT_*)."""
    image_path = Path(args.image)
    job = _Job(key=args.idempotency_key or uuid.uuid4().hex)
    summary = CommandSummary(args.json_path, command="submit", server=args.server,
                             image=str(image_path), output=str(args.output),
                             idempotency_key=job.key)
    try:
        image, rig = _read_inputs(args, image_path)
    except Refused as e:
        return summary.refuse(e.exit_code, e.error_code, e.message)
    summary["image_sha256"] = hashlib.sha256(image).hexdigest()
    options = _job_options(args)
    summary["options"] = options

    from ...protocol.client import JobError
    from ...protocol.errors import ProtocolError

    display = ProgressDisplay()
    try:
        sidecar_path, sidecar = _submit_and_wait(args, job, image, rig, options, display, summary)
    except (KeyboardInterrupt, JobError, ProtocolError, ValueError, OSError) as e:
        return summary.finish(_report_failure(e, args, job, display, summary))
    summary.update(ok=True, job_id=job.handle.job_id, sidecar_path=str(sidecar_path),
                   sidecar=sidecar)
    display.done(f"wrote {args.output} ({summary['glb_size'] / 1e6:.1f} MB) and {sidecar_path} "
                 f"in {summary.elapsed():.1f} s")
    report_sidecar_notes(sidecar)
    return summary.finish(EXIT_OK)


@dataclass
class _Job:
    """The job this command runs: its idempotency key and, once submit() returned, its handle
    (None before), which the failure reports name."""

    key: str
    handle: Any = None


def _read_inputs(args, image_path: Path):
    """Check the key and output arguments, then read the photo and the rig: (photo bytes, Rig
    or None); raises Refused."""
    if bool(args.key_file) == bool(args.insecure):
        raise Refused(EXIT_USAGE, "USAGE", "give --key-file FILE (the backend's key) or "
                      "--insecure (development backend on loopback), not both and not neither")
    if bool(args.server_key) != bool(args.client_key):
        raise Refused(EXIT_USAGE, "USAGE", "CURVE needs both --server-key (the backend's "
                      "server.key) and --client-key (this client's NAME.key_secret)")
    problem = output_problem(args.output)
    if problem:
        raise Refused(EXIT_USAGE, "USAGE", problem)
    return read_photo_and_rig(image_path, args.rig)


def _job_options(args) -> dict:
    """The job's options: only those given on the command line (the backend has the rest)."""
    return {k: v for k, v in (("seed", args.seed), ("generator", args.generator),
                              ("quality", args.quality), ("texture_size", args.texture_size),
                              ("output_kind", args.output_kind),
                              ("neutral", True if args.neutral else None),
                              ("delit_texture", True if args.delit_texture else None),
                              ("neck_skin", args.neck_skin))
            if v is not None}


def _submit_and_wait(args, job: _Job, image: bytes, rig, options: dict,
                     display: ProgressDisplay, summary: CommandSummary):
    """Connect, submit, wait for the result and write the GLB and its sidecar: (sidecar path,
    sidecar). A Ctrl-C once the job was sent cancels it on the server (JobInterrupted)."""
    from ...protocol.client import Client, ClientConfig, JobInterrupted

    def on_event(ev):
        if ev.kind == "disconnected":
            display.done(f"backend {args.server} not answering; retrying ...")
        elif ev.kind == "reconnected":
            display.done("backend back; resubmitting the job with the same idempotency key")

    with Client(args.server, key_file=args.key_file, insecure=args.insecure,
                server_public_key=args.server_key, client_key_file=args.client_key,
                config=ClientConfig(zero_copy=True)) as client:    # the GLB goes to a file as is
        try:
            job.handle = client.submit(image, rig=rig, options=options, idempotency_key=job.key,
                                       name=Path(args.image).name)
            # Ctrl-C inside wait() cancels the job on the server (JobInterrupted)
            client.wait(job.handle, deadline_s=args.timeout, on_progress=display,
                        on_event=on_event, give_up_disconnected_s=args.give_up_disconnected,
                        cancel_wait_s=CANCEL_WAIT_S)
        except JobInterrupted:
            raise
        except KeyboardInterrupt:        # between submit() and wait(): cancel what was sent
            if job.handle is None:
                raise
            raise JobInterrupted(job.handle.job_id, job.key,
                                 client.cancel_and_wait(job.handle, CANCEL_WAIT_S)) from None
        return _write_outputs(args.output, job.handle, summary)


def _write_outputs(output: str, h, summary: CommandSummary):
    """Write the GLB and its sidecar beside it, while the received frame is still alive (the
    client's zero-copy mode): (sidecar path, sidecar)."""
    glb, sidecar = h.glb, h.sidecar or {}
    sidecar_path = sidecar_path_for(output)
    write_output(output, glb)
    write_json_summary(sidecar_path, sidecar)
    summary.update(glb_size=len(glb), glb_sha256=hashlib.sha256(glb).hexdigest())
    return sidecar_path, sidecar


def _report_failure(e: BaseException, args, job: _Job, display: ProgressDisplay,
                    summary: CommandSummary) -> int:
    """Say what went wrong, put it in the summary; the exit code."""
    from ...protocol.client import JobError, JobInterrupted
    from ...protocol.errors import ProtocolError

    h, key = job.handle, job.key
    if isinstance(e, JobInterrupted):
        return _report_cancelled(e, key, display, summary)
    if isinstance(e, KeyboardInterrupt):        # before sending, or while writing the output
        summary.update(job_id=h.job_id if h else None,
                       error={"code": "CANCELLED", "message": "interrupted (Ctrl-C)"})
        display.done("interrupted (Ctrl-C)" + (f" after job {h.job_id} ended" if h else
                                               " before the job was sent"))
        return EXIT_CANCELLED
    if isinstance(e, JobError):
        display.done(f"error {e.code}: {e.message}")
        if e.code == "IDEMPOTENCY_CONFLICT":
            display.done(f"the --idempotency-key {key} was used before for another photo, rig "
                         "or options; give a new key (or none: a fresh one is drawn) to make a "
                         "new head, or the same inputs to fetch that job again")
        summary.update(error={"code": e.code, "message": e.message}, job_id=e.job_id)
        return EXIT_SERVER if e.code in ("TIMEOUT", "DISCONNECTED") else exit_code_for(e.code)
    if isinstance(e, ProtocolError):         # refused locally before sending (photo, rig, key file)
        display.done(f"error {e.code}: {e.message}")
        summary.update(error={"code": e.code, "message": e.message})
        return EXIT_USAGE if e.code in ("AUTH", "IDEMPOTENCY_CONFLICT") else EXIT_INPUT
    if isinstance(e, ValueError):            # a bad rig (CameraError) found before sending
        display.done(f"error: {e}")
        summary.update(error={"code": "BAD_REQUEST", "message": str(e)})
        return EXIT_INPUT
    message = f"cannot write {args.output}: {e}"        # OSError
    display.done(f"error: {message}")
    summary.update(error={"code": "USAGE", "message": message}, job_id=h.job_id if h else None)
    return EXIT_USAGE


def _report_cancelled(e, key: str, display: ProgressDisplay, summary: CommandSummary) -> int:
    """Ctrl-C while waiting (JobInterrupted): the cancel was sent to the server, confirmed
    or not; job_id None when the job was not accepted yet."""
    job_id = e.job_id
    summary.update(job_id=job_id, cancel_confirmed=e.confirmed,
                   error={"code": "CANCELLED", "message": "interrupted (Ctrl-C); cancel sent "
                          "to the server" + (" and confirmed" if e.confirmed else "")})
    if job_id is None:
        display.done(f"interrupted (Ctrl-C): the job (idempotency key {key}) was not "
                     "accepted yet; it is cancelled if it reaches the server")
    else:
        display.done(f"interrupted (Ctrl-C): job {job_id} "
                     + ("cancelled on the server" if e.confirmed else
                        f"- cancel sent, not confirmed within {CANCEL_WAIT_S:g} s")
                     + f" (idempotency key {key})")
    return EXIT_CANCELLED
