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
