"""Errors shown to the artist: what went wrong and what to do, one sentence each.

Backend error codes come from the protocol (the pipeline's PipelineError codes); the backend's
own message is always shown, followed by the add-on's advice for that code. Client-side
conditions (nothing listening, the backend vanished mid-job, a deadline passed, Blender's
online access switched off) have codes of their own, prefixed so they never collide.
"""
from __future__ import annotations

from dataclasses import dataclass

# client-side codes (never sent by a backend)
UNREACHABLE = "CLIENT_UNREACHABLE"        # no answer to the hello within the connect timeout
BACKEND_LOST = "CLIENT_BACKEND_LOST"      # answered once, then went silent mid-job
JOB_TIMEOUT = "CLIENT_JOB_TIMEOUT"        # the whole job took longer than the job timeout
OFFLINE = "CLIENT_OFFLINE"                # remote address while Blender's online access is off
BAD_INPUT = "CLIENT_BAD_INPUT"            # no photo, unreadable photo file, bad settings
IMPORT_FAILED = "CLIENT_IMPORT_FAILED"    # the GLB arrived but Blender could not import it
PROTOCOL = "CLIENT_PROTOCOL"              # signature, version or framing problem
CLIENT_ERROR = "CLIENT_ERROR"             # an unexpected error in the add-on itself (a bug)
INTERRUPTED_BY_USER = "CLIENT_INTERRUPTED"  # batch: Ctrl-C or SIGTERM during this photo
NOT_RUN = "CLIENT_NOT_RUN"                # batch: interrupted before this photo started
# reported by the protocol client (protocol/SPEC.md section 11), never sent by a server;
# BAD_RESULT is also the add-on's own GLB structure check (core/glb_check.py)
BAD_RESULT = "BAD_RESULT"                 # the result arrived but is not a usable GLB
RECEIVE_LIMIT = "RECEIVE_LIMIT"           # the backend sent more than the client accepts

ADVICE = {
    # backend codes
    "BAD_REQUEST": "Check the panel's options; if they look right, the add-on and backend "
                   "versions may not match (Test connection shows the backend's version).",
    "BAD_IMAGE": "Use a PNG, JPEG or WebP photo under 40 megapixels.",
    "NO_FACE": "Use a photo where one face is clearly visible, roughly front-facing and "
               "well lit.",
    "FACE_TOO_SMALL": "Crop the photo closer to the face or use a higher-resolution photo.",
    "QUEUE_FULL": "The backend is busy with other jobs; try again in a minute.",
    "CANCELLED": "The job was cancelled; press Generate to start again.",
    "INTERRUPTED": "Start it again and press Generate.",
    "OUT_OF_MEMORY": "Lower the quality or texture size, or free GPU memory on the backend "
                     "machine, then try again.",
    "AUTH": "The key file does not match the backend's: point Preferences > Add-ons > "
            "Gen3D-Face > Key file at the key the backend was started with.",
    "INTERNAL": "The backend hit a bug; its log has the details. Try again, or report it "
                "with the photo.",
    "NOT_AVAILABLE": "Pick another generator or output kind (Test connection lists what "
                     "this backend offers).",
    "NOT_FOUND": "The backend no longer has this job (restarted or expired): press "
                 "Generate again.",
    "TOO_LARGE": "The photo is too large for the backend: use a smaller file (under 64 MB).",
    "UNSUPPORTED_VERSION": "The add-on and backend speak different protocol versions: "
                           "update both to the same release.",
    # reported by the protocol client, never sent by a server
    "TIMEOUT": "Raise the job timeout in the add-on preferences, or pick a faster quality "
               "preset.",
    "DISCONNECTED": "The backend stopped answering (stopped or crashed): check its console, "
                    "restart it, then press Generate again.",
    # the add-on's own codes
    UNREACHABLE: "Start the backend (`gen3dface serve`) or tick 'Start a local backend' in "
                 "the add-on preferences, and check the address and port.",
    BACKEND_LOST: "The backend stopped answering during the job (stopped or crashed): "
                  "check its console, restart it, then press Generate again.",
    JOB_TIMEOUT: "Raise the job timeout in the add-on preferences, or pick a faster "
                 "quality preset.",
    OFFLINE: "Blender's online access is off: enable Preferences > System > Network > "
             "Allow Online Access, or use a backend on this machine (127.0.0.1).",
    BAD_INPUT: "Choose a photo file or an image in the panel's Photo field.",
    IMPORT_FAILED: "Blender's glTF importer could not read the result; nothing of it was "
                   "left in the scene. Report it with the backend's log (the batch command "
                   "keeps such files in --glb-dir as <name>.rejected.glb).",
    BAD_RESULT: "The backend sent a result that is not a usable GLB; nothing was imported. "
                "Check the backend's log, then press Generate again.",
    RECEIVE_LIMIT: "The backend sent more than the add-on accepts (protocol/SPEC.md section "
                   "11), so the job was stopped: check that the address is a Gen3D-Face "
                   "backend of the same release.",
    CLIENT_ERROR: "This is a bug in the add-on: report it with this message.",
    PROTOCOL: "The add-on and backend do not speak the same protocol version or key: "
              "update both to the same release and check the key file.",
}


@dataclass(frozen=True)
class UserError:
    code: str
    message: str          # what went wrong (the backend's text when it sent one)
    advice: str           # what to do

    @property
    def text(self) -> str:
        return f"{self.message.rstrip('.')}. {self.advice}" if self.advice else self.message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "advice": self.advice}


# What the panel says for an INTERRUPTED job, by the backend's details["reason"]
# (protocol/SPEC.md 5.8); the advice is ADVICE["INTERRUPTED"].
INTERRUPTED_TEXT = {
    "server_shutdown": "The backend was stopped while the job ran",
    "server_restart": "The backend stopped during the job and has restarted",
    "result_lost": "The backend restarted and no longer has this job's result",
}


def interrupted_message(details) -> str:
    """The message shown for a job the backend cut off (error code INTERRUPTED)."""
    reason = details.get("reason") if isinstance(details, dict) else None
    return INTERRUPTED_TEXT.get(reason, INTERRUPTED_TEXT["server_shutdown"])


def user_error(code: str, message: str) -> UserError:
    """The error the panel and the batch summary show for `code` with the given message."""
    return UserError(code=code, message=message.strip() or code,
                     advice=ADVICE.get(code, ADVICE["INTERNAL"]))
