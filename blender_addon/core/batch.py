"""Batch from Blender's command line, shared by both entry points:

    blender -b -c gen3dface PHOTO_OR_FOLDER... [options]                (Blender >= 4.2)
    blender -b --python scripts/blender_batch.py -- PHOTO_OR_FOLDER... [options]

Pure Python: the argument parser, photo discovery, the grid layout of heads, the loop over
photos, the JSON summary and the exit code. The bpy layer supplies two callables: `generate`
(the protocol client's BLOCKING mode with deadlines; bpy.app.timers do not fire in
`blender -b` while a script runs) and `place` (imports one GLB at one grid cell).

Exit codes: 0 every photo gave a head (also `--help`); 1 at least one photo failed (the
summary says which and why); 2 bad arguments, no photos found, no key given, or a key the
backend refuses (found by one `hello` before the first photo); 130 interrupted (Ctrl-C or
SIGTERM): the .blend and the summary hold what was done so far.

One bad result costs one photo, never the batch: a result that is not a usable GLB (checked
by core/glb_check.py before the importer sees it), an importer exception, a backend that
breaks the client's receive limits (protocol/SPEC.md section 11), goes silent or goes away,
each fails that photo with a code and a message, and the loop goes on.

Per-photo outputs in --glb-dir: <stem>.glb and <stem>.sidecar.json (as `gen3dface run`) for
every head; a result that arrived but could not be used is kept as <stem>.rejected.glb (and
<stem>.rejected.sidecar.json) so that it can be reported, never as <stem>.glb.
Messages name command-line options, never Blender's preferences or panel (BATCH_ADVICE).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .glb_check import GlbError, check_glb
from .messages import (BACKEND_LOST, BAD_INPUT, BAD_RESULT, CLIENT_ERROR, IMPORT_FAILED,
                       INTERRUPTED_BY_USER, JOB_TIMEOUT, NOT_RUN, OFFLINE, PROTOCOL,
                       RECEIVE_LIMIT, UNREACHABLE, UserError, user_error)
from .settings import (GENERATORS, OPTION_DEFAULTS, OUTPUT_KINDS, QUALITIES, TEXTURE_SIZES,
                       ConnectionSettings, GenerateOptions, RingSettings)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130          # Ctrl-C / SIGTERM (128 + SIGINT, as shells report it)
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
DEFAULT_RING_CAMERAS = 16
KEY_ADVICE = ("pass --key-file FILE with the key file the backend was started with "
              "(`gen3dface serve --key-file FILE`), or --insecure for a development backend "
              "on loopback started with --insecure")
KEY_CODES = ("AUTH", PROTOCOL, "UNSUPPORTED_VERSION")     # the batch cannot work at all

# What to do, in batch terms: messages.ADVICE speaks of the panel and the add-on preferences.
BATCH_ADVICE = {
    "BAD_REQUEST": "Check --generator, --quality, --texture-size and --output-kind; if they "
                   "look right, the add-on and backend versions may not match.",
    "OUT_OF_MEMORY": "Lower --quality or --texture-size, or free GPU memory on the backend "
                     "machine, then run the batch again for this photo.",
    "CANCELLED": "The job was cancelled on the backend; run the batch again for this photo.",
    "INTERRUPTED": "The backend stopped during the job: start it again and run the batch "
                   "again for this photo.",
    "AUTH": "The key does not match the backend's: " + KEY_ADVICE + ".",
    "NOT_AVAILABLE": "Pick another --generator or --output-kind (the backend does not offer "
                     "this one).",
    "NOT_FOUND": "The backend no longer has this job (restarted or expired): run the batch "
                 "again for this photo.",
    "TIMEOUT": "Raise --job-timeout, or pick a faster --quality.",
    "DISCONNECTED": "The backend stopped answering (stopped or crashed): check its console, "
                    "restart it, then run the batch again.",
    UNREACHABLE: "Start the backend (`gen3dface serve`), check --address and the port, or "
                 "raise --connect-timeout.",
    BACKEND_LOST: "The backend stopped answering during the job (stopped or crashed): check "
                  "its console, restart it, then run the batch again.",
    JOB_TIMEOUT: "Raise --job-timeout, or pick a faster --quality.",
    OFFLINE: "Blender's online access is off: start Blender with --online-mode, or use a "
             "backend on this machine (127.0.0.1).",
    BAD_INPUT: "Check that the photo file exists and is readable (PNG, JPEG or WebP).",
    PROTOCOL: "The add-on and backend do not speak the same protocol version or key: update "
              "both to the same release and check --key-file.",
    BAD_RESULT: "The backend sent a result that is not a usable GLB (kept as "
                "<stem>.rejected.glb when --glb-dir is given): check the backend's log, then "
                "run the batch again for this photo.",
    IMPORT_FAILED: "Blender's glTF importer could not read the result, and nothing of it is "
                   "in the .blend (the file is kept as <stem>.rejected.glb when --glb-dir is "
                   "given): report it with the backend's log.",
    RECEIVE_LIMIT: "The backend sent more than the add-on accepts (protocol/SPEC.md section "
                   "11) and the job was cancelled: check that --address is a Gen3D-Face "
                   "backend of the same release.",
    INTERRUPTED_BY_USER: "The batch was interrupted during this photo and its job was "
                         "cancelled on the backend: run the batch again for the photos that "
                         "did not finish.",
    NOT_RUN: "The batch was interrupted before this photo: run the batch again for it.",
    CLIENT_ERROR: "An unexpected error in the add-on (a bug): report it with this summary; "
                  "the batch went on with the next photo.",
}


def batch_error(code: str, message: str) -> UserError:
    """user_error() with the batch's advice (command-line options, not preferences)."""
    err = user_error(code, message)
    return UserError(err.code, err.message, BATCH_ADVICE.get(code, err.advice))


class JobError(Exception):
    """A job that did not give a head: a protocol/pipeline code and the backend's message."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class JobOutput:
    """What one successful job gives back."""

    glb: bytes
    sidecar: dict


@dataclass
class PhotoOutcome:
    photo: str
    ok: bool
    code: str = ""
    message: str = ""
    advice: str = ""
    glb_path: str = ""
    rejected_glb: str = ""         # --glb-dir copy of a result that could not be used
    objects: list = field(default_factory=list)
    cell: tuple = ()
    seconds: float = 0.0
    generator: str = ""
    warnings: list = field(default_factory=list)


@dataclass
class BatchSummary:
    address: str
    outputs: dict = field(default_factory=dict)         # {"blend": path, "glb_dir": path}
    items: list = field(default_factory=list)            # PhotoOutcome, in photo order
    seconds: float = 0.0
    interrupted: str = ""          # why the batch stopped early ("" when it ran to the end)
    errors: list = field(default_factory=list)           # batch-level problems (saving)

    @property
    def failed(self) -> list:
        return [i for i in self.items if not i.ok]

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if not self.items:
            return EXIT_USAGE
        return EXIT_FAILED if self.failed or self.errors else EXIT_OK

    def to_dict(self) -> dict:
        return {"address": self.address, "outputs": self.outputs,
                "photos": len(self.items), "succeeded": len(self.items) - len(self.failed),
                "failed": [{"photo": i.photo, "code": i.code, "message": i.message,
                            "advice": i.advice} for i in self.failed],
                "interrupted": self.interrupted or None, "errors": list(self.errors),
                "exit_code": self.exit_code(), "seconds": round(self.seconds, 3),
                "items": [asdict(i) for i in self.items]}

    def write_json(self, path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def build_parser(prog: str = "gen3dface") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Gen3D-Face batch: photos of faces -> heads in a .blend and/or "
        "GLB files, with a JSON summary. Each head gets a ring rig of its own (--cameras) and "
        "the heads are laid out in a grid.",
        epilog="exit codes: 0 every photo gave a head; 1 some photo failed (the summary and "
        "stderr say which and why); 2 bad arguments, no photos, no key (--key-file or "
        "--insecure), or a key the backend refuses; 130 interrupted (Ctrl-C, SIGTERM): the "
        ".blend and the summary hold what was done so far.")
    p.add_argument("photos", nargs="*", help="photo files and/or folders of photos")
    p.add_argument("--list", dest="list_file", help="a text file with one photo path per line")
    p.add_argument("--address", default=ConnectionSettings.address, help="backend address")
    p.add_argument("--key-file", default="", help="the backend's key file (the one "
                   "`gen3dface serve --key-file` uses)")
    p.add_argument("--insecure", action="store_true",
                   help="no key: a development backend on loopback started with --insecure")
    p.add_argument("--connect-timeout", type=float, default=ConnectionSettings.connect_timeout_s)
    p.add_argument("--job-timeout", type=float, default=ConnectionSettings.job_timeout_s)
    p.add_argument("--generator", choices=GENERATORS, default=OPTION_DEFAULTS["generator"])
    p.add_argument("--seed", type=int, default=OPTION_DEFAULTS["seed"])
    p.add_argument("--quality", choices=QUALITIES, default=OPTION_DEFAULTS["quality"])
    p.add_argument("--texture-size", type=int, choices=TEXTURE_SIZES,
                   default=OPTION_DEFAULTS["texture_size"])
    p.add_argument("--output-kind", choices=OUTPUT_KINDS, default=OPTION_DEFAULTS["output_kind"])
    p.add_argument("--neutral", action="store_true",
                   help="heads at rest (shape keys 0); the fitted values stay in the sidecar")
    p.add_argument("--delit-texture", action="store_true",
                   help="de-light the skin textures, albedos for relighting (default: the "
                        "photos' lighting kept)")
    p.add_argument("--neck-skin", action=argparse.BooleanOptionalAction,
                   default=OPTION_DEFAULTS["neck_skin"],
                   help="paint the necks and shoulders below the jaw with skin where the photos "
                        "show clothes (the default); --no-neck-skin: as the photos show them")
    p.add_argument("--cameras", type=int, default=DEFAULT_RING_CAMERAS,
                   help=f"each head's ring rig: N cameras around it, sent with the job, the "
                   f"head centred on it (default {DEFAULT_RING_CAMERAS}; 0: no rig, the "
                   "photo's own camera)")
    p.add_argument("--spacing", type=float, default=0.5,
                   help="grid spacing between heads in metres (default 0.5)")
    p.add_argument("--blend", help="save the scene with all heads to this .blend")
    p.add_argument("--glb-dir", help="write each head as <photo stem>.glb and its sidecar "
                   "<photo stem>.sidecar.json")
    p.add_argument("--summary", help="write the JSON summary here (default: print it)")
    return p


@dataclass(frozen=True)
class BatchSettings:
    photos: tuple
    connection: ConnectionSettings
    options: GenerateOptions
    ring: RingSettings | None
    spacing_m: float
    blend: str
    glb_dir: str
    summary: str


class UsageError(ValueError):
    pass


class HelpShown(Exception):
    """--help (or -h) printed the help: exit code 0."""


def settings_from_args(argv: Sequence[str], prog: str = "gen3dface") -> BatchSettings:
    """Parse and validate; UsageError (exit code 2) with a message on anything unusable."""
    parser = build_parser(prog)
    try:
        a = parser.parse_args(list(argv))
    except SystemExit as e:          # argparse printed its message (or the help) already
        if e.code in (0, None):
            raise HelpShown() from None
        raise UsageError("bad arguments (see above)") from e
    inputs = list(a.photos)
    if a.list_file:
        try:
            lines = Path(a.list_file).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise UsageError(f"cannot read the photo list {a.list_file}: {e}") from None
        inputs += [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    photos = collect_photos(inputs)
    if not a.blend and not a.glb_dir:
        raise UsageError("say where the heads go: --blend OUT.blend and/or --glb-dir DIR")
    if not (a.spacing > 0 and math.isfinite(a.spacing)):
        raise UsageError("--spacing must be a positive number of metres")
    if bool(a.key_file) == bool(a.insecure):
        raise UsageError("no key given: " + KEY_ADVICE if not a.key_file else
                         "give --key-file or --insecure, not both")
    if a.cameras < 0:
        raise UsageError("--cameras must be 0 (no rig) or a number of cameras")
    try:
        conn = ConnectionSettings(a.address, a.key_file, a.connect_timeout, a.job_timeout)
        opts = GenerateOptions(a.generator, a.seed, a.quality, a.texture_size, a.output_kind,
                               bool(a.neutral), bool(a.delit_texture), bool(a.neck_skin))
        ring = RingSettings(n_cameras=a.cameras) if a.cameras > 0 else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    return BatchSettings(tuple(photos), conn, opts, ring, a.spacing, a.blend or "",
                         a.glb_dir or "", a.summary or "")


def collect_photos(inputs: Sequence[str]) -> list[Path]:
    """Files as given (any suffix: the backend judges the content) and, for each folder, its
    photo files (PHOTO_SUFFIXES, not recursive) sorted by name. Duplicates are dropped."""
    if not inputs:
        raise UsageError("no photos given: pass photo files or folders (or --list FILE)")
    out, seen = [], set()
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir()
                           if q.is_file() and q.suffix.lower() in PHOTO_SUFFIXES)
            if not found:
                raise UsageError(f"folder {p} holds no {'/'.join(PHOTO_SUFFIXES)} photos")
        elif p.is_file():
            found = [p]
        else:
            raise UsageError(f"no such photo or folder: {p}")
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


def grid_cells(n: int, spacing: float) -> list[tuple[float, float, float]]:
    """Rig centres (metres, Blender world, Z up) for n heads, like a wall of portraits seen
    from Blender's front view: heads face -Y (the head frame's +Z maps to Blender -Y), columns
    run along X centred on x = 0, rows go up in Z with the first row on top."""
    if n <= 0:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        out.append(((c - (cols - 1) / 2.0) * spacing, 0.0, (rows - 1 - r) * spacing))
    return out


def safe_stem(photo: Path, used: set) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in photo.stem) or "photo"
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name


def check_backend(settings: BatchSettings, hello: Callable[[], object]) -> JobError | None:
    """One `hello` before the first photo. A key the backend refuses (or an unusable key file)
    is a usage problem of the whole batch: UsageError saying to pass --key-file / --insecure.
    Returns the JobError when nothing answers (run_batch then fails every photo at once with
    it), None when the backend answered."""
    try:
        hello()
    except JobError as e:
        if e.code == UNREACHABLE:
            return e
        if e.code in KEY_CODES:             # refused by the backend, or an unusable key file
            raise UsageError(f"cannot talk to the backend at {settings.connection.address} "
                             f"({e.code}: {e.message.rstrip('.')}); {KEY_ADVICE}") from None
        return None                         # anything else: each photo reports it
    return None


def _set_error(item: PhotoOutcome, code: str, message: str) -> None:
    err = batch_error(code, message)
    item.ok, item.code, item.message, item.advice = False, err.code, err.message, err.advice


def _sidecar_facts(item: PhotoOutcome, sidecar) -> None:
    """generator and warnings for the summary, whatever shape a backend gave them."""
    sidecar = sidecar if isinstance(sidecar, dict) else {}
    item.generator = str(sidecar.get("generator", ""))[:256]
    warnings = sidecar.get("warnings")
    item.warnings = [str(w)[:1000] for w in warnings[:100]] if isinstance(warnings, list) else []


def _write_outputs(folder: Path, stem: str, out: JobOutput) -> Path:
    glb_path = folder / f"{stem}.glb"
    glb_path.write_bytes(out.glb)
    glb_path.with_name(f"{stem}.sidecar.json").write_text(
        json.dumps(out.sidecar, indent=2, default=str) + "\n", encoding="utf-8")
    return glb_path


def _reject(folder: str, stem: str, out: JobOutput) -> str:
    """Keep an unusable result as <stem>.rejected.glb (best effort: "" when not kept)."""
    if not folder:
        return ""
    try:
        path = _write_outputs(Path(folder), f"{stem}.rejected", out)
        Path(folder, f"{stem}.glb").unlink(missing_ok=True)
        Path(folder, f"{stem}.sidecar.json").unlink(missing_ok=True)
        return str(path)
    except OSError:
        return ""


def _interrupted_text(e: BaseException, phase: str) -> str:
    confirmed = getattr(e, "confirmed", None)          # protocol client's JobInterrupted
    cancel = {True: "; the backend confirmed the cancel",
              False: "; cancel sent, the backend did not confirm it"}.get(confirmed, "")
    return f"the batch was interrupted while {phase}{cancel}"


def run_batch(settings: BatchSettings,
              generate: Callable[[Path, tuple], JobOutput],
              place: Callable[[str, JobOutput, tuple], list],
              log: Callable[[str], None] = print,
              clock: Callable[[], float] = time.monotonic,
              unreachable: JobError | None = None,
              interrupted: str = "") -> BatchSummary:
    """Process every photo in order; always returns the summary of what was done.

    generate(photo, cell) -> JobOutput or raises JobError (the blocking client with its
    deadlines); place(name, output, cell) -> names of the objects it made (None when there is
    no .blend to build), raising (with .code, e.g. importer.ImportFailed) when the result
    cannot be imported. When the backend is unreachable (found by check_backend, given as
    `unreachable`, or by a photo), the remaining photos fail at once with the same reason
    instead of each waiting out the connect timeout.

    Each photo's failure is its own (JobError, a result that fails check_glb, an importer
    exception, any other exception): the loop goes on. KeyboardInterrupt (Ctrl-C; batch_bpy
    turns SIGTERM into one) stops the loop: that photo is INTERRUPTED_BY_USER, the rest
    NOT_RUN, summary.interrupted says why (exit code 130). `interrupted` given: nothing runs."""
    t0 = clock()
    summary = BatchSummary(settings.connection.address,
                           {k: v for k, v in (("blend", settings.blend),
                                              ("glb_dir", settings.glb_dir)) if v},
                           interrupted=interrupted)
    cells = grid_cells(len(settings.photos), settings.spacing_m)
    used: set = set()
    n = len(settings.photos)
    say = _never_failing(log)
    try:
        _make_glb_dir(settings.glb_dir, summary)
        for k, (photo, cell) in enumerate(zip(settings.photos, cells), 1):
            if summary.interrupted:
                break
            name = safe_stem(Path(photo), used)
            item = PhotoOutcome(photo=str(photo), ok=False, cell=tuple(cell))
            summary.items.append(item)
            t = clock()
            out, unreachable = _make_head(summary, item, name, photo, cell, settings.glb_dir,
                                          generate=generate, place=place,
                                          unreachable=unreachable)
            _keep_rejected(item, settings.glb_dir, name, out)
            item.seconds = round(clock() - t, 3)
            status = "ok" if item.ok else f"FAILED {item.code}: {item.message}"
            say(f"[{k}/{n}] {photo}: {status} ({item.seconds:.1f} s)")
    except KeyboardInterrupt as e:      # between the steps above
        _stop_between_photos(summary, e)
    if summary.interrupted:
        _add_not_run(summary, settings.photos, cells)
        say(f"interrupted: {summary.interrupted}")
    summary.seconds = clock() - t0
    return summary


def _never_failing(log: Callable[[str], None]) -> Callable[[str], None]:
    """log(), ignoring its exceptions: a closed stdout must not end the batch."""
    def say(text: str) -> None:
        try:
            log(text)
        except Exception:
            pass
    return say


def _make_glb_dir(glb_dir: str, summary: BatchSummary) -> None:
    """Create --glb-dir (when given); a failure is a batch-level error, the batch goes on."""
    if glb_dir:
        try:
            Path(glb_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            summary.errors.append({"code": CLIENT_ERROR, "message":
                                   f"cannot create --glb-dir {glb_dir}: {e}"})


def _make_head(summary: BatchSummary, item: PhotoOutcome, name: str, photo, cell, glb_dir: str,
               generate: Callable[[Path, tuple], JobOutput],
               place: Callable[[str, JobOutput, tuple], list],
               unreachable: JobError | None) -> tuple[JobOutput | None, JobError | None]:
    """One photo's head: generate, check, write to --glb-dir, import. Its failure goes into
    `item` (a Ctrl-C also into summary.interrupted). Returns the result that arrived (None when
    none did) and the unreachable backend's JobError (`unreachable`, or this photo's)."""
    phase = "waiting for its head"
    out = None
    try:
        if unreachable is not None:
            raise JobError(unreachable.code, unreachable.message)
        out = generate(Path(photo), cell)
        _sidecar_facts(item, out.sidecar)
        phase = "checking its head"
        check_glb(out.glb)
        if glb_dir:
            phase = "writing its head to --glb-dir"
            item.glb_path = str(_write_outputs(Path(glb_dir), name, out))
        phase = "importing its head"
        item.objects = list(place(name, out, cell) or [])
        item.ok = True
    except KeyboardInterrupt as e:
        _set_error(item, INTERRUPTED_BY_USER, _interrupted_text(e, phase))
        summary.interrupted = item.message
    except JobError as e:
        _set_error(item, e.code, e.message)
        if e.code == UNREACHABLE:
            unreachable = e
    except GlbError as e:
        _set_error(item, BAD_RESULT, str(e))
    except OSError as e:
        if phase == "waiting for its head":
            _set_error(item, BAD_INPUT, f"{photo}: {e}")
        else:
            _set_error(item, CLIENT_ERROR, f"{phase}: {e}")
    except Exception as e:
        code = getattr(e, "code", None)
        if phase == "importing its head":
            _set_error(item, code if isinstance(code, str) else IMPORT_FAILED,
                       getattr(e, "message", None) or f"{type(e).__name__}: {e}")
        else:
            _set_error(item, CLIENT_ERROR, f"{phase}: {type(e).__name__}: {e}")
    return out, unreachable


def _keep_rejected(item: PhotoOutcome, glb_dir: str, name: str, out: JobOutput | None) -> None:
    """A result that arrived but could not be used (BAD_RESULT, IMPORT_FAILED): kept as
    <stem>.rejected.glb, never as <stem>.glb."""
    if not item.ok and out is not None and item.code in (BAD_RESULT, IMPORT_FAILED):
        item.glb_path = ""
        item.rejected_glb = _reject(glb_dir, name, out)


def _stop_between_photos(summary: BatchSummary, e: KeyboardInterrupt) -> None:
    """A Ctrl-C outside a photo's steps: the batch stops; a photo it caught before its outcome
    was set is INTERRUPTED_BY_USER."""
    summary.interrupted = summary.interrupted or _interrupted_text(e, "between photos")
    if summary.items and not summary.items[-1].ok and not summary.items[-1].code:
        _set_error(summary.items[-1], INTERRUPTED_BY_USER, summary.interrupted)


def _add_not_run(summary: BatchSummary, photos: Sequence, cells: list) -> None:
    """After an interruption: each photo not started is NOT_RUN."""
    for photo, cell in list(zip(photos, cells))[len(summary.items):]:
        item = PhotoOutcome(photo=str(photo), ok=False, cell=tuple(cell))
        _set_error(item, NOT_RUN, "not started: " + summary.interrupted)
        summary.items.append(item)
