"""Where the head-model assets are found.

Lookup order (first hit wins):
1. an explicit folder (`--assets DIR` on the command line, `assets_dir=` in code);
2. the folder named by the environment variable GEN3DFACE_ASSETS;
3. the user data folder (`user_data_dir()`: $XDG_DATA_HOME/gen3dface or ~/.local/share/gen3dface
   on Linux, ~/Library/Application Support/gen3dface on macOS, %APPDATA%\\gen3dface on Windows),
   where `gen3dface assets fetch` installs ICT-FaceKit.

Every folder is laid out like the project's shared data folder:
    <folder>/ict_facekit/ict_facekit_v1.npz
    <folder>/flame/generic_model.pkl
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "GEN3DFACE_ASSETS"
ICT_RELPATH = Path("ict_facekit") / "ict_facekit_v1.npz"
FLAME_RELPATH = Path("flame") / "generic_model.pkl"


def user_data_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "gen3dface"


def search_folders(assets_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The folders searched, in order, each with where it came from."""
    out = []
    if assets_dir:
        out.append(("--assets", Path(assets_dir)))
    if os.environ.get(ENV_VAR):
        out.append((ENV_VAR, Path(os.environ[ENV_VAR])))
    out.append(("user data folder", user_data_dir()))
    return out


@dataclass
class FoundAsset:
    kind: str      # "ict_facekit" | "flame"
    path: Path
    origin: str    # which search folder it came from


def find_asset(relpath: Path, kind: str, assets_dir=None) -> FoundAsset | None:
    for origin, folder in search_folders(assets_dir):
        p = folder / relpath
        if p.is_file():
            return FoundAsset(kind, p, origin)
    return None


def find_head_model_file(assets_dir=None, prefer: str = "ict_facekit") -> FoundAsset | None:
    """The head-model file to use: ICT-FaceKit first (it has ARKit blendshapes), then FLAME."""
    order = [("ict_facekit", ICT_RELPATH), ("flame", FLAME_RELPATH)]
    order.sort(key=lambda kv: kv[0] != prefer)
    for kind, rel in order:
        hit = find_asset(rel, kind, assets_dir)
        if hit:
            return hit
    return None


# -- installing ICT-FaceKit ------------------------------------------------------------------
ICT_REPO_URL = "https://github.com/ICT-VGL/ICT-FaceKit"
ICT_ZIP_URL = ICT_REPO_URL + "/archive/refs/heads/master.zip"


def installed_assets(assets_dir=None) -> list[dict]:
    """Every head-model file found in the search folders (for `gen3dface assets info`)."""
    out = []
    for origin, folder in search_folders(assets_dir):
        for kind, rel in (("ict_facekit", ICT_RELPATH), ("flame", FLAME_RELPATH)):
            p = folder / rel
            out.append({"kind": kind, "path": str(p), "origin": origin, "present": p.is_file(),
                        "bytes": p.stat().st_size if p.is_file() else None})
    return out


def install_ict_from(source: str | os.PathLike, dest_root: str | os.PathLike | None = None,
                     progress=None) -> Path:
    """Convert a local copy of ICT-FaceKit (the repository folder, its FaceXModel folder, or
    the repository's ZIP) into <dest_root>/ict_facekit/ict_facekit_v1.npz (default: the user
    data folder). Returns the written path."""
    import tempfile
    import zipfile

    from .headmodel.ict_obj import convert_ict_folder

    source = Path(source)
    dest = Path(dest_root) if dest_root else user_data_dir()
    out = dest / ICT_RELPATH
    if source.is_file() and zipfile.is_zipfile(source):
        with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(source) as zf:
            members = [m for m in zf.namelist()
                       if "/FaceXModel/" in "/" + m and m.endswith((".obj", ".json"))]
            if not members:
                raise FileNotFoundError(f"{source} holds no FaceXModel/ folder")
            for m in members:
                target = (Path(tmp) / m).resolve()
                if not str(target).startswith(str(Path(tmp).resolve())):
                    raise ValueError(f"unsafe path in zip: {m}")
                zf.extract(m, tmp)
            folder = next(Path(tmp).rglob("FaceXModel"))
            return convert_ict_folder(folder, out, progress)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is neither a folder nor a ZIP file")
    found = [source] if (source / "generic_neutral_mesh.obj").is_file() else \
        [p for p in source.rglob("FaceXModel") if p.is_dir()]
    if not found:
        raise FileNotFoundError(f"no FaceXModel folder (with generic_neutral_mesh.obj) in {source}")
    return convert_ict_folder(found[0], out, progress)


def download(url: str, dest: Path, timeout: float = 30.0, progress=None) -> Path:
    """Download `url` to `dest` (raises OSError / urllib.error.URLError when offline)."""
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0)
        done = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            f.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    tmp.replace(dest)
    return dest
