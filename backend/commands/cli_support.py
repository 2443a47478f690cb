"""What the `run`, `submit` and `serve` commands share: exit codes, progress display, the
JSON summary, reading a rig file.

Exit codes (documented in README and `gen3dface --help`):
    0  success: the GLB (and --json summary) were written
    1  internal error (a bug: please report it with the log)
    2  usage error (bad arguments, missing file, no key and no --insecure, an
       --idempotency-key already used for another photo/rig/options: IDEMPOTENCY_CONFLICT)
    3  input error: the photo or rig was refused (BAD_IMAGE, BAD_REQUEST, NO_FACE, FACE_TOO_SMALL)
    4  server or connection error, or not available here (unreachable, timed out, AUTH,
       QUEUE_FULL, OUT_OF_MEMORY, NOT_AVAILABLE, NOT_FOUND)
    5  cancelled (also Ctrl-C: the job is cancelled, the --json summary still written)

Every failure after the arguments were parsed writes the --json summary too (argparse's own
refusals, exit 2, happen before the arguments, --json included, could be read).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_SERVER, EXIT_CANCELLED = 0, 1, 2, 3, 4, 5

INPUT_CODES = {"BAD_IMAGE", "BAD_REQUEST", "NO_FACE", "FACE_TOO_SMALL"}
USAGE_CODES = {"IDEMPOTENCY_CONFLICT"}       # the --idempotency-key argument names another job
SERVER_CODES = {"AUTH", "QUEUE_FULL", "OUT_OF_MEMORY", "NOT_AVAILABLE", "NOT_FOUND", "TIMEOUT",
                "CONNECTION", "INTERRUPTED", "SERVER_GONE"}

EXIT_CODES_HELP = ("exit codes: 0 ok; 1 internal error; 2 usage error (bad arguments, missing "
                   "file, unwritable output, no key, IDEMPOTENCY_CONFLICT); 3 input refused (BAD_IMAGE, BAD_REQUEST, "
                   "NO_FACE, FACE_TOO_SMALL); 4 server/connection error or not available "
                   "(unreachable, timed out, AUTH, QUEUE_FULL, OUT_OF_MEMORY, NOT_AVAILABLE, "
                   "NOT_FOUND); 5 cancelled (also Ctrl-C)")
CANCEL_WAIT_S = 2.0      # after Ctrl-C, wait this long for the server to confirm the cancel


def exit_code_for(code: str | None) -> int:
    if code is None:
        return EXIT_OK
    if code == "CANCELLED":
        return EXIT_CANCELLED
    if code in INPUT_CODES:
        return EXIT_INPUT
    if code in USAGE_CODES:
        return EXIT_USAGE
    if code in SERVER_CODES:
        return EXIT_SERVER
    return EXIT_INTERNAL


class ProgressDisplay:
    """A one-line progress bar on a terminal; on a pipe or log, one quiet line per stage."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self._stage = None
        self._t0 = time.monotonic()

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if self.tty:
            filled = int(round(self.width * max(0.0, min(1.0, fraction))))
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"\r{stage:<12} [{bar}] {fraction * 100:5.1f}% {message[:40]:<40}"
            self.stream.write(line)
            self.stream.flush()
        elif stage != self._stage:
            self.stream.write(f"[{time.monotonic() - self._t0:7.1f}s] {stage}\n")
            self.stream.flush()
        self._stage = stage

    def done(self, message: str) -> None:
        if self.tty and self._stage is not None:
            self.stream.write("\n")
        self.stream.write(message + "\n")
        self.stream.flush()


def write_json_summary(path: str | os.PathLike, summary: dict) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, p)


def write_output(path: str | os.PathLike, data: bytes) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def sidecar_path_for(glb_path: str | os.PathLike) -> Path:
    """OUT.glb -> OUT.sidecar.json (the pipeline's JSON sidecar, beside the GLB)."""
    p = Path(glb_path)
    return p.with_name(p.stem + ".sidecar.json")


def read_rig_file(path: str | os.PathLike):
    """A rig JSON file (the wire convention, protocol/SPEC.md 'Rig') -> (dict, Rig)."""
    from ...protocol.cameras import Rig

    d = json.loads(Path(path).read_text())
    return d, Rig.from_dict(d)


class Refused(Exception):
    """An input the command refuses before doing any work: exit code, error code, message."""

    def __init__(self, exit_code: int, error_code: str, message: str):
        super().__init__(message)
        self.exit_code, self.error_code, self.message = exit_code, error_code, message


def read_photo_and_rig(image_path: Path, rig_path: str | None):
    """(photo bytes, Rig or None); raises Refused."""
    if not image_path.is_file():
        raise Refused(EXIT_USAGE, "USAGE", f"no such photo: {image_path}")
    try:
        image = image_path.read_bytes()
    except OSError as e:
        raise Refused(EXIT_USAGE, "USAGE", f"cannot read the photo {image_path}: {e}") from None
    rig = None
    if rig_path:
        try:
            _, rig = read_rig_file(rig_path)
        except FileNotFoundError:
            raise Refused(EXIT_USAGE, "USAGE", f"no such rig file: {rig_path}") from None
        except ValueError as e:
            raise Refused(EXIT_INPUT, "BAD_REQUEST", f"bad rig file {rig_path}: {e}") from None
    return image, rig


def output_problem(path: str | os.PathLike) -> str | None:
    """Why the GLB (and its sidecar beside it) cannot be written at `path`, or None; checked
    before any work is done."""
    p = Path(path)
    if p.is_dir():
        return f"the output {p} is a folder; give a file name such as {p / 'head.glb'}"
    folder = p.parent
    if not folder.exists():
        return f"the output folder {folder} does not exist"
    if not folder.is_dir():
        return f"the output's parent {folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to the output folder {folder} (permission denied)"
    return None


def report_sidecar_notes(sidecar: dict, stream: TextIO | None = None) -> None:
    """The sidecar's `warnings` and `fallbacks`, one line each ("warning: ...", "note: ..."),
    so that what the artist should know reaches the terminal, not only the JSON file."""
    stream = stream or sys.stderr
    for w in (sidecar or {}).get("warnings") or []:
        stream.write(f"warning: {w}\n")
    for f in (sidecar or {}).get("fallbacks") or []:
        stream.write(f"note: {f}\n")
    stream.flush()


class Interrupted(Exception):
    """Ctrl-C arrived while the in-process pipeline ran; `finished` says whether the pipeline
    stopped (at its next cancel check) within the grace period."""

    def __init__(self, finished: bool):
        super().__init__("interrupted")
        self.finished = finished


def call_cancellable(fn, cancel, grace_s: float = 10.0):
    """fn() on a worker thread while this (main) thread waits for Ctrl-C. On Ctrl-C the
    CancelToken `cancel` is set and the worker gets `grace_s` to stop (the pipeline raises
    JobCancelled at its next check); then Interrupted is raised. fn's result or exception
    is passed through otherwise."""
    box: dict = {}

    def work():
        try:
            box["result"] = fn()
        except BaseException as e:          # handed to the main thread
            box["error"] = e

    t = threading.Thread(target=work, name="gen3dface-run", daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(0.1)
    except KeyboardInterrupt:
        cancel.cancel()
        t.join(grace_s)
        raise Interrupted(finished=not t.is_alive()) from None
    if "error" in box:
        raise box["error"]
    return box["result"]


class CommandSummary(dict):
    """The machine-readable summary of one `run` / `submit` (written to --json FILE): filled in
    as the command goes, written on every exit with the exit code and the seconds taken."""

    def __init__(self, json_path: str | None, **fields):
        super().__init__(fields, ok=False)
        self.json_path = json_path
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the command started."""
        return time.monotonic() - self._t0

    def finish(self, code: int) -> int:
        self["seconds"] = round(self.elapsed(), 3)
        self["exit_code"] = code
        if self.json_path:
            try:
                write_json_summary(self.json_path, self)
            except OSError as e:
                print(f"error: cannot write the --json summary {self.json_path}: {e}",
                      file=sys.stderr)
        return code

    def refuse(self, code: int, error_code: str, message: str) -> int:
        """Print `message` as an error and finish with `code`."""
        print(f"error: {message}", file=sys.stderr)
        self["error"] = {"code": error_code, "message": message}
        return self.finish(code)
