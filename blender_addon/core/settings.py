"""Plain settings objects built by the bpy layer (operators, preferences, the batch command)
from Blender properties or command-line arguments, and handed to the core.

One dataclass per component, validated at construction so that a bad value fails with a
message a person can act on, before any network traffic.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

GENERATORS = ("auto", "offline", "gen3dface")
QUALITIES = ("draft", "standard", "high")
OUTPUT_KINDS = ("rigged", "surface", "both")
TEXTURE_SIZES = (256, 512, 1024, 2048, 4096)


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
    """What the artist asks for; `to_dict()` is the wire form of the pipeline's JobOptions."""

    generator: str = "auto"
    seed: int = 0
    quality: str = "standard"
    texture_size: int = 1024
    output_kind: str = "rigged"
    neutral: bool = False              # rest pose: shape-key values 0 (the fit stays in the sidecar)

    def __post_init__(self):
        if not isinstance(self.neutral, bool):
            raise SettingsError(f"neutral must be true or false, not {self.neutral!r}")
        if self.generator not in GENERATORS:
            raise SettingsError(f"generator must be one of {GENERATORS}, not {self.generator!r}")
        if self.quality not in QUALITIES:
            raise SettingsError(f"quality must be one of {QUALITIES}, not {self.quality!r}")
        if self.output_kind not in OUTPUT_KINDS:
            raise SettingsError(
                f"output kind must be one of {OUTPUT_KINDS}, not {self.output_kind!r}")
        if int(self.texture_size) not in TEXTURE_SIZES:
            raise SettingsError(
                f"texture size must be one of {TEXTURE_SIZES}, not {self.texture_size!r}")
        if not (0 <= int(self.seed) < 2**31):
            raise SettingsError(f"seed must be in [0, 2^31), not {self.seed!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seed"] = int(d["seed"])
        d["texture_size"] = int(d["texture_size"])
        if not d["neutral"]:
            del d["neutral"]            # older backends know no such option; false is their default
        return d


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
