"""The project's multi-view training-data format ("gen3dface-multiview", version 1).

One folder per dataset; one sub-folder per identity (a person, or a person in one expression):

    <root>/
      dataset.json               {"format": "gen3dface-multiview", "version": 1, "name", "source",
                                  "identities": [<id>, ...], "extras": {...}}
      pruning.json               optional; written by gen3dface.backend.pruning (views and
                                  identities the loader skips; see pruning/manifest.py)
      <id>/
        identity.json            {"identity", "source", "views": [ViewRecord...],
                                  "prior": {"default": "prior.npz" | null,
                                            "per_view": {<view name>: "priors/<view>.npz"}},
                                  "extras": {...}}
        views/<view>.png         RGBA uint8, rows top-to-bottom; alpha = foreground (head) mask
        prior.npz                the head mesh estimated from an input view (see below)
        priors/<view>.npz        optional: the mesh estimated from THAT view (the paper's prior:
                                  fitted to the input image, not the ground truth)

ViewRecord (one per image): {"name", "image": "views/<name>.png", "w2c": 4x4 row-major,
    "intrinsics": {"width", "height", "fx", "fy", "cx", "cy"}, "azimuth_deg", "elevation_deg",
    "input_candidate": bool}

Cameras follow the backend convention: OpenCV (x right, y down, z forward) world-to-camera
`w2c` whose world is the HEAD FRAME (+Y up, +Z out of the face, +X the subject's left),
metres; pixel intrinsics with the origin at the top-left corner of the image. Azimuth and
elevation are those of `gen3dface.protocol.cameras.orbit_w2c_in_head`: a camera at
r*(cos(el) sin(az), sin(el), cos(el) cos(az)), azimuth 0 in front of the face, positive
toward +X.

Prior meshes (`*.npz`, read with allow_pickle=False): "vertices" (N, 3) float32 metres in the
head frame (the dataset's world), "faces" (F, 3) int32 triangles, optional "head_model" (str),
"identity" (K,) and "expression" (E,) float32 coefficients.

Identity and view names become folder and file names, so they are restricted to
[A-Za-z0-9_.-] (no separators, not starting with a dot).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gen3dface.protocol.cameras import (CameraError, Intrinsics, camera_position_in_head,
                                         orbit_angles, orbit_w2c_in_head)

FORMAT_NAME = "gen3dface-multiview"
FORMAT_VERSION = 1
DATASET_FILE = "dataset.json"
IDENTITY_FILE = "identity.json"
PRUNING_FILE = "pruning.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class DatasetFormatError(ValueError):
    """The folder is not a valid gen3dface-multiview dataset (message says what is wrong)."""


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise DatasetFormatError(
            f"bad {what} {name!r}: use letters, digits, '_', '.', '-' (max 128, no leading dot)")
    return name


# ----------------------------------------------------------------------------- camera helpers
# Numpy faces of gen3dface.protocol.cameras, where every camera convention is implemented once.
def camera_center(w2c) -> np.ndarray:
    """(3,) camera position in the world (head frame) from an OpenCV w2c."""
    return np.asarray(camera_position_in_head(np.asarray(w2c, np.float64)), np.float64)


def azimuth_elevation(center, target=(0.0, 0.0, 0.0)) -> tuple[float, float]:
    """Degrees, the convention of orbit_w2c_in_head (azimuth 0 = +Z, positive toward +X):
    `gen3dface.protocol.cameras.orbit_angles`."""
    return orbit_angles(np.asarray(center, np.float64), np.asarray(target, np.float64))


def orbit_w2c(azimuth_deg: float, elevation_deg: float, radius_m: float,
              target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """`gen3dface.protocol.cameras.orbit_w2c_in_head` as a (4, 4) float64 array (at the poles
    the image's up is the orbit's limit, continuous in elevation)."""
    return np.asarray(orbit_w2c_in_head(float(azimuth_deg), float(elevation_deg),
                                        float(radius_m), np.asarray(target, np.float64)),
                      np.float64)


# ----------------------------------------------------------------------------- records
class ViewIntrinsics(Intrinsics):
    """A view's pixel intrinsics: the protocol's (`protocol.cameras.Intrinsics`, validated on
    construction, origin at the image's top-left corner), as a dataset stores them; a bad
    entry read from a dataset is a DatasetFormatError."""

    def scaled(self, width: int, height: int) -> "ViewIntrinsics":
        """The same camera for the image resized to (width, height) (corner-origin pixels)."""
        sx, sy = width / self.width, height / self.height
        return ViewIntrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    @classmethod
    def from_dict(cls, d: dict) -> "ViewIntrinsics":
        try:
            return super().from_dict(d)
        except CameraError as e:
            raise DatasetFormatError(f"bad intrinsics {d!r}: {e}") from None


@dataclass(frozen=True)
class ViewRecord:
    name: str
    image: str                      # path relative to the identity folder
    w2c: tuple                      # 4x4 row-major, OpenCV, world = head frame, metres
    intrinsics: ViewIntrinsics
    azimuth_deg: float
    elevation_deg: float
    input_candidate: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["w2c"] = [list(map(float, r)) for r in self.w2c]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ViewRecord":
        try:
            w2c = np.asarray(d["w2c"], np.float64)
            name = check_name(d["name"], "view name")
            image = str(d["image"])
        except KeyError as e:
            raise DatasetFormatError(f"view record misses {e}") from None
        if w2c.shape != (4, 4) or not np.isfinite(w2c).all():
            raise DatasetFormatError(f"view {name}: w2c must be a finite 4x4 matrix")
        _check_relpath(image)
        az, el = azimuth_elevation(camera_center(w2c))
        return cls(name=name, image=image, w2c=tuple(map(tuple, w2c.tolist())),
                   intrinsics=ViewIntrinsics.from_dict(d["intrinsics"]),
                   azimuth_deg=float(d.get("azimuth_deg", az)),
                   elevation_deg=float(d.get("elevation_deg", el)),
                   input_candidate=bool(d.get("input_candidate", True)))

    @property
    def w2c_array(self) -> np.ndarray:
        return np.asarray(self.w2c, np.float64)


@dataclass
class IdentityRecord:
    identity: str
    folder: Path
    views: list[ViewRecord]
    prior_default: str | None = None
    prior_per_view: dict[str, str] = field(default_factory=dict)
    source: str = ""
    extras: dict = field(default_factory=dict)

    def view(self, name: str) -> ViewRecord:
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(f"identity {self.identity} has no view {name!r}")

    def prior_path(self, view_name: str | None = None) -> Path | None:
        """The prior mesh estimated from `view_name` if there is one, else the default."""
        rel = self.prior_per_view.get(view_name) if view_name else None
        rel = rel or self.prior_default
        return self.folder / rel if rel else None


@dataclass
class PriorMesh:
    vertices: np.ndarray            # (N, 3) float32 metres, head frame
    faces: np.ndarray               # (F, 3) int32
    head_model: str = ""
    identity: np.ndarray | None = None
    expression: np.ndarray | None = None

    def save(self, path: Path) -> None:
        arrays = {"vertices": np.asarray(self.vertices, np.float32),
                  "faces": np.asarray(self.faces, np.int32),
                  "head_model": np.array(self.head_model)}
        if self.identity is not None:
            arrays["identity"] = np.asarray(self.identity, np.float32)
        if self.expression is not None:
            arrays["expression"] = np.asarray(self.expression, np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> "PriorMesh":
        with np.load(path, allow_pickle=False) as d:
            if "vertices" not in d.files or "faces" not in d.files:
                raise DatasetFormatError(f"{path}: a prior mesh needs 'vertices' and 'faces'")
            v, f = d["vertices"].astype(np.float32), d["faces"].astype(np.int32)
            if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
                raise DatasetFormatError(f"{path}: vertices must be (N, 3), faces (F, 3)")
            if len(f) and (f.min() < 0 or f.max() >= len(v)):
                raise DatasetFormatError(f"{path}: face indices out of range")
            return cls(v, f, str(d["head_model"]) if "head_model" in d.files else "",
                       d["identity"] if "identity" in d.files else None,
                       d["expression"] if "expression" in d.files else None)


def _check_relpath(rel: str) -> None:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DatasetFormatError(f"paths in a dataset must be relative and inside it: {rel!r}")


# ----------------------------------------------------------------------------- writing
def _png_rgba(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image
    a = np.asarray(rgba)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] not in (3, 4):
        raise DatasetFormatError(f"views must be HxWx4 (or x3) uint8, got {a.shape} {a.dtype}")
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass
class ViewData:
    """One view to write: the image and its camera (see module doc for conventions)."""
    name: str
    rgba: np.ndarray                # HxWx4 uint8 (HxWx3 gets an opaque alpha)
    w2c: np.ndarray                 # (4, 4)
    intrinsics: ViewIntrinsics
    input_candidate: bool = True


class DatasetWriter:
    """Writes a dataset folder; `close()` (or the context manager) writes dataset.json."""

    def __init__(self, root: str | Path, name: str = "", source: str = "", extras=None,
                 overwrite: bool = False):
        self.root = Path(root)
        if (self.root / DATASET_FILE).exists() and not overwrite:
            raise FileExistsError(f"{self.root} already holds a dataset (overwrite=True to add)")
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.source, self.extras = name, source, dict(extras or {})
        self.identities: list[str] = []

    def add_identity(self, identity: str, views: list[ViewData], prior: PriorMesh | None = None,
                     per_view_priors: dict[str, PriorMesh] | None = None, source: str = "",
                     extras: dict | None = None) -> Path:
        check_name(identity, "identity")
        if identity in self.identities:
            raise DatasetFormatError(f"identity {identity} written twice")
        if not views:
            raise DatasetFormatError(f"identity {identity} has no views")
        folder = self.root / identity
        (folder / "views").mkdir(parents=True, exist_ok=True)
        records = []
        for v in views:
            check_name(v.name, "view name")
            w2c = np.asarray(v.w2c, np.float64)
            if w2c.shape != (4, 4) or not np.isfinite(w2c).all():
                raise DatasetFormatError(f"view {v.name}: w2c must be a finite 4x4 matrix")
            h, w = v.rgba.shape[:2]
            if (w, h) != (v.intrinsics.width, v.intrinsics.height):
                raise DatasetFormatError(
                    f"view {v.name}: image is {w}x{h} but intrinsics say "
                    f"{v.intrinsics.width}x{v.intrinsics.height}")
            rel = f"views/{v.name}.png"
            (folder / rel).write_bytes(_png_rgba(v.rgba))
            az, el = azimuth_elevation(camera_center(w2c))
            records.append(ViewRecord(v.name, rel, tuple(map(tuple, w2c.tolist())), v.intrinsics,
                                      az, el, v.input_candidate).to_dict())
        names = [r["name"] for r in records]
        if len(set(names)) != len(names):
            raise DatasetFormatError(f"identity {identity}: duplicate view names")
        prior_doc = {"default": None, "per_view": {}}
        if prior is not None:
            prior.save(folder / "prior.npz")
            prior_doc["default"] = "prior.npz"
        for vname, mesh in (per_view_priors or {}).items():
            if vname not in names:
                raise DatasetFormatError(f"prior for unknown view {vname}")
            rel = f"priors/{vname}.npz"
            mesh.save(folder / rel)
            prior_doc["per_view"][vname] = rel
        doc = {"identity": identity, "source": source or self.source, "views": records,
               "prior": prior_doc, "extras": dict(extras or {})}
        (folder / IDENTITY_FILE).write_text(json.dumps(doc, indent=1))
        self.identities.append(identity)
        return folder

    def close(self) -> Path:
        old = []
        p = self.root / DATASET_FILE
        if p.exists():
            old = json.loads(p.read_text()).get("identities", [])
        ids = old + [i for i in self.identities if i not in old]
        doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "name": self.name,
               "source": self.source, "identities": ids, "extras": self.extras}
        p.write_text(json.dumps(doc, indent=1))
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()


def add_view_prior(identity_folder: Path, view_name: str, mesh: PriorMesh) -> None:
    """Adds (or replaces) the prior mesh estimated from one view of an existing identity."""
    doc_path = Path(identity_folder) / IDENTITY_FILE
    doc = json.loads(doc_path.read_text())
    if view_name not in {v["name"] for v in doc["views"]}:
        raise DatasetFormatError(f"{identity_folder}: no view {view_name!r}")
    rel = f"priors/{check_name(view_name, 'view name')}.npz"
    mesh.save(Path(identity_folder) / rel)
    doc.setdefault("prior", {"default": None, "per_view": {}})["per_view"][view_name] = rel
    doc_path.write_text(json.dumps(doc, indent=1))


# ----------------------------------------------------------------------------- reading
@dataclass
class DatasetIndex:
    root: Path
    name: str
    source: str
    identities: list[IdentityRecord]
    extras: dict = field(default_factory=dict)

    def identity(self, name: str) -> IdentityRecord:
        for r in self.identities:
            if r.identity == name:
                return r
        raise KeyError(name)

    @property
    def n_views(self) -> int:
        return sum(len(r.views) for r in self.identities)


def read_identity(folder: Path) -> IdentityRecord:
    p = Path(folder) / IDENTITY_FILE
    if not p.is_file():
        raise DatasetFormatError(f"{folder}: missing {IDENTITY_FILE}")
    doc = json.loads(p.read_text())
    views = [ViewRecord.from_dict(v) for v in doc.get("views", [])]
    if not views:
        raise DatasetFormatError(f"{folder}: no views")
    prior = doc.get("prior") or {}
    per_view = {check_name(k, "view name"): str(v)
                for k, v in (prior.get("per_view") or {}).items()}
    for rel in list(per_view.values()) + ([prior["default"]] if prior.get("default") else []):
        _check_relpath(rel)
    return IdentityRecord(identity=check_name(doc.get("identity", Path(folder).name), "identity"),
                          folder=Path(folder), views=views, prior_default=prior.get("default"),
                          prior_per_view=per_view, source=str(doc.get("source", "")),
                          extras=dict(doc.get("extras") or {}))


def read_dataset(root: str | Path) -> DatasetIndex:
    """Reads dataset.json and every identity.json (images are read lazily by the loader)."""
    root = Path(root)
    p = root / DATASET_FILE
    if not p.is_file():
        raise DatasetFormatError(f"{root} is not a dataset: missing {DATASET_FILE}")
    doc = json.loads(p.read_text())
    if doc.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{p}: format is {doc.get('format')!r}, not {FORMAT_NAME!r}")
    if int(doc.get("version", 0)) > FORMAT_VERSION:
        raise DatasetFormatError(f"{p}: version {doc.get('version')} is newer than this reader "
                                 f"({FORMAT_VERSION})")
    ids = [read_identity(root / check_name(i, "identity")) for i in doc.get("identities", [])]
    return DatasetIndex(root, str(doc.get("name", "")), str(doc.get("source", "")), ids,
                        dict(doc.get("extras") or {}))


def load_rgba(identity: IdentityRecord, view: ViewRecord) -> np.ndarray:
    """HxWx4 uint8 RGBA of one view (RGB files get an opaque alpha)."""
    from PIL import Image
    with Image.open(identity.folder / view.image) as im:
        return np.asarray(im.convert("RGBA"))


# ----------------------------------------------------------------------------- pruning manifest
@dataclass
class PruningManifest:
    """What the paper's pruning removed (pruning.json at the dataset root). The loader skips
    `dropped_views` (per identity) and `dropped_identities`; `details` keeps the scores."""
    dropped_views: dict[str, list[str]] = field(default_factory=dict)
    dropped_identities: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def merge(self, other: "PruningManifest") -> "PruningManifest":
        views = {k: sorted(set(v)) for k, v in self.dropped_views.items()}
        for k, v in other.dropped_views.items():
            views[k] = sorted(set(views.get(k, [])) | set(v))
        ids = sorted(set(self.dropped_identities) | set(other.dropped_identities))
        return PruningManifest(views, ids, {**self.details, **other.details})

    def save(self, root: str | Path) -> Path:
        p = Path(root) / PRUNING_FILE
        p.write_text(json.dumps({"dropped_views": self.dropped_views,
                                 "dropped_identities": self.dropped_identities,
                                 "details": self.details}, indent=1))
        return p

    @classmethod
    def load(cls, root: str | Path) -> "PruningManifest | None":
        p = Path(root) / PRUNING_FILE
        if not p.is_file():
            return None
        d = json.loads(p.read_text())
        return cls({str(k): [str(x) for x in v] for k, v in d.get("dropped_views", {}).items()},
                   [str(x) for x in d.get("dropped_identities", [])], dict(d.get("details", {})))
