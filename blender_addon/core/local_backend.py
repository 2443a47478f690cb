"""'Start a local backend': run `gen3dface serve` from a configured Python environment on
loopback, with a freshly generated key file only the user can read, and stop it again.

No bpy here. The bpy layer owns one LocalBackend per Blender session: started from the
preferences, stopped from unregister() and from an atexit hook (so quitting Blender stops it).
The process is started in its own process group / with CREATE_NEW_PROCESS_GROUP so stopping it
also stops anything it spawned, and never shares Blender's console input.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..wire import load
from .settings import LocalBackendSettings, SettingsError



def write_key_file(path: Path) -> Path:
    """A new random key at `path` (the protocol's generate_key_file: 64 hex characters, created
    with owner-only permissions 0600 before any byte is written); an existing file is
    replaced, so every start of the local backend gets a fresh key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    load("signing").generate_key_file(path)
    return path


def serve_command(settings: LocalBackendSettings, key_file: Path,
                  state_dir: Path | None = None) -> list[str]:
    """The command line that starts the backend on loopback. "auto" device: serve's default
    (--device is passed only when set to something else, e.g. cuda)."""
    if not settings.python:
        raise SettingsError("set 'Backend Python' in the add-on preferences to the python of "
                            "the environment where gen3dface is installed")
    if not Path(settings.python).is_file():
        raise SettingsError(f"backend Python {settings.python} does not exist; point it at "
                            "<venv>/bin/python (Windows: <venv>\\Scripts\\python.exe)")
    cmd = [settings.python, "-m", "gen3dface.backend.cli", "serve",
           "--bind", f"tcp://127.0.0.1:{int(settings.port)}", "--key-file", str(key_file)]
    if state_dir is not None:
        cmd += ["--state-dir", str(state_dir)]
    if settings.device and settings.device != "auto":
        cmd += ["--device", settings.device]
    return cmd + [str(a) for a in settings.extra_args]


@dataclass
class LocalBackend:
    settings: LocalBackendSettings
    state_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) /
                            f"gen3dface-blender-{os.getpid()}")
    process: subprocess.Popen | None = None
    key_file: Path | None = None
    log_file: Path | None = None

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{int(self.settings.port)}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if sys.platform != "win32":
            os.chmod(self.state_dir, 0o700)
        self.key_file = write_key_file(self.state_dir / "backend.key")
        cmd = serve_command(self.settings, self.key_file, self.state_dir / "serve")
        self.log_file = self.state_dir / "backend.log"
        log = open(self.log_file, "wb")
        kw = {}
        if sys.platform == "win32":
            kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kw["start_new_session"] = True
        try:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, **kw)
        finally:
            log.close()

    def exit_message(self) -> str:
        """Why the process is not running, from the tail of its log."""
        if self.process is None:
            return "the local backend was not started"
        code = self.process.poll()
        if code is None:
            return ""
        tail = ""
        if self.log_file and self.log_file.is_file():
            tail = self.log_file.read_text(errors="replace")[-800:].strip()
        return f"the local backend exited with code {code}" + (f": {tail}" if tail else "")

    def stop(self, timeout_s: float = 5.0) -> None:
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        try:
            if sys.platform == "win32":
                p.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout_s)
        except (subprocess.TimeoutExpired, ProcessLookupError, OSError):
            try:
                if sys.platform == "win32":
                    p.kill()
                else:
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout_s)
            except (ProcessLookupError, OSError, subprocess.TimeoutExpired):
                pass

    def wait_ready(self, probe, timeout_s: float = 60.0, interval_s: float = 0.5) -> bool:
        """Call probe() (e.g. a hello through the client) until it returns True, the process
        exits, or the timeout passes."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if not self.running():
                return False
            if probe():
                return True
            time.sleep(interval_s)
        return False
