#!/usr/bin/env python
"""Build the installable Blender extension zip: dist/gen3dface-<version>.zip.

    python scripts/build_extension.py [--pyzmq 27.3.0] [--blake3 1.0.11] [--wheels-dir DIR]
                                      [--out dist]

What it does (the same layout `blender --command extension build` produces, which is not
available where Blender is not installed):
1. copies blender_addon/ (minus caches and tests) to a staging folder as the extension root;
2. copies the repository's protocol/ package into it as <root>/protocol/ (protocol uses only
   relative imports; blender_addon/wire.py finds it there);
3. downloads the pyzmq and blake3 wheels for Blender's Python (cp311) on Linux x86_64,
   Windows amd64 and macOS arm64 + x86_64 (pyzmq: one universal2 wheel for both Macs) with
   `pip download --only-binary=:all:`, into a cache under dist/ (or takes them from
   --wheels-dir, for offline builds), copies them to <root>/wheels/ and writes the manifest's
   `wheels = [...]`. blake3 (protocol 1.4) lets the add-on verify results with BLAKE3
   instead of SHA-256 when the server offers it; without it the add-on uses SHA-256;
4. zips the staging folder with the manifest at the top level of the zip.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "blender_addon"
PROTOCOL = REPO / "protocol"
PYZMQ_VERSION = "27.3.0"
BLAKE3_VERSION = "1.0.11"
# pip --platform tags; Blender 4.2-4.5 ship Python 3.11 (glibc 2.28 on Linux: older
# manylinux tags install there too)
PLATFORM_TAGS = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_10_15_x86_64",),
}
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "tests", "wheels", ".*")


def manifest_field(text: str, key: str) -> str:
    m = re.search(rf'^{key}\s*=\s*"([^"]*)"', text, re.M)
    if not m:
        raise SystemExit(f"blender_manifest.toml has no {key}")
    return m.group(1)


def fetch_wheels(packages: dict[str, str], cache: Path, wheels_dir: Path | None) -> list[Path]:
    """One wheel per package and platform (deduplicated: pyzmq's macOS tags share a
    universal2 wheel). `packages`: name -> version."""
    found: list[Path] = []
    for package, version in packages.items():
        for platform, tags in PLATFORM_TAGS.items():
            src = wheels_dir or cache
            wheels = _matching(src, package, version, tags[0])
            if not wheels and wheels_dir is None:
                cache.mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, "-m", "pip", "download", f"{package}=={version}",
                       "--only-binary=:all:", "--python-version", "3.11", "--implementation",
                       "cp", "--abi", "cp311", *[a for t in tags for a in ("--platform", t)],
                       "--no-deps", "-d", str(cache), "-q"]
                print("+", " ".join(cmd))
                subprocess.run(cmd, check=True)
                wheels = _matching(cache, package, version, tags[0])
            if not wheels:
                raise SystemExit(f"no {package} {version} cp311 wheel for {platform} "
                                 f"({tags[0]}) in {src}")
            if wheels[0] not in found:
                found.append(wheels[0])
    return found


def _matching(folder: Path, package: str, version: str, tag: str) -> list[Path]:
    if not folder.is_dir():
        return []
    arch = tag.split("_", 3)[-1]        # x86_64, arm64 (win_amd64 is matched whole)
    out = []
    for w in sorted(folder.glob(f"{package}-{version}-cp311-cp311-*.whl")):
        plat = w.name[:-4].split("-", 4)[-1]
        if tag.startswith("manylinux") and "manylinux" in plat and plat.endswith(arch):
            out.append(w)
        elif tag == "win_amd64" and plat == "win_amd64":
            out.append(w)
        elif tag.startswith("macosx") and "macosx" in plat and (
                plat.endswith(arch) or plat.endswith("universal2")):
            out.append(w)
    return out


def write_wheels(manifest: str, wheel_names: list[str]) -> str:
    listing = "wheels = [\n" + "".join(f'  "./wheels/{n}",\n' for n in wheel_names) + "]"
    new, n = re.subn(r"^wheels\s*=\s*\[[^\]]*\]", listing, manifest, flags=re.M)
    if n != 1:
        raise SystemExit("blender_manifest.toml must have one `wheels = [...]` line")
    return new


def build(out_dir: Path, version: str, wheels_dir: Path | None,
          blake3_version: str = BLAKE3_VERSION) -> Path:
    manifest_text = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
    ext_id = manifest_field(manifest_text, "id")
    ext_version = manifest_field(manifest_text, "version")
    wheels = fetch_wheels({"pyzmq": version, "blake3": blake3_version},
                          out_dir / "wheel_cache", wheels_dir)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / ext_id
        shutil.copytree(ADDON, root, ignore=IGNORE)
        if (root / "protocol").exists():
            raise SystemExit("blender_addon/ must not hold a protocol/ folder of its own")
        shutil.copytree(PROTOCOL, root / "protocol", ignore=IGNORE)
        (root / "wheels").mkdir()
        for w in wheels:
            shutil.copy2(w, root / "wheels" / w.name)
        (root / "blender_manifest.toml").write_text(
            write_wheels(manifest_text, [w.name for w in wheels]), encoding="utf-8")
        out_dir.mkdir(parents=True, exist_ok=True)
        zip_path = out_dir / f"{ext_id}-{ext_version}.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(root).as_posix())
    return zip_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pyzmq", default=PYZMQ_VERSION, help="pyzmq version to bundle")
    ap.add_argument("--blake3", default=BLAKE3_VERSION, help="blake3 version to bundle")
    ap.add_argument("--wheels-dir", type=Path, help="take the wheels from here (offline)")
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    a = ap.parse_args(argv)
    path = build(a.out, a.pyzmq, a.wheels_dir, a.blake3)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    print(f"{path}  ({path.stat().st_size / 1e6:.1f} MB, {len(names)} files, wheels: "
          f"{', '.join(n.split('/')[-1] for n in names if n.endswith('.whl'))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
