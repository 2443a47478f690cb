"""Plain settings objects built by the bpy layer (operators, preferences, the batch command)
from Blender properties or command-line arguments, and handed to the core.

One dataclass per component, validated at construction so that a bad value fails with a
message a person can act on, before any network traffic.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field

from ..wire import options as vocabulary

# the job options' choices, ranges and defaults: protocol/options.py, the backend's own
GENERATORS = vocabulary.GENERATORS
QUALITIES = vocabulary.QUALITIES
OUTPUT_KINDS = vocabulary.OUTPUT_KINDS
TEXTURE_SIZES = vocabulary.TEXTURE_SIZES
OPTION_DEFAULTS = vocabulary.DEFAULTS


class SettingsError(ValueError):
    """A setting has a value the add-on cannot use; the message says which and what to do."""


@dataclass(frozen=True)
class ConnectionSettings:
    """Where the backend is and how long to wait for it."""

    address: str = "tcp://127.0.0.1:5555"
    key_file: str = ""                 # empty: the backend's default key file
    connect_timeout_s: float = 4.0     # no answer to the hello within this -> "not reachable"
    job_timeout_s: float = 600.0       # whole job (queue + pipeline + result)
    # CURVE (protocol/SPEC.md section 12), for a backend on another machine: the server's
    # public key (its server.key file, or the 40 Z85 characters) and this artist's key file
    # (NAME.key_secret from `gen3dface keys client NAME`). Both, or neither.
    server_public_key: str = ""
    client_key_file: str = ""

    def __post_init__(self):
        if not self.address or "://" not in self.address:
            raise SettingsError(
                f"backend address {self.address!r} is not a ZeroMQ address; "
                "write it like tcp://127.0.0.1:5555")
        if bool(self.server_public_key.strip()) != bool(self.client_key_file.strip()):
            raise SettingsError(
                "encryption (CURVE) needs both the server's public key and your client key "
                "file; set both in the add-on's preferences, or clear both for a backend on "
                "this machine")
        for name in ("connect_timeout_s", "job_timeout_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SettingsError(f"{name} must be a positive number of seconds, not {v!r}")

    @property
    def curve(self) -> bool:
        return bool(self.server_public_key.strip())


@dataclass(frozen=True)
class GenerateOptions:
    """What the artist asks for; `to_dict()` is the wire form of the pipeline's JobOptions.
    Validated by the vocabulary the backend uses (protocol/options.py)."""

    generator: str = OPTION_DEFAULTS["generator"]
    seed: int = OPTION_DEFAULTS["seed"]
    quality: str = OPTION_DEFAULTS["quality"]
    texture_size: int = OPTION_DEFAULTS["texture_size"]
    output_kind: str = OPTION_DEFAULTS["output_kind"]
    neutral: bool = OPTION_DEFAULTS["neutral"]   # rest pose: shape-key values 0 (the fit stays in the sidecar)
    delit_texture: bool = OPTION_DEFAULTS["delit_texture"]
    neck_skin: bool = OPTION_DEFAULTS["neck_skin"]   # skin, not clothes, below the jaw

    def __post_init__(self):
        try:
            vocabulary.validate(asdict(self))
        except vocabulary.OptionError as e:
            raise SettingsError(e.message) from None

    def to_dict(self) -> dict:
        d = vocabulary.validate(asdict(self))
        for flag in ("neutral", "delit_texture"):
            if not d[flag]:
                del d[flag]         # older backends know no such option; false is their default
        # neck_skin is always sent: true is the default now, false was before (and a backend
        # older than the option ignores it, SPEC 5.3)
        return d


class BackendOffer:
    """What each backend said it can do (its capabilities' "pipeline" object), by address, so
    that the panel's menus offer what the connected backend accepts; without an answer yet
    they offer the vocabulary's choices. Written by the job thread and the Test connection
    button, read by the panel."""

    _lock = threading.Lock()
    _by_address: dict = {}

    @classmethod
    def remember(cls, address: str, capabilities: dict | None) -> None:
        pipeline = (capabilities or {}).get("pipeline")
        if isinstance(pipeline, dict):
            with cls._lock:
                cls._by_address[str(address)] = dict(pipeline)

    @classmethod
    def forget(cls, address: str | None = None) -> None:
        with cls._lock:
            if address is None:
                cls._by_address.clear()
            else:
                cls._by_address.pop(str(address), None)

    @classmethod
    def choices(cls, address: str | None = None) -> dict[str, tuple]:
        """Choice option -> what to offer (protocol/options.py offered_choices)."""
        with cls._lock:
            pipeline = cls._by_address.get(str(address)) if address else None
        return vocabulary.offered_choices(pipeline)


@dataclass(frozen=True)
class RingSettings:
    """The default camera ring the panel creates around the 3D cursor."""

    n_cameras: int = 16
    radius_m: float = 1.0
    elevation_deg: float = 0.0
    resolution: int = 512
    fov_deg: float = 25.0

    def __post_init__(self):
        if not (1 <= int(self.n_cameras) <= 64):
            raise SettingsError(f"the ring needs 1..64 cameras, not {self.n_cameras!r}")
        if not (self.radius_m > 0 and math.isfinite(self.radius_m)):
            raise SettingsError(f"ring radius must be positive, not {self.radius_m!r}")
        if not (-89.0 <= self.elevation_deg <= 89.0):
            raise SettingsError(f"ring elevation must be in [-89, 89] degrees")
        if not (1.0 <= self.fov_deg <= 170.0):
            raise SettingsError(f"field of view must be in [1, 170] degrees")
        if not (16 <= int(self.resolution) <= 4096):
            raise SettingsError(f"camera resolution must be in [16, 4096] pixels")


@dataclass(frozen=True)
class ImportSettings:
    """How a result lands in the scene."""

    collection_name: str = "Gen3DFace"
    unit_scale: float = 1.0            # scene.unit_settings.scale_length: metres per Blender unit
    # where the head frame sits in the Blender world (metres), from the job's Rig
    head_to_world: tuple = field(default=((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -1.0, 0.0),
                                          (0.0, 1.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)))

    def __post_init__(self):
        if not (self.unit_scale > 0 and math.isfinite(self.unit_scale)):
            raise SettingsError(f"scene unit scale must be positive, not {self.unit_scale!r}")


@dataclass(frozen=True)
class LocalBackendSettings:
    """'Start a local backend': which Python runs `gen3dface serve`, on which loopback port."""

    python: str = ""                   # the venv's python; empty: not configured
    port: int = 5555
    device: str = "auto"               # passed to serve as --device
    extra_args: tuple = ()

    def __post_init__(self):
        if not (1024 <= int(self.port) <= 65535):
            raise SettingsError(f"local backend port must be in 1024..65535, not {self.port!r}")
