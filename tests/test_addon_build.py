"""The extension zip (scripts/build_extension.py) and the bpy-free import of the add-on."""
import re
import subprocess
import sys
import zipfile
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "dist" / "wheel_cache"


def test_addon_package_imports_without_bpy():
    code = ("import sys, gen3dface.blender_addon as a, gen3dface.blender_addon.core.batch, "
            "gen3dface.blender_addon.core.worker, gen3dface.blender_addon.core.rig; "
            "assert 'bpy' not in sys.modules, 'bpy imported'; "
            "assert callable(a.register) and callable(a.unregister); "
            "from gen3dface.blender_addon import wire; assert wire.SOURCE == 'gen3dface'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_zip_layout_manifest_wheels_and_bundled_protocol(tmp_path):
    # With no wheel cache (a clean clone) the build fetches the pyzmq wheels from the package
    # registry, as a user's build does.
    cmd = [sys.executable, str(REPO / "scripts" / "build_extension.py"), "--out", str(tmp_path)]
    if CACHE.is_dir() and any(CACHE.glob("pyzmq-*.whl")):
        cmd += ["--wheels-dir", str(CACHE)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    zpath = next(tmp_path.glob("gen3dface-*.zip"))
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        manifest = z.read("blender_manifest.toml").decode()
    assert {"__init__.py", "blender_manifest.toml", "wire.py", "core/worker.py",
            "blender/__init__.py", "protocol/__init__.py", "protocol/client.py",
            "protocol/cameras.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    listed = re.findall(r'"\./(wheels/[^"]+\.whl)"', manifest)
    assert all(w in names for w in listed)
    # pyzmq: Linux, Windows, one universal2 wheel for both Macs; blake3 (protocol 1.4's
    # faster digest): one wheel per platform
    by_package = {pkg: [w for w in listed if w.startswith(f"wheels/{pkg}-")]
                  for pkg in ("pyzmq", "blake3")}
    assert len(by_package["pyzmq"]) == 3 and len(by_package["blake3"]) == 4, listed
    assert len(listed) == 7
    for wheels in by_package.values():
        tags = " ".join(wheels)
        assert "cp311" in tags and "manylinux" in tags and "win_amd64" in tags
        assert "macosx" in tags and ("universal2" in tags or ("arm64" in tags and "x86_64" in tags))
    assert 'blender_version_min = "4.2.0"' in manifest
    assert re.search(r"^\[permissions\]\s*\nnetwork = ", manifest, re.M)
    assert "files = " in manifest
    import tomllib
    t = tomllib.loads(manifest)
    assert t["id"] == "gen3dface" and t["schema_version"] == "1.0.0"
    assert set(t["platforms"]) == {"linux-x64", "windows-x64", "macos-arm64", "macos-x64"}
